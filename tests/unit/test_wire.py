"""The msgspec decoders (`customers.wire`) against the pydantic models they stand in for: every
record the project writes decodes to the same values, by msgspec alone; records changed in every
way are accepted by both decoders or refused by both, and decode to the same values."""

import copy
import json
import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import msgspec
from hypothesis import HealthCheck, event, given, settings, strategies as st
from pydantic import BaseModel

from bench.workload import Mix, marketplace
from customers import kafka as names, wire
from testing import samples as s
from customers.events import parse_booking_event
from customers.commands import CustomerErased, NoteAdded, NoteDeleted
from streams.decode import DECODERS, FAST_DECODERS, decoder_for
from customers.stripe_facts import _from_charge, _from_intent, to_fact
from tests import scenario, stripe_histories as histories

BOOKINGS, ACTIVITY, COMMANDS = names.BOOKINGS, names.ACTIVITY, names.COMMANDS
FAST_ALONE = {BOOKINGS: wire.fast_booking_event, ACTIVITY: wire.fast_activity, COMMANDS: wire.fast_command}
REFUSED = "refused"
T0 = datetime(2026, 3, 1, 9, tzinfo=timezone.utc)


def plain(value):
    """Either decoder's result as plain data: class names, fields (with `type`), typed scalars,
    times as (wall time, offset) so that a changed offset or a lost one shows."""
    if isinstance(value, (BaseModel, msgspec.Struct)):
        fields = list(type(value).model_fields if isinstance(value, BaseModel) else value.__struct_fields__)
        if hasattr(value, "type") and "type" not in fields:
            fields.append("type")
        return {"class": type(value).__name__, **{name: plain(getattr(value, name)) for name in sorted(fields)}}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, datetime):
        return ("datetime", value.replace(tzinfo=None), value.utcoffset())
    return None if value is None else (type(value).__name__, value)


def outcome(decode, raw):
    try:
        return plain(decode(raw))
    except ValueError:  # what `streams.poison` dead-letters
        return REFUSED


# --- what the project writes --------------------------------------------------------------------


def fact_json(fact) -> bytes:
    return fact.model_dump_json(exclude_none=True).encode()  # as `normalise_stripe` writes it


def intake_json(event: dict) -> bytes:
    return json.dumps(parse_booking_event(event).model_dump(mode="json")).encode()  # as the intake republishes it


def booking_samples() -> list[dict]:
    start = T0 + timedelta(days=3)
    return [
        s.booking_created("ex1", "m1", "Ana@Example.com", "Ana", start),
        s.booking_created("ex1", "m2", " bea@example.com", "Bea", start, phone="+351900000000", tz="America/New_York",
                          payment_intent_id="pi_1", amount=0, currency="usd"),
        s.booking_created("ex2", "m3", "c@example.org", "Inês João", start, checkout_session_id="cs_1", minutes=0),
        s.booking_event("booking.rescheduled", "ex1", "m1", T0, start_time=s.iso(start + timedelta(days=1)),
                        end_time=s.iso(start + timedelta(days=1, hours=1))),
        s.booking_event("booking.rescheduled", "ex1", "m1", T0, start_time="2026-03-05T10:00:00+01:00",
                        end_time="2026-03-05T11:00:00.250000+01:00", timezone="Europe/Lisbon"),
        s.booking_event("booking.cancelled", "ex1", "m1", T0, reason="card 4242 4242 4242 4242 was refused",
                        cancelled_by="customer"),
        s.booking_event("booking.cancelled", "ex1", "m2", T0),
        s.booking_event("booking.no_show", "ex2", "m3", T0 + timedelta(days=4)),
    ]


