"""The bulk fold of `customers replay` gives the live worker's read model, table for table.

One mixed stream is produced to Kafka with the keys the real producers use (4 partitions):
the generated marketplace of `test_rebuild_equals_live.stream` (bookings, payment facts of
generated Stripe histories, notes, field definitions, tags, archives, platform messages and
their email reports, erasures), plus

* payment-first histories: payment facts re-encoded without any correlation hint (expert,
  meeting, email, booked start), so they are keyed by their payment id and sit on other
  partitions than their bookings, which name the payment (by its intent, or its checkout
  session); and some facts of a payment stripped while the others still name the expert;
* an erasure of a person and a re-booking of that person after it, on another partition (a
  replay that read partitions in another order than the worker did would apply the erasure
  after the re-booking): the new
  appointment must stay, the person's earlier data must not;
* one appointment that starts and ends between the versions' watermarks and the instant T
  the versions are swept to (the passing of time, in the live version and in the rebuilds).

The live version takes everything read back from Kafka (partitions merged in timestamp order,
each partition in its order) with the records' real positions, in batches of random sizes.
`replay()` then rebuilds with 1 fold process, and with 3 holding at most 300 records each (every
partition cut in slices); every version is swept to the same
instant T and every table must equal the live one, row by row.
"""

from __future__ import annotations

import asyncio
import heapq
import json
import random
from datetime import datetime, timedelta, timezone

from customers import kafka as names
from customers.commands import CustomerErased
from customers.events import normalise_email
from customers.facts import PaymentObserved
from customers.ids import customer_id, email_hash
from projections.db import make_engine, migrate
from projections.projector import Position, Projector
from projections.versions import ensure_live
from streams.decode import decoder_for
from streams.fold import read_partitions
from streams.poison import kafka_time
from streams.replay import replay
from testing import samples as s
from testing.harness import fresh_pg_database, settings_for
from tests.integration.test_rebuild_equals_live import SECRET, TABLES, stream, summaries_recount, tables

SEED = 5
PARTITIONS = 4
HINTS = ("expert_id", "meeting_id", "customer_email", "booked_start")  # what `correlation` reads from metadata


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _strip(value: bytes) -> bytes:
    """The fact with every correlation hint removed: keyed by its payment id from then on."""
    fact = PaymentObserved.model_validate_json(value)
    stripped = fact.model_copy(update=dict.fromkeys(HINTS))
    assert stripped.kafka_key == fact.payment_id
    return stripped.model_dump_json(exclude_none=True).encode()


