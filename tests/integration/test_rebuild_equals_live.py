"""A rebuild gives the live worker's read model, table for table, from a full mixed stream.

The stream: a generated marketplace (bookings, reschedules, cancellations; payments with
declines, captures, refunds, disputes and fees), every record one to three times, shuffled, plus
notes and erasures. The live version takes it in small batches of random sizes; a version built
as a replay builds (its tables without the readers' indexes) takes the same records in large
batches. Every table must be equal, and every stored summary must equal a recount of its
customer's history (the summaries are folded from changes, batch by batch).
"""

from __future__ import annotations

import json
import random
from datetime import timedelta

import pytest
from sqlalchemy import select

from customers.ids import customer_id, email_hash
from projections import tables as t
from customers.commands import (CustomerArchived, CustomerErased, CustomerFieldsSet, CustomerTagsSet,
                                FieldDefinition, FieldsDefined, NoteAdded, NoteDeleted)
from projections.db import make_engine, migrate
from projections.meetings import meeting_from_row
from projections.physical import index_version
from projections.projector import Position, Projector
from projections.rules.status import status_of
from projections.summary import summarise
from projections.sweep import watermark as watermark_of
from projections.versions import begin_replay, ensure_live
from streams.decode import decoder_for
from customers.stripe_facts import to_fact
from tests import scenario as sc
from testing.harness import fresh_pg_database

SECRET = "k" * 32
TABLES = (t.customers, t.meetings, t.payments, t.payment_aliases, t.notes, t.stripe_events_applied,
          t.field_definitions, t.customer_profiles, t.customer_tags, t.customer_field_values, t.insight_counts,
          t.customer_insights, t.communications, t.email_reports)


ERASED_AND_MESSAGED: dict[int, str] = {}  # seed -> the email of a messaged person the stream erases


def stream(seed: int) -> list[tuple[str, bytes]]:
    """(topic, value) records as the worker reads them."""
    rng = random.Random(seed)
    story = sc.generate(120, seed=seed, experts=3, customers_per_expert=25, prefix=f"r{seed}")
    records = []
    for kind, event in sc.deliveries(story, seed=seed):
        if kind == "booking":
            records.append(("bookings", json.dumps(event).encode()))
        else:
            fact = to_fact(event)
            records.append(("customer-activity", fact.model_dump_json(exclude_none=True).encode()))
    people = sorted({(b["expert_id"], b["customer"]["email"].strip().lower(), b["occurred_at"])
                     for b in story.bookings if b["type"] == "booking.created"})
    last = max(p[2] for p in people)
    for n, (expert, email, at) in enumerate(rng.sample(people, 12)):
        cid = customer_id(SECRET, expert, email)
        when = sc.datetime.fromisoformat(last.replace("Z", "+00:00")) + timedelta(minutes=n)
        note = NoteAdded(command_id=f"c{n}", occurred_at=when, note_id=f"n{n}", expert_id=expert, customer_id=cid,
                         body=f"note {n}", created_at=when)
        records.insert(rng.randrange(len(records)), ("customer-commands", note.model_dump_json().encode()))
        if n % 3 == 0:
            gone = NoteDeleted(command_id=f"d{n}", occurred_at=when, note_id=f"n{n}", expert_id=expert, customer_id=cid)
            records.insert(rng.randrange(len(records)), ("customer-commands", gone.model_dump_json().encode()))
    for expert in sorted({p[0] for p in people}):
        defined = FieldsDefined(command_id=f"f{expert}", occurred_at=sc.datetime.fromisoformat(last.replace("Z", "+00:00")),
                                expert_id=expert, definitions=[FieldDefinition(key="goal", label="Goal", type="text")])
        records.insert(rng.randrange(len(records)), ("customer-commands", defined.model_dump_json().encode()))
    for n, (expert, email, _at) in enumerate(rng.sample(people, 15)):
        on = {"occurred_at": sc.datetime.fromisoformat(last.replace("Z", "+00:00")) + timedelta(minutes=n),
              "expert_id": expert, "customer_id": customer_id(SECRET, expert, email),
              "email_hash": email_hash(SECRET, email)}
        for cmd in (CustomerTagsSet(command_id=f"t{n}", tags=["vip", f"group {n % 3}"], **on),
                    CustomerFieldsSet(command_id=f"v{n}", values={"goal": f"goal {n % 2}"}, **on),
                    *([CustomerArchived(command_id=f"a{n}", **on)] if n % 4 == 0 else [])):
            records.insert(rng.randrange(len(records)), ("customer-commands", cmd.model_dump_json().encode()))
    statuses = ["email.sent", "email.delivered", "email.opened", "email.bounced"]
    messaged = rng.sample(people, 20)
    ERASED_AND_MESSAGED[seed] = messaged[0][1]
    for n, (expert, email, _at) in enumerate(messaged):  # what the platform sent, and reports
        sent = {"type": "message.sent", "event_id": f"msg{n}", "schema_version": 1, "expert_id": expert,
                "customer": {"email": email}, "channel": "email", "kind": "reminder", "subject": f"Reminder {n}",
                "provider_message_id": f"re_{seed}_{n}", "occurred_at": last}
        records.insert(rng.randrange(len(records)), ("communications", json.dumps(sent).encode()))
        for k, kind in enumerate(statuses[: 1 + n % 4]):
            report = {"type": kind, "created_at": last, "data": {"email_id": f"re_{seed}_{n}", "n": k}}
            records.insert(rng.randrange(len(records)), ("email-events", json.dumps(report).encode()))
    for n, (_expert, email, _at) in enumerate(rng.sample(people, 3) + messaged[:1]):  # one of them was messaged
        erased = CustomerErased(command_id=f"e{n}", occurred_at=sc.datetime.fromisoformat(last.replace("Z", "+00:00"))
                                + timedelta(hours=1), email_hash=email_hash(SECRET, email))
        records.append(("customer-commands", erased.model_dump_json().encode()))
    return records