def history_facts(seeds: range) -> list:
    out = []
    for seed in seeds:
        h = histories.generate(random.Random(seed), f"pi_{seed}", metadata={"expert_id": "ex", "meeting_id": f"m{seed}"},
                               checkout=(f"cs_{seed}", s.meeting_metadata("ex", "a@b.co", "A", T0)) if seed % 5 == 0
                               else None)
        for event in histories.events_of(h):
            out.append(to_fact(event))
            obj = event["data"]["object"]
            if obj["object"] == "charge":  # what `stripe_api.charge_snapshot` publishes
                fields = {k: v for k, v in _from_charge(obj, "lookup.charge").items() if v is not None}
                fields.pop("created_at", None)
                out.append(wire.facts.PaymentObserved(stripe_event_id=f"{event['id']}#charge", occurred_at=T0,
                                                      stripe_event_type="lookup.charge",
                                                      payment_id=fields.get("payment_intent_id") or obj["id"], **fields))
            elif obj["object"] == "payment_intent":  # and `stripe_api.lookup`
                seen = _from_intent(obj, "lookup")
                out.append(wire.facts.PaymentObserved(
                    stripe_event_id=f"{event['id']}#lookup", stripe_event_type="lookup.payment_intent",
                    occurred_at=T0 + timedelta(microseconds=123456), payment_id=obj["id"], payment_intent_id=obj["id"],
                    **{k: seen[k] for k in ("expert_id", "meeting_id", "customer_email", "booked_start")
                       if seen.get(k) is not None}))
    out.append(to_fact(s.stripe_event("customer.created", {"id": "cus_1", "object": "customer"})))
    return out


def command_samples() -> list[bytes]:
    commands = [
        NoteAdded(command_id="c1", occurred_at=T0, note_id="n1", expert_id="ex1", customer_id="c_1",
                  body="called back; card 4000 0566 5566 5556", created_at=T0),
        NoteDeleted(command_id="c2", occurred_at=T0 + timedelta(seconds=1), note_id="n1", expert_id="ex1",
                    customer_id="c_1"),
        CustomerErased(command_id="c3", occurred_at=datetime(2026, 3, 1, 10, 0, 0, 5, tzinfo=timezone.utc),
                       email_hash="0" * 64),
    ]
    return [c.model_dump_json().encode() for c in commands]


def project_records() -> list[tuple[str, bytes]]:
    records = []
    for event in booking_samples():
        records += [(BOOKINGS, json.dumps(event).encode()), (BOOKINGS, intake_json(event))]
    made = scenario.generate(60, seed=3)
    records += [(BOOKINGS, json.dumps(e).encode()) for e in made.bookings]
    records += [(BOOKINGS, intake_json(e)) for e in made.bookings[:20]]
    records += [(ACTIVITY, fact_json(to_fact(e))) for e in made.stripe_events]
    records += [(ACTIVITY, fact_json(f)) for f in history_facts(range(120))]
    records += [(COMMANDS, raw) for raw in command_samples()]
    records += [(topic, value) for topic, _key, value in marketplace(3000, experts=40, mix=Mix(chunk=300), now=T0)]
    return records


RECORDS = project_records()

FIRST_RELEASE = [  # the retained customer-activity topic still holds facts with flat figures
    {"type": "payment.observed", "stripe_event_id": "evt_old", "stripe_event_type": "charge.succeeded",
     "occurred_at": "2026-01-01T00:00:00Z", "payment_id": "pi_1", "payment_intent_id": "pi_1", "charge_id": "ch_1",
     "status": "succeeded", "amount": 10000, "captured": 10000, "currency": "eur", "application_fee": 1500,
     "charge_amount_refunded": 2000, "card": {"brand": "visa", "last4": "4242"}},
    {"type": "payment.observed", "stripe_event_id": "evt_old2", "stripe_event_type": "payment_intent.succeeded",
     "occurred_at": "2026-01-01T00:00:00Z", "payment_id": "pi_1", "charge_id": "ch_1", "status": "pending",
     "amount": 10000, "card": {"brand": "visa", "last4": "4242"},
     "refunds": [{"id": "re_1", "amount": 100, "status": "succeeded"}],
     "disputes": [{"id": "dp_1", "amount": 100, "status": "open"}]},
    {"type": "payment.observed", "stripe_event_id": "evt_old3", "stripe_event_type": "checkout.session.completed",
     "occurred_at": "2026-01-01T00:00:00Z", "payment_id": "cs_1", "status": "succeeded", "amount": 10000},
    {"type": "payment.observed", "stripe_event_id": "evt_old4", "stripe_event_type": "application_fee.refunded",
     "occurred_at": "2026-01-01T00:00:00Z", "payment_id": "ch_1", "charge_id": "ch_1", "application_fee": 700,
     "application_fee_refunded": 700},
]