class Mixed:
    """The stream, and what the test checks about it."""

    def __init__(self, seed: int, until: datetime) -> None:
        rng = random.Random(seed * 7919)
        prefix = f"r{seed}"
        records = stream(seed)
        facts = [json.loads(v) for topic, v in records if topic == names.ACTIVITY]
        created = [json.loads(v) for topic, v in records if topic == names.BOOKINGS]
        created = [b for b in created if b["type"] == "booking.created"]
        booking_of = {b["meeting_id"]: b for b in created}

        def meeting_of(payment: str) -> str:  # the scenario's ids: pi_<prefix><n> / cs_<prefix><n> -> <prefix>m<n>
            assert payment.startswith(("pi_" + prefix, "cs_" + prefix)), payment
            return f"{prefix}m{payment[3 + len(prefix):]}"

        # the person erased and booked again (one of the most bookings), and the people the stream erases
        erased = set()
        for topic, value in records:
            if topic == names.COMMANDS and json.loads(value)["type"] == "customer.erased":
                erased.add(json.loads(value)["email_hash"])
        people: dict[tuple[str, str], int] = {}
        for b in created:
            email = normalise_email(b["customer"]["email"])
            if email_hash(SECRET, email) not in erased:
                people[(b["expert_id"], email)] = people.get((b["expert_id"], email), 0) + 1
        self.expert, self.email = max(sorted(people), key=lambda p: people[p])  # the one with most bookings
        self.hash, self.cid = email_hash(SECRET, self.email), customer_id(SECRET, self.expert, self.email)
        self.old_meetings = {b["meeting_id"] for b in created if normalise_email(b["customer"]["email"]) == self.email}
        self.old_experts = {b["expert_id"] for b in created if normalise_email(b["customer"]["email"]) == self.email}
        keyed = [f for f in facts if f.get("type") == "payment.observed" and f.get("expert_id")]
        by_session = {b["payment"]["checkout_session_id"] for b in created if b["payment"].get("checkout_session_id")}
        sessions = sorted({f["checkout_session_id"] for f in keyed if f.get("checkout_session_id") in by_session})
        of_sessions = {f["payment_intent_id"] for f in keyed if f.get("checkout_session_id") in by_session}
        events_of: dict[str, set[str]] = {}  # the payments of flat or JSON metadata: their facts that name the expert
        for f in keyed:
            if f["payment_intent_id"] not in of_sessions:
                events_of.setdefault(f["payment_intent_id"], set()).add(f["stripe_event_id"])
        intents = sorted(events_of)
        # A: every fact of the payment loses its hints; the booking names the payment intent
        whole = rng.sample(intents, 4)
        # ... and one payment of the person erased and booked again: it must go with the rest of their past
        whole += [p for p in intents if p not in whole
                  and normalise_email(booking_of[meeting_of(p)]["customer"]["email"]) == self.email][:1]
        # B: a checkout's facts lose their hints; the booking names the checkout session
        checkouts = rng.sample(sessions, 2)
        # C: one fact of the payment loses its hints, the others still name the expert
        partly = rng.sample([p for p in intents if p not in whole and len(events_of[p]) > 1], 3)
        stripped_events = {sorted(events_of[p])[0] for p in partly}
        self.linked: dict[str, tuple[str, str]] = {}  # payment id -> (expert, meeting) it must be linked to
        of_checkouts = [f["payment_intent_id"] for f in keyed if f.get("checkout_session_id") in checkouts]
        for payment in whole + partly + of_checkouts:
            booking = booking_of[meeting_of(payment)]
            if email_hash(SECRET, booking["customer"]["email"]) not in erased | {self.hash}:
                self.linked[payment] = (booking["expert_id"], booking["meeting_id"])
        assert len(self.linked) >= 6
        self.stripped: dict[str, str] = {}  # stripe event id -> the meeting whose booking names its payment
        named_by = {meeting_of(p): p for p in whole}
        out = []
        for topic, value in records:
            if topic == names.ACTIVITY:
                f = json.loads(value)
                if f.get("expert_id") and (f.get("payment_intent_id") in whole or f.get("checkout_session_id") in checkouts
                                           or f["stripe_event_id"] in stripped_events):
                    value = _strip(value)
                    self.stripped[f["stripe_event_id"]] = meeting_of(f["payment_intent_id"])
            elif topic == names.BOOKINGS:
                b = json.loads(value)
                if b["type"] == "booking.created" and b["meeting_id"] in named_by:
                    assert not b["payment"]  # a flat or JSON-metadata payment: the booking named nothing
                    b["payment"] = {"payment_intent_id": named_by[b["meeting_id"]]}
                    value = json.dumps(b).encode()
            out.append((topic, value))
        assert len(self.stripped) >= 9
        self.old_payments = {f["payment_intent_id"] for f in facts if f.get("payment_intent_id", "").startswith("pi_")
                             and meeting_of(f["payment_intent_id"]) in self.old_meetings}
        assert self.old_payments & set(whole + partly), "none of the erased person's payments is payment-first"

        # the passing of time: an appointment that starts and ends after every watermark, before T
        expert0 = created[0]["expert_id"]
        passing = s.booking_created(expert0, f"{prefix}m_passing", "passing@example.com", "Passing", until
                                    - timedelta(minutes=20), minutes=10, occurred_at=until - timedelta(days=2))
        out.insert(rng.randrange(len(out)), (names.BOOKINGS, json.dumps(passing).encode()))

        # the erasure, and the re-booking after the erasure's time, produced after it
        at = max(_time(b["occurred_at"]) for b in created) + timedelta(hours=2)  # after everything the stream tells
        self.new_meeting = f"{prefix}m_again"
        again = s.booking_created(self.expert, self.new_meeting, self.email, "Again", at + timedelta(days=3),
                                  occurred_at=at + timedelta(minutes=1), amount=5000)
        self.again = [(names.BOOKINGS, json.dumps(again).encode())] * 2
        self.new_months = {again["start_time"][:7]}  # its month in the insights
        self.records = out
        self.erasure = CustomerErased(command_id="e_again", occurred_at=at, email_hash=self.hash)