async def apply(projector: Projector, records: list[tuple[str, bytes]], sizes) -> None:
    offsets: dict[str, int] = {}
    batch = []
    for topic, value in records:
        offsets[topic] = offsets.get(topic, -1) + 1
        batch.append((Position(topic, 0, offsets[topic]), decoder_for(topic, "")(value)))
    i = 0
    while i < len(batch):
        size = next(sizes)
        await projector.apply(batch[i:i + size])
        i += size


async def tables(engine, version: int) -> dict[str, list]:
    out = {}
    async with engine.connect() as conn:
        for table in TABLES:
            columns = [c for c in table.columns if c.name not in ("version", "applied_at")]
            query = select(*columns).where(table.c.version == version)
            if table is t.insight_counts:  # a sum that came back to 0 may stay as a row of 0
                query = query.where(table.c.value != 0)
            rows = await conn.execute(query)
            out[table.name] = sorted((tuple(json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v
                                            for v in r) for r in rows), key=repr)
    return out


async def summaries_recount(engine, version: int) -> None:
    """Every stored summary equals `summarise` over its customer's meetings and payments."""
    async with engine.connect() as conn:
        as_of = await watermark_of(conn, version)
        meetings, states = {}, {}
        for row in await conn.execute(select(t.meetings).where(t.meetings.c.version == version)):
            meetings.setdefault((row.expert_id, row.customer_id), []).append(meeting_from_row(row))
        for row in await conn.execute(select(t.payments).where(t.payments.c.version == version)):
            states.setdefault((row.expert_id, row.customer_id), []).append(row.state)
        rows = (await conn.execute(select(t.customers).where(t.customers.c.version == version))).all()
    assert rows
    for row in rows:
        key = (row.expert_id, row.customer_id)
        expected = summarise(meetings.get(key, []), states.get(key, []), as_of)
        stored = {k: getattr(row, k) for k in expected}
        assert stored == expected, key
        assert row.status == status_of(row, as_of), key  # as of the watermark, from the columns it reads


@pytest.mark.parametrize("seed", [5, 11])
async def test_a_rebuild_equals_the_live_read_model(seed):
    url = await fresh_pg_database()
    await migrate(url)
    engine = make_engine(url)
    try:
        records = stream(seed)
        live = Projector(engine, version=await ensure_live(engine, "g"), id_secret=SECRET)
        rng = random.Random(seed)
        await apply(live, records, iter(lambda: rng.randint(1, 300), None))
        version, _ = await begin_replay(engine, "g")
        async with engine.begin() as conn:  # the same watermark: counts as of the same time
            await conn.execute(t.projection_versions.update().where(t.projection_versions.c.version == version)
                               .values(swept_until=await watermark_of(conn, live.version)))
        rebuilt = Projector(engine, version=version, id_secret=SECRET)
        await apply(rebuilt, records, iter(lambda: 1000, None))
        async with engine.begin() as conn:
            await index_version(conn, version)
        got, want = await tables(engine, version), await tables(engine, live.version)
        for name in want:
            assert got[name] == want[name], name
        assert want["notes"] and want["payments"] and want["payment_aliases"]
        assert want["customer_profiles"] and want["customer_tags"] and want["customer_field_values"]
        assert want["insight_counts"] and want["customer_insights"]
        assert want["communications"] and want["email_reports"]
        gone = email_hash(SECRET, ERASED_AND_MESSAGED[seed])
        for version_rows in (got, want):  # the erased person's messages stay out, live and rebuilt
            assert all(gone not in row for row in version_rows["communications"])
        archived = [c.name for c in t.customers.columns if c.name != "version"].index("archived")
        assert any(row[archived] for row in want["customers"])  # a profile's archive reached its summary
        await summaries_recount(engine, live.version)
        await summaries_recount(engine, version)
    finally:
        await engine.dispose()