def test_every_record_the_project_writes_decodes_alike_and_by_msgspec_alone():
    kinds = set()
    for topic, raw in RECORDS:
        expected = plain(DECODERS[topic](raw))
        assert plain(FAST_DECODERS[topic](raw)) == expected, raw
        alone = FAST_ALONE[topic](raw)
        assert alone is not None, f"left to pydantic: {raw!r}"
        assert plain(alone) == expected
        kinds.add(expected["class"])
    assert kinds == {"BookingCreated", "BookingRescheduled", "BookingCancelled", "BookingNoShow", "PaymentObserved",
                     "StripeEventIgnored", "NoteAdded", "NoteDeleted", "CustomerErased"}


def test_records_only_pydantic_reads_decode_alike_into_the_structs():
    cases = [(ACTIVITY, json.dumps(old).encode()) for old in FIRST_RELEASE]
    event = booking_samples()[1]
    card_fact = json.loads(fact_json(history_facts(range(1))[1]))
    card_fact["charge"]["card"]["last4"] = "\u0661\u0662\u0663\u0664"
    cases += [
        (BOOKINGS, json.dumps({**event, "price": {"amount": "7000", "currency": "eur"}}).encode()),  # lax int
        (BOOKINGS, json.dumps({**event, "occurred_at": 1_767_000_000}).encode()),  # a Unix time
        (BOOKINGS, json.dumps({**event, "created_at": "2026-03-01T09:00:00.1234567Z"}).encode()),  # truncated, not rounded
        (BOOKINGS, json.dumps({**event, "customer": {**event["customer"], "name": "Z\u00e9"}, "extra": 1}).encode()),
        (BOOKINGS, json.dumps(event).encode().replace(b'"svc_1"', b'"svc_\\u0031"')),  # an escaped digit
        (BOOKINGS, json.dumps(event).encode().decode()),  # text, not bytes
        (ACTIVITY, json.dumps(card_fact, ensure_ascii=False).encode()),  # Arabic-Indic digits
        (ACTIVITY, json.dumps({**json.loads(fact_json(history_facts(range(1))[1])), "undecided": "yes"}).encode()),
    ]
    for topic, raw in cases:
        assert FAST_ALONE[topic](raw) is None
        expected = outcome(DECODERS[topic], raw)
        assert expected != REFUSED, raw
        got = FAST_DECODERS[topic](raw)
        assert isinstance(got, msgspec.Struct)
        assert plain(got) == expected


def test_refusals_are_value_errors_that_the_poison_handling_dead_letters():
    assert issubclass(msgspec.ValidationError, ValueError) and issubclass(msgspec.DecodeError, ValueError)
    bad = [(BOOKINGS, b"not json"), (BOOKINGS, b"{}"), (BOOKINGS, b'{"type": "booking.created"}'), (BOOKINGS, b"\xff"),
           (ACTIVITY, b"[]"), (COMMANDS, b'{"type": "note.added"}'),
           # a first-release fact in a shape its upgrade cannot read used to raise TypeError
           (ACTIVITY, json.dumps({**FIRST_RELEASE[2], "status": [1]}).encode()),
           (ACTIVITY, json.dumps({**FIRST_RELEASE[0], "refunds": [1]}).encode()),
           (ACTIVITY, json.dumps({**FIRST_RELEASE[0], "refunds": "ab"}).encode())]
    for topic, raw in bad:
        for fast in (False, True):
            assert outcome(decoder_for(topic, "", fast), raw) == REFUSED, (topic, raw, fast)
    assert decoder_for("pre." + BOOKINGS, "pre.", fast=True) is wire.decode_booking_event
    assert decoder_for(BOOKINGS, "", fast=False) is DECODERS[BOOKINGS]