def erasure_partition(read: dict, settings) -> int:
    return next(p for (topic, p), records in read.items() if topic == settings.topic(names.COMMANDS)
                for src in records if json.loads(src.value)["command_id"] == "e_again")


def time_of(record) -> datetime:
    """A record's Kafka timestamp (`read_partitions` gives Sources, or the consumer's records: ms)."""
    return record.timestamp if isinstance(record.timestamp, datetime) else kafka_time(record.timestamp)


def position_of(record) -> Position:
    return Position(record.topic, record.partition, record.offset, time_of(record))


def kafka_key(topic: str, value: bytes) -> str:
    """The key the service's producers give the record (intake, API, normaliser)."""
    if topic in (names.BOOKINGS, names.COMMUNICATIONS):
        return json.loads(value)["expert_id"]
    if topic == names.EMAIL_EVENTS:
        return json.loads(value)["data"]["email_id"]
    return decoder_for(topic, "", fast=False)(value).kafka_key  # payment facts, commands


async def produce(settings, records: list[tuple[str, bytes]], then: tuple[str, bytes],
                  after: list[tuple[str, bytes]]) -> None:
    """`records`, then `then` alone, then `after`, each step with later timestamps than the one before."""
    producer = names.new_producer(settings)
    await producer.start()
    try:
        for step in (records, [then], after):
            pending = []
            for topic, value in step:  # in the stream's order: the Kafka timestamps follow it
                pending.append(await producer.send(settings.topic(topic), key=kafka_key(topic, value).encode(),
                                                   value=value))
            await asyncio.gather(*pending)
            await asyncio.sleep(0.01)
    finally:
        await producer.stop()


async def apply_live(engine, settings, batch: list, rng: random.Random) -> Projector:
    """The live engine over `batch` ((position, item) pairs), in batches of random sizes."""
    live = Projector(engine, version=await ensure_live(engine, settings.consumer_group), id_secret=SECRET)
    i = 0
    while i < len(batch):
        size = rng.randint(1, 300)
        await live.apply(batch[i:i + size])
        i += size
    return live


def named_rows(snapshot: dict[str, list], name: str) -> list[dict]:
    table = next(tb for tb in TABLES if tb.name == name)
    columns = [c.name for c in table.columns if c.name not in ("version", "applied_at")]
    return [dict(zip(columns, row)) for row in snapshot[name]]


def check_snapshot(snapshot: dict[str, list], mixed: Mixed, label: str) -> None:
    """Not trivially empty; payment-first payments linked; the re-booked person's new appointment only."""
    for name in ("payments", "payment_aliases", "notes", "communications", "email_reports", "customer_profiles",
                 "customer_tags", "customer_field_values", "insight_counts", "customer_insights", "meetings"):
        assert snapshot[name], f"{label}: {name} is empty"
    payments = {r["payment_id"]: r for r in named_rows(snapshot, "payments")}
    for payment, (expert, meeting) in mixed.linked.items():
        row = payments.get(payment)
        assert row is not None, f"{label}: payment {payment} missing"
        assert (row["expert_id"], row["meeting_id"]) == (expert, meeting), f"{label}: payment {payment} not linked"

    meetings = [r for r in named_rows(snapshot, "meetings") if r["email_hash"] == mixed.hash]
    assert [(r["expert_id"], r["meeting_id"], r["customer_id"]) for r in meetings] == \
        [(mixed.expert, mixed.new_meeting, mixed.cid)], f"{label}: the re-booked person's meetings"
    customers = [r for r in named_rows(snapshot, "customers") if r["email_hash"] == mixed.hash]
    assert [(r["expert_id"], r["customer_id"], r["appointments"], r["upcoming"]) for r in customers] == \
        [(mixed.expert, mixed.cid, 1, 1)], f"{label}: the re-booked person's summary"
    passing = [r for r in named_rows(snapshot, "meetings") if r["meeting_id"].endswith("m_passing")]
    passed = [r for r in named_rows(snapshot, "customers") if r["customer_id"] == passing[0]["customer_id"]]
    assert [(r["past"], r["upcoming"]) for r in passed] == [(1, 0)], f"{label}: the sweep to T"
    old_ids = {customer_id(SECRET, e, mixed.email) for e in mixed.old_experts}
    insights = [r for r in named_rows(snapshot, "customer_insights") if r["customer_id"] == mixed.cid]
    assert len(insights) == 1 and {m for m, *_ in json.loads(insights[0]["contribution"])} == mixed.new_months and \
        all(n == 1 for *_, n in json.loads(insights[0]["contribution"])), \
        f"{label}: the re-booked person's insights {insights}"
    for name, rows in snapshot.items():
        if name in ("meetings", "customers"):
            continue
        for row in rows:
            text = repr(row)
            assert mixed.hash not in text and mixed.email not in text, f"{label}: {name} keeps the erased person: {row}"
            if row not in [tuple(r.values()) for r in insights]:
                assert not any(i in text for i in old_ids), f"{label}: {name} keeps the erased customer: {row}"
    for name, rows in snapshot.items():
        for row in rows:
            assert not any(mentions(row, m) for m in mixed.old_meetings | mixed.old_payments), \
                f"{label}: {name} keeps a meeting or payment from before the erasure: {row}"


def mentions(row: tuple, value: str) -> bool:
    return any(v == value or (isinstance(v, str) and f'"{value}"' in v) for v in row)


def differences(want: dict[str, list], got: dict[str, list]) -> dict[str, tuple[list, list]]:
    """Per table: (rows only live has, rows only the rebuild has)."""
    out = {}
    for name in want:
        have, other = set(map(repr, want[name])), set(map(repr, got[name]))
        if want[name] != got[name]:
            out[name] = (sorted(have - other), sorted(other - have))
    return out


def max_partition(ends: dict) -> int:
    """The records of the biggest partition number, every projected topic together."""
    sizes: dict[int, int] = {}
    for (_topic, partition), end in ends.items():
        sizes[partition] = sizes.get(partition, 0) + end
    return max(sizes.values())