def test_what_the_projection_reads_of_a_fact_is_the_same():
    for topic, raw in RECORDS + [(ACTIVITY, json.dumps(old).encode()) for old in FIRST_RELEASE]:
        if topic != ACTIVITY:
            continue
        model, struct = DECODERS[topic](raw), FAST_DECODERS[topic](raw)
        assert struct.type == model.type and struct.kafka_key == model.kafka_key
        if model.type == "payment.observed":
            assert struct.charge_ids() == model.charge_ids()
            if model.charge and model.charge.card:
                # stored as JSON in the payment's state: the same keys in the same order
                assert list(struct.charge.card.model_dump().items()) == list(model.charge.card.model_dump().items())


# --- records changed every way ------------------------------------------------------------------


@dataclass(frozen=True)
class Escaped:
    """A string written with some of its characters as \\u escapes."""

    text: str
    at: frozenset


@dataclass(frozen=True)
class Verbatim:
    """JSON text as it is: numbers Python would not write, or too long to write."""

    text: str


@dataclass(frozen=True)
class Repeated:
    """An object written with one key twice (JSON allows it; the last one counts)."""

    value: dict
    key: str
    other: object
    first: bool


def dumps(value, ascii: bool) -> str:
    if isinstance(value, Escaped):
        out = []
        for i, ch in enumerate(value.text):
            if i in value.at:
                units = ch.encode("utf-16-be", "surrogatepass")
                out += [f"\\u{int.from_bytes(units[j:j + 2], 'big'):04x}" for j in range(0, len(units), 2)]
            else:
                out.append(json.dumps(ch, ensure_ascii=ascii)[1:-1])
        return '"' + "".join(out) + '"'
    if isinstance(value, Verbatim):
        return value.text
    if isinstance(value, Repeated):
        pairs = list(value.value.items())
        pairs.insert(0 if value.first else len(pairs), (value.key, value.other))
        return "{" + ", ".join(f"{dumps(k, ascii)}: {dumps(v, ascii)}" for k, v in pairs) + "}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{dumps(k, ascii)}: {dumps(v, ascii)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(dumps(v, ascii) for v in value) + "]"
    return json.dumps(value, ensure_ascii=ascii)


def templates() -> list[tuple[str, dict]]:
    out = [(BOOKINGS, e) for e in booking_samples()]
    out += [(BOOKINGS, json.loads(intake_json(e))) for e in booking_samples()[:3]]
    seen = {}
    for fact in history_facts(range(40)):
        raw = json.loads(fact_json(fact))
        shape = (raw["type"], raw.get("stripe_event_type", "").split(".")[0],
                 tuple(k for k in ("intent", "charge", "session", "refunds", "disputes", "fee") if raw.get(k)))
        seen.setdefault(shape, raw)
    out += [(ACTIVITY, raw) for raw in seen.values()] + [(ACTIVITY, old) for old in FIRST_RELEASE]
    out += [(COMMANDS, json.loads(raw)) for raw in command_samples()]
    return out


TEMPLATES = templates()