async def test_the_fold_with_one_and_three_processes_equals_the_live_read_model():
    url = await fresh_pg_database()
    await migrate(url)
    settings = settings_for(url, topic_partitions=PARTITIONS, customer_id_secret=SECRET)
    until = (datetime.now(timezone.utc) + timedelta(hours=1)).replace(second=0, microsecond=0)  # T
    mixed = Mixed(SEED, until)
    await names.ensure_topics(settings)
    erasure = (names.COMMANDS, mixed.erasure.model_dump_json().encode())
    await produce(settings, mixed.records, erasure, mixed.again)

    topics = [settings.topic(n) for n in names.PROJECTED]
    ends = await names.end_offsets(settings, topics)
    total = sum(ends.values())
    assert total == len(mixed.records) + 1 + len(mixed.again)
    assert {p for _topic, p in ends} == set(range(PARTITIONS))
    read = await read_partitions(settings, sorted(ends), ends)
    assert sum(map(len, read.values())) == total

    # the records sit where their real keys put them; payment-first facts apart from their bookings
    booked_on: dict[str, int] = {}
    fact_on: dict[str, int] = {}
    for (topic, partition), records in read.items():
        for src in records:
            assert src.key.decode() == kafka_key(topic[len(settings.topic_prefix):], src.value)
            body = json.loads(src.value)
            if topic == settings.topic(names.BOOKINGS) and body["type"] == "booking.created":
                booked_on[body["meeting_id"]] = partition
            elif topic == settings.topic(names.ACTIVITY) and body["stripe_event_id"] in mixed.stripped:
                assert src.key.decode() == body["payment_id"]
                fact_on[body["stripe_event_id"]] = partition
    assert fact_on.keys() == mixed.stripped.keys()
    apart = [e for e, p in fact_on.items() if p != booked_on[mixed.stripped[e]]]
    assert apart, "every payment-first fact landed on its booking's partition"
    assert {mixed.stripped[e] for e in apart} & {m for _e, m in mixed.linked.values()}, \
        "no linked payment-first fact sits apart from its booking"
    everything = [src for records in read.values() for src in records]
    erased_at = [time_of(src) for src in everything
                 if src.topic == settings.topic(names.COMMANDS) and json.loads(src.value)["command_id"] == "e_again"]
    again_at = [time_of(src) for src in everything
                if src.topic == settings.topic(names.BOOKINGS) and json.loads(src.value)["meeting_id"] == mixed.new_meeting]
    assert len(erased_at) == 1 and len(again_at) == 2 and erased_at[0] < min(again_at)  # booked again after it
    assert erasure_partition(read, settings) != booked_on[mixed.new_meeting]  # another partition: read in any order

    engine = make_engine(url)
    try:
        # live: the partitions merged by timestamp, each in its order; real positions; random batch sizes
        rng = random.Random(SEED)
        streams = [read[tp] for tp in sorted(read)]
        rng.shuffle(streams)  # ties between partitions broken in no particular order
        ordered = list(heapq.merge(*streams, key=time_of))
        batch = [(position_of(src), decoder_for(src.topic, settings.topic_prefix)(src.value)) for src in ordered]
        live = await apply_live(engine, settings, batch, rng)
        await live.sweep(until)
        want = await tables(engine, live.version)
        check_snapshot(want, mixed, "live")
        await summaries_recount(engine, live.version)

        folded: dict[int, int] = {}
        for processes, share_size, slices in ((1, None, 1), (3, 300, -(-max_partition(ends) // 300))):
            progress = await replay(settings, grace=0, switch_lag=0, processes=processes, share_size=share_size)
            assert progress.switched and progress.version != live.version
            assert progress.fold is not None
            assert slices > 1 if share_size else slices == 1  # the second rebuild cuts partitions in slices
            assert progress.fold["shares"] == PARTITIONS * slices and progress.fold["slices"] == slices
            assert progress.fold["processes"] == processes
            folded[processes] = progress.fold["records"]
            assert progress.fold["dead_lettered"] == 0
            rebuilt = Projector(engine, version=progress.version, id_secret=SECRET)
            await rebuilt.sweep(until)
            got = await tables(engine, progress.version)
            diffs = differences(want, got)
            summary = "; ".join(f"{name}: {len(a)} rows only live, {len(b)} only rebuilt"
                                for name, (a, b) in diffs.items())
            for name in want:
                only_live, only_rebuilt = diffs.get(name, ([], []))
                assert got[name] == want[name], (
                    f"{name} differs with {processes} fold process(es) [{summary}]\n"
                    f"only live: {only_live[:5]}\nonly rebuilt: {only_rebuilt[:5]}")
            check_snapshot(got, mixed, f"rebuilt by {processes}")
            await summaries_recount(engine, progress.version)
        # every record of the topics folded once (an erasure is applied by every share, but it is one record)
        erasures = sum(1 for src in everything if src.topic == settings.topic(names.COMMANDS)
                       and json.loads(src.value)["type"] == "customer.erased")
        assert folded == {1: total, 3: total}, (
            f"the fold reports {folded} records; the topics hold {total}, of which {erasures} erasures "
            f"(each share applies every erasure: {total} + {erasures} x {PARTITIONS - 1} = "
            f"{total + erasures * (PARTITIONS - 1)})")
    finally:
        await engine.dispose()