def _parts(value, path=()):
    yield path, value
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _parts(v, path + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _parts(v, path + (i,))


PARTS = [v for _topic, t in TEMPLATES for _path, v in _parts(t) if _path]
LITERALS = ["booking.created", "booking.rescheduled", "booking.cancelled", "booking.no_show", "payment.observed",
            "stripe.ignored", "note.added", "note.deleted", "customer.erased", "customer", "expert", "system",
            "succeeded", "Succeeded", "succeeded ", "pending", "failed", "canceled", "requires_action", "processing",
            "requires_capture", "open", "complete", "expired", "lost", "won", "needs_response", "charge_refunded"]
TEXTS = ["", " ", "a", "ab", "eur", "EUR", "eu", "euro", "eur\n", "\u00e9ur", "4242", "424", "42424", "4242\n",
         "\u0661\u0662\u0663\u0664", "\U0001d7d2\U0001d7d0\U0001d7d2\U0001d7d0", "\U00011f50" * 4, "12\u00b2\u00b3", "ab\x00c", "\ud800",
         "x\ud83d\ude00", "Ana@Example.com", " ana@example.com ", "a@b", "@b.c", "a@b.c", "a@@b.c", "\u0130" * 200 + "@b.co",
         "a" * 318 + "@b.co", "UTC", "Europe/Lisbon", "europe/lisbon", "Mars/Olympus", "../etc/passwd", "Etc/GMT+1",
         "4242 4242 4242 4242", "7000", " 7000", "7_000", "7000.0", "1e3", "-1", "true", "yes", "on", "1", "0", "t",
         "f", "null", "0" * 64, "f" * 64, "F" * 64, "0" * 64 + "\n", "0" * 63, "0" * 65, "1767000000", "1767000000000"]
LENGTHS = [1, 2, 3, 4, 5, 39, 40, 41, 51, 52, 53, 63, 64, 65, 199, 200, 201, 319, 320, 321, 1999, 2000, 2001, 9999,
           10000, 10001]
INTS = [0, 1, -1, 2, 12, 2030, 2**31, 2**63 - 1, 2**63, -(2**63) - 1, 2**64, 10**30, -(10**30)]
NUMBERS = [Verbatim(t) for t in ("9" * 4300, "9" * 4301, "-" + "9" * 4301, "1e400", "-0", "1E3", "1.0e0", "0.0", "NaN",
                                 "Infinity", "-Infinity", "01", "1.", ".5", "+1", "0x10")]


def times() -> st.SearchStrategy:
    """Time-like texts in every shape pydantic or msgspec might read differently."""
    frac = st.one_of(st.just(""), st.text("0123456789", min_size=0, max_size=10).map(lambda d: "." + d),
                     st.sampled_from([",5", ".9999995", ".0000005", ".1234567"]))
    zone = st.sampled_from(["", "Z", "z", "+00:00", "-00:00", "+01:00", "-05:30", "+0100", "+01", "+23:59", "+24:00",
                            "-23:59", " Z", "UTC", "+01:00:30"])
    sep = st.sampled_from(["T", "t", " ", "_", "TT"])
    year = st.sampled_from(["0000", "0001", "1969", "1970", "2024", "2026", "9999", "10000", "24"])
    day = st.sampled_from(["01-01", "12-31", "02-29", "02-30", "13-01", "1-01"])
    clock = st.sampled_from(["00:00:00", "23:59:59", "23:59:60", "24:00:00", "12:30", "12", "09:05:07"])
    text = st.builds(lambda y, d, p, c, f, z: f"{y}-{d}{p}{c}{f}{z}", year, day, sep, clock, frac, zone)
    return st.one_of(text, text.map(lambda t: t.split("T")[0]), st.integers(-10**12, 10**14),
                     st.floats(allow_nan=False, allow_infinity=False, min_value=-1e15, max_value=1e15),
                     st.integers(0, 2 * 10**10).map(str), st.datetimes(timezones=st.just(timezone.utc)).map(
                         lambda d: d.isoformat()), st.datetimes().map(lambda d: d.isoformat()))


TIMES = times()
values = st.one_of(
    st.none(), st.booleans(), st.sampled_from(INTS), st.integers(), st.sampled_from(NUMBERS),
    st.sampled_from([1.0, 7000.0, 1e3, 0.5, -0.0, 1e300]), st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(LITERALS), st.sampled_from(TEXTS), st.text(max_size=12),
    st.builds(lambda n, c: c * n, st.sampled_from(LENGTHS), st.sampled_from(["a", "\u00e9", "4", " "])),
    TIMES, st.sampled_from(PARTS).map(copy.deepcopy),
    st.sampled_from([{}, [], [{}], [1], {"id": "x"}]).map(copy.deepcopy), st.sampled_from([5, 150, 250, 1200]).flatmap(
        lambda n: st.sampled_from([Verbatim("[" * n + "]" * n), Verbatim('{"a": ' * n + "1" + "}" * n)])),
)


OTHER_DIGITS = str.maketrans("0123456789", "\u0660\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669")


def similar(node) -> st.SearchStrategy:
    """Values near `node`: what a producer might get slightly wrong."""
    if isinstance(node, bool):
        return st.sampled_from([not node, int(node), str(node).lower(), None])
    if isinstance(node, int):
        return st.sampled_from([node + 1, node - 1, -node, 0, float(node), str(node), node * 10**12, 2**63 - node])
    if isinstance(node, str):
        grown = st.sampled_from(LENGTHS).map(lambda n: (node * (n // max(len(node), 1) + 1))[:n] if node else "a" * n)
        return st.one_of(grown, st.sampled_from([node.upper(), node.title(), node + "\n", " " + node, node + " ",
                                                  node[:-1], node + node, node.replace("Z", "+01:00"),
                                                  node.replace("Z", ""), node.replace(":00Z", ":00.1234567Z"),
                                                  node.replace("-", "/"), node + "\x00", node.translate(OTHER_DIGITS)]),
                         TIMES)
    return values


KEYS = ["zz", "type", "status", "amount", "captured", "card", "application_fee", "application_fee_refunded",
        "charge_amount_refunded", "intent", "charge", "session", "refunds", "id", "email", "schema_version", "Type"]


def _at(doc, path):
    for key in path:
        doc = doc[key]
    return doc


@st.composite
def changed(draw, value):
    """`value` with one thing changed somewhere in it."""
    paths = [p for p, _v in _parts(value)]
    path = draw(st.sampled_from(paths))
    node = _at(value, path)
    kind = draw(st.sampled_from(["drop", "replace", "replace", "similar", "similar", "similar", "extra", "shape",
                                 "repeat", "escape"]))
    if kind == "drop" and path:
        parent = _at(value, path[:-1])
        del parent[path[-1]]
        return value
    if kind == "extra" and isinstance(node, dict):
        node[draw(st.sampled_from(KEYS))] = draw(values)
        return value
    if kind == "shape":
        new = [node] if not isinstance(node, list) else dict(enumerate(map(str, node)))
    elif kind == "repeat" and isinstance(node, dict) and node:
        new = Repeated(node, draw(st.sampled_from(list(node) + KEYS)), draw(values), draw(st.booleans()))
    elif kind == "escape" and isinstance(node, dict) and any(isinstance(k, str) for k in node):
        key = draw(st.sampled_from([k for k in node if isinstance(k, str)]))
        node[Escaped(key, frozenset(draw(st.lists(st.integers(0, max(len(key) - 1, 0)), min_size=1))))] = node.pop(key)
        return value
    elif kind == "escape" and isinstance(node, str) and node:
        new = Escaped(node, frozenset(draw(st.lists(st.integers(0, len(node) - 1), min_size=1))))
    elif kind == "similar":
        new = draw(similar(node))
    else:
        new = draw(values)
    if not path:
        return new
    _at(value, path[:-1])[path[-1]] = new
    return value


@st.composite
def changed_records(draw):
    topic, template = draw(st.sampled_from(TEMPLATES))
    doc = json.loads(json.dumps(template))
    for _ in range(draw(st.sampled_from([1, 1, 1, 2, 3]))):
        doc = draw(changed(doc))
        if not isinstance(doc, (dict, list)):
            break
    raw = dumps(doc, ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")
    damage = draw(st.sampled_from(["none"] * 40 + ["bom", "space", "trailing", "cut", "byte", "null"]))
    if damage == "bom":
        raw = b"\xef\xbb\xbf" + raw
    elif damage == "space":
        raw = b" \n" + raw + b"\t "
    elif damage == "trailing":
        raw += b" x"
    elif damage == "cut":
        raw = raw[:draw(st.integers(0, len(raw)))]
    elif damage == "byte":
        at = draw(st.integers(0, len(raw)))
        raw = raw[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00", b"\\"])) + raw[at:]
    elif damage == "null":
        raw = b"null"
    return topic, raw


@settings(max_examples=2000, deadline=None, suppress_health_check=list(HealthCheck))
@given(changed_records())
def test_changed_records_are_accepted_and_refused_alike(record):
    topic, raw = record
    expected = outcome(DECODERS[topic], raw)
    assert outcome(FAST_DECODERS[topic], raw) == expected
    alone = FAST_ALONE[topic](raw)
    event(f"{'refused' if expected == REFUSED else 'accepted'} {'by msgspec alone' if alone else 'by pydantic'}")
    if alone is not None:  # what msgspec decides alone it decides as pydantic does
        assert plain(alone) == expected


def _position(topic: str, template: dict, path: tuple) -> tuple:
    return topic, template.get("type"), tuple(0 if isinstance(p, int) else p for p in path)


POSITIONS = list({_position(topic, t, path): (topic, t, path)
                  for topic, t in TEMPLATES for path, _v in _parts(t) if path}.values())
SPECIMENS = ([None, True, False, 1.0, 0.5, [], {}, [{}], {"id": "x"}] + INTS + NUMBERS + LITERALS + TEXTS
             + ["a" * n for n in LENGTHS] + ["\u00e9" * n for n in (3, 40, 41, 200, 201, 320, 321)]
             + ["2026-03-01T09:00:00Z", "2026-03-01T09:00:00", "2026-03-01T10:00:00+01:00", "2026-03-01 09:00:00Z",
                "2026-03-01T09:00Z", "2026-03-01", "2026-03-01T09:00:00.123456Z", "2026-03-01T09:00:00.1234567Z",
                "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", 1_767_000_000, "1767000000", 1.5e9])


def test_every_field_takes_and_refuses_the_same_values():
    differ = []
    for topic, template, path in POSITIONS:
        for value in SPECIMENS:
            doc = json.loads(json.dumps(template))
            _at(doc, path[:-1])[path[-1]] = value
            raw = dumps(doc, ascii=False).encode("utf-8", "surrogatepass")
            if outcome(DECODERS[topic], raw) != outcome(FAST_DECODERS[topic], raw):
                differ.append((topic, template.get("type"), path, value))
    assert not differ


TIME_FIELDS = [(topic, t, path) for topic, t in TEMPLATES for path, v in _parts(t)
               if path and path[-1] in ("occurred_at", "start_time", "end_time", "created_at", "booked_start")]


@settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.sampled_from(TIME_FIELDS), TIMES, st.booleans())
def test_times_are_read_alike(field, when, escaped):
    topic, template, path = field
    doc = json.loads(json.dumps(template))
    if escaped and isinstance(when, str) and when:
        when = Escaped(when, frozenset(range(len(when))))
    _at(doc, path[:-1])[path[-1]] = when
    raw = dumps(doc, ascii=True).encode()
    expected = outcome(DECODERS[topic], raw)
    assert outcome(FAST_DECODERS[topic], raw) == expected
    event(f"{'refused' if expected == REFUSED else 'accepted'} {'by msgspec alone' if FAST_ALONE[topic](raw) else 'by pydantic'}")
