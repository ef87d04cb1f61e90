"""Hostile input at every door, on the real stack (uvicorn processes, Kafka, PostgreSQL, a worker):
fuzzed bodies, headers, query strings, cursors and tokens with odd claims never get a 500;
nothing of a refused body reaches Kafka; nothing accepted is dead-lettered. Every door that takes a
body (the intake's four, the API's tags and custom fields) refuses one too large, and the client
reads that 413."""

from __future__ import annotations

import base64
import json
import time
from datetime import datetime, timedelta, timezone

import httpx
import jwt
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from svix.webhooks import Webhook
from sqlalchemy import select

from customers import kafka as names
from testing import samples as s
from projections import tables as t
from projections.db import make_engine
from projections.queries import ListQuery
from testing.harness import RESEND_SECRET, eventually, unique
from tests.integration.conftest import open_stack
from tests.servers import ApiProcess, IntakeProcess
from webhooks.signing import signature_header

NOW = datetime.now(timezone.utc).replace(microsecond=0)
FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck),
               derandomize=True)  # the same examples on every run: a red suite means a change broke one
FUZZ_WRITES = settings(FUZZ, max_examples=50)  # an accepted write waits for the read model
MAX_EVENTS = 8  # events per request of the fuzzed intake, so that arrays pass it
THREE_MB = 3 * 1024 * 1024


class Doors:
    def __init__(self, stack, api: ApiProcess, intake: IntakeProcess, expert: str) -> None:
        self.stack, self.api, self.intake, self.expert = stack, api, intake, expert
        self.accepted: set[str] = set()  # event ids answered 2xx
        self.refused: set[str] = set()  # event ids of bodies refused (and never accepted)
        self.markers: dict[str, set[str]] = {"accepted": set(), "refused": set()}  # unique text in each body
        self.customer = ""  # one of the expert's customers, for the API's writes
        self.api_client = httpx.Client(base_url=api.url, timeout=30)
        self.intake_client = httpx.Client(base_url=intake.url, timeout=30)


@pytest.fixture(scope="module")
async def doors():
    async with open_stack("postgresql") as stack:
        expert = unique("ex_")
        events = [s.booking_created(expert, unique("m_"), f"{who}@example.com", who.title(), NOW + timedelta(days=i))
                  for i, who in enumerate(["ana", "bruno", "carla", "dora"])]
        assert (await stack.post_bookings(events)).status_code == 202

        async def shown():
            r = await stack.api.get("/api/customers", headers=stack.auth(expert))
            return r.json()["total"] == 4

        await eventually(shown)
        intake_settings = stack.settings.model_copy(update={"intake_max_events": MAX_EVENTS})
        with ApiProcess(stack.settings, name="api-hostile") as api, \
                IntakeProcess(intake_settings, name="intake-hostile") as intake:
            opened = Doors(stack, api, intake, expert)
            listed = opened.api_client.get("/api/customers", headers=stack.auth(expert)).json()
            opened.customer = listed["customers"][0]["id"]
            yield opened
            opened.api_client.close()
            opened.intake_client.close()


# What hostile senders send

odd_text = st.text(st.characters(codec="utf-8", exclude_categories=()), max_size=60) | st.sampled_from(
    ["\x00", "a\x00b", "\ud800", "İ" * 200, "x" * 53, "x" * 201, "x" * 321, "", " ", "../../etc/passwd"])
odd_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(min_value=2**63 - 2, max_value=2**70)
    | st.floats(allow_nan=False) | odd_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(odd_text, inner, max_size=4), max_leaves=12)
header_value = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
                       max_size=80).map(
    lambda v: v.strip().encode("latin-1"))  # h11 sends no value with blanks around it
BOOKING_PATHS = ["event_id", "expert_id", "meeting_id", "occurred_at", "start_time", "end_time", "timezone",
                 "customer.email", "customer.name", "customer.phone", "service.id", "service.name",
                 "price.amount", "price.currency", "payment.payment_intent_id", "type", "schema_version"]


def _set(doc: dict, path: str, value) -> None:
    *parents, name = path.split(".")
    for part in parents:
        doc = doc.setdefault(part, {}) if isinstance(doc.get(part, {}), dict) else {}
    doc[name] = value


@st.composite
def booking_bodies(draw, expert: str):
    event = s.booking_created(expert, unique("m_"), "fuzz@example.com", "Fuzz", NOW + timedelta(days=3))
    event["event_id"] = unique("evt_fuzz_")
    for path in draw(st.lists(st.sampled_from(BOOKING_PATHS), max_size=3, unique=True)):
        _set(event, path, draw(odd_json))
    shape = draw(st.sampled_from(["one", "list", "bytes", "deep", "json"]))
    if shape == "bytes":
        return event, draw(st.binary(max_size=300))
    if shape == "deep":
        depth = draw(st.integers(500, 60_000))
        return event, b"[" * depth + json.dumps(event).encode() + b"]" * depth
    if shape == "json":
        return event, json.dumps(draw(odd_json)).encode()
    body = [event] if shape == "list" else event
    return event, json.dumps(body).encode()


def _event_id(event: dict) -> str | None:
    value = event.get("event_id")
    return value if isinstance(value, str) else None


@FUZZ
@given(data=st.data())
def test_booking_intake_never_fails_and_publishes_only_what_it_accepts(doors, data):
    event, body = data.draw(booking_bodies(doors.expert))
    headers = {"Content-Type": "application/json"}
    if data.draw(st.booleans()):
        headers["Authorization"] = f"Bearer {doors.stack.settings.ingest_token}"
    else:
        headers["Authorization"] = data.draw(header_value)
    r = doors.intake_client.post("/events/bookings", content=body, headers=headers)
    assert r.status_code < 500 or r.status_code == 503, (r.status_code, r.text)
    assert r.status_code != 503, "Kafka is up: a 503 here is a refusal in disguise"
    eid = _event_id(event)
    if r.status_code == 202:
        doors.accepted |= set(r.json()["event_ids"])
    elif eid:
        doors.refused.add(eid)


@st.composite
def stripe_bodies(draw):
    pi = draw(st.sampled_from(["pi_" + unique(), "pi_" + "x" * 250, "pi_\x00", "pi_\ud800"]))
    metadata = draw(st.dictionaries(st.sampled_from(["expert_id", "meeting_id", "customer_email", "meeting"]),
                                    odd_text, max_size=3))
    event = s.stripe_event(draw(st.sampled_from(["payment_intent.succeeded", "charge.refunded", "x" * 120])),
                           s.payment_intent(pi, 7000, "succeeded", metadata=metadata))
    event["id"] = draw(st.sampled_from(["evt_fuzz_" + unique(), "evt_" + "x" * 260, "evt_\x00"]))
    shape = draw(st.sampled_from(["event", "event", "deep", "bytes"]))
    if shape == "deep":
        depth = draw(st.integers(500, 60_000))
        return event, b'{"a":' * depth + b"1" + b"}" * depth
    if shape == "bytes":
        return event, draw(st.binary(max_size=300))
    return event, json.dumps(event).encode()


@FUZZ
@given(data=st.data())
def test_stripe_intake_never_fails_and_publishes_only_what_it_accepts(doors, data):
    event, body = data.draw(stripe_bodies())
    signed = data.draw(st.sampled_from([True, True, True, False]))
    headers = {"Content-Type": "application/json"}
    if signed:
        headers["Stripe-Signature"] = signature_header(body, doors.stack.settings.webhook_secrets[0])
    r = doors.intake_client.post("/webhooks/stripe", content=body, headers=headers)
    assert r.status_code < 500, (r.status_code, r.text)
    if r.status_code == 200:
        doors.accepted.add(r.json()["id"])
    else:
        doors.refused.add(event["id"])


def test_an_oversized_body_is_refused_from_its_length(doors):
    size = doors.stack.settings.intake_max_body_bytes + 1
    for path in ("/events/bookings", "/webhooks/stripe", "/events/messages", "/webhooks/resend"):
        r = doors.intake_client.post(path, content=b" " * size, headers={
            "Authorization": f"Bearer {doors.stack.settings.ingest_token}", "Stripe-Signature": "t=1,v1=0",
            **signed(b" " * size, unique("msg_"))})
        assert r.status_code == 413, path
    size = doors.stack.settings.api_max_body_bytes + 1
    auth = doors.stack.auth(doors.expert)
    for path in (f"/api/customers/{doors.customer}/tags", f"/api/customers/{doors.customer}/fields",
                 "/api/custom-fields"):
        r = doors.api_client.put(path, content=b" " * size, headers=auth)
        assert r.status_code == 413, path


def test_a_client_sending_a_large_body_reads_the_413_every_time(doors):
    """The server reads the rest of a refused body before answering: a client still sending gets
    the 413, not a reset connection. A new connection each try, like a sender retrying."""
    body = b"{" + b" " * THREE_MB + b"}"
    auth = doors.stack.auth(doors.expert)
    for _ in range(20):
        r = httpx.post(f"{doors.intake.url}/webhooks/stripe", content=body, timeout=30,
                       headers={"Content-Type": "application/json"})
        assert r.status_code == 413, r.text
        r = httpx.put(f"{doors.api.url}/api/customers/{doors.customer}/tags", content=body, timeout=30,
                      headers={**auth, "Content-Type": "application/json"})
        assert r.status_code == 413, r.text

    def chunks():  # no Content-Length: counted as it arrives
        for _ in range(48):
            yield b" " * 65536

    for _ in range(5):
        r = httpx.post(f"{doors.intake.url}/webhooks/stripe", content=chunks(), timeout=30)
        assert r.status_code == 413, r.text


# The booking platform's messages, the email provider's reports

def signed(body: bytes, msg_id: str) -> dict:
    when = datetime.now(timezone.utc)
    return {"svix-id": msg_id, "svix-timestamp": str(int(when.timestamp())),
            "svix-signature": Webhook(RESEND_SECRET).sign(msg_id, when, body.decode("utf-8", "replace"))}


MESSAGE_PATHS = ["event_id", "expert_id", "customer.email", "meeting_id", "channel", "kind", "subject",
                 "provider_message_id", "occurred_at", "type", "schema_version"]


def message_event(expert: str, marker: str) -> dict:
    return {"type": "message.sent", "event_id": marker, "schema_version": 1, "expert_id": expert,
            "customer": {"email": "ana@example.com"}, "meeting_id": None, "channel": "email", "kind": "reminder",
            "subject": f"About {marker}", "provider_message_id": f"re_{marker}",
            "occurred_at": NOW.isoformat()}


def _record(doors, status: int, marker: str) -> None:
    assert status < 500, status
    doors.markers["accepted" if status < 300 else "refused"].add(marker)


@FUZZ
@given(data=st.data())
def test_message_intake_never_fails_and_publishes_only_what_it_accepts(doors, data):
    marker = unique("mk")
    events = []
    for n in range(data.draw(st.sampled_from([1, 1, 2, MAX_EVENTS, MAX_EVENTS + 1, 40]))):
        event = message_event(doors.expert, f"{marker}x{n}")
        for path in data.draw(st.lists(st.sampled_from(MESSAGE_PATHS), max_size=2, unique=True)) if n == 0 else ():
            _set(event, path, data.draw(odd_json))
        events.append(event)
    shape = data.draw(st.sampled_from(["list", "list", "one", "large", "bytes"]))
    body = json.dumps(events[0] if shape == "one" else events).encode()
    if shape == "large":
        body = body[:-1] + b" " * doors.stack.settings.intake_max_body_bytes + b"]"
    elif shape == "bytes":
        body = data.draw(st.binary(max_size=200)) + marker.encode()
    token = doors.stack.settings.ingest_token if data.draw(st.booleans()) else data.draw(odd_text)
    try:
        r = doors.intake_client.post("/events/messages", content=body, headers={"Authorization": f"Bearer {token}"})
    except (UnicodeEncodeError, httpx.LocalProtocolError):
        return  # not sendable
    _record(doors, r.status_code, marker)


@FUZZ
@given(data=st.data())
def test_resend_intake_never_fails_and_publishes_only_what_it_accepts(doors, data):
    marker = unique("mk")
    report = {"type": data.draw(st.sampled_from(["email.delivered", "email.bounced", "email.opened", "other"])
                                | odd_text),
              "created_at": data.draw(st.sampled_from([NOW.isoformat()]) | odd_json),
              "data": {"email_id": marker, "to": data.draw(st.lists(odd_text, max_size=3)), "subject": "x"}}
    if data.draw(st.booleans()):
        report["data"][data.draw(st.sampled_from(["email_id", "to", "created_at"]))] = data.draw(odd_json)
        report["data"]["marker"] = marker
    body = json.dumps(report).encode()
    if data.draw(st.sampled_from([False, False, False, True])):
        body = body[:-1] + b" " * doors.stack.settings.intake_max_body_bytes + b"}"
    headers = signed(body, unique("msg_")) if data.draw(st.sampled_from([True, True, False])) else {}
    if headers and data.draw(st.booleans()):
        headers["svix-signature"] = data.draw(st.sampled_from(["v1,AAAA", "", "v1," + "A" * 2000]))
    r = doors.intake_client.post("/webhooks/resend", content=body, headers={**headers,
                                                                             "Content-Type": "application/json"})
    _record(doors, r.status_code, marker)


# The API's writes: tags and custom fields

@FUZZ_WRITES
@given(data=st.data())
def test_the_api_writes_never_fail_and_publish_only_what_they_accept(doors, data):
    marker = unique("mk")
    door = data.draw(st.sampled_from(["tags", "fields", "custom-fields"]))
    if door == "tags":
        path = f"/api/customers/{doors.customer}/tags"
        value = [marker, *data.draw(st.lists(st.sampled_from(["vip", "x" * 41, " ", "a\x00"]) | odd_text,
                                             max_size=24))]
    elif door == "fields":
        path = f"/api/customers/{doors.customer}/fields"
        value = {marker: data.draw(odd_json), **data.draw(st.dictionaries(odd_text, odd_json, max_size=4))}
    else:
        path = "/api/custom-fields"
        value = [{"key": marker, "label": data.draw(odd_text), "type": data.draw(st.sampled_from(["text", "x"]))},
                 *data.draw(st.lists(odd_json, max_size=3))]
    body = json.dumps(value).encode()
    if data.draw(st.sampled_from([False, False, False, True])):
        body = body[:-1] + b" " * doors.stack.settings.api_max_body_bytes + body[-1:]
    r = doors.api_client.put(path, content=body, headers={**doors.stack.auth(doors.expert),
                                                         "Content-Type": "application/json"})
    assert r.status_code < 500, (r.status_code, r.text[:300])
    assert len(r.content) < 16384, "a refusal echoes what was sent"
    _record(doors, r.status_code, marker)


# The read API and the pages

claim_value = odd_json | st.sampled_from([{"admin": False}, {"admin": True}, 5, ["admin", 5], "admin", None])


@st.composite
def tokens(draw, secret: str, expert: str) -> str:
    claims = {"sub": draw(st.sampled_from([expert]) | odd_json), "exp": int(time.time()) + 600}
    if draw(st.booleans()):
        claims["roles"] = draw(claim_value)
    for name in draw(st.lists(st.sampled_from(["nbf", "iat", "aud", "iss", "exp"]), max_size=2)):
        claims[name] = draw(odd_json)
    try:
        return jwt.encode(claims, secret, algorithm="HS256")
    except (TypeError, ValueError):  # not a token: any text a client can send in a header
        return draw(st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=40))


def forged_cursor(fingerprint: str, value, cid, side) -> str:
    raw = json.dumps([fingerprint, value, cid, side]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@st.composite
def cursors(draw, sort: str):
    q = ListQuery("x", sort=sort)
    value = draw(st.one_of(
        st.fixed_dictionaries({"t": st.sampled_from(["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-05:00",
                                                     "2026-01-01T00:00:00", "2026-13-01T00:00:00Z"]) | odd_text}),
        odd_json))
    return draw(st.sampled_from([forged_cursor(q.fingerprint(), value, draw(odd_json), draw(st.sampled_from(["a", "b"]))),
                                 draw(odd_text)]))


SORTS = ["last_appointment", "first_seen", "name", "appointments", "total_spend"]


@FUZZ
@given(data=st.data())
def test_the_read_api_never_fails(doors, data):
    settings_ = doors.stack.settings
    token = data.draw(tokens(settings_.auth_jwt_secret, doors.expert))
    header = data.draw(st.sampled_from([f"Bearer {token}".strip().encode()]) | header_value)
    sort = data.draw(st.sampled_from(SORTS) | odd_text)
    params = {k: v for k, v in {
        "q": data.draw(st.none() | odd_text), "email": data.draw(st.none() | odd_text), "sort": sort,
        "order": data.draw(st.sampled_from([None, "asc", "desc"]) | odd_text),
        "limit": data.draw(st.none() | st.integers(-5, 10**20) | odd_text),
        "cursor": data.draw(cursors(sort if sort in SORTS else "name")),
    }.items() if v is not None}
    path = data.draw(st.sampled_from(["/api/customers", "/api/customers/export.csv", "/customers",
                                      "/api/customers/{id}", "/api/customers/{id}/notes", "/customers/{id}",
                                      "/admin/status"]))
    path = path.replace("{id}", data.draw(st.sampled_from(["c_" + "0" * 32, "x" * 300, "%00", "%C0%AE"])))
    cookies = {"customers_session": token} if token.isascii() and token.isprintable() else {}
    try:
        r = doors.api_client.get(path, params=params, headers={"Authorization": header}, cookies=cookies)
    except (httpx.InvalidURL, UnicodeEncodeError):
        return  # not sendable: the client refuses it before the server sees it
    assert r.status_code < 500, (r.status_code, path, params, r.text[:300])


# After the fuzzing: what reached Kafka, and what the worker made of it

async def _caught_up(settings_, topic: str) -> bool:
    ends = await names.end_offsets(settings_, [topic])
    engine = make_engine(settings_.database_url)
    try:
        async with engine.connect() as conn:
            o = t.projection_offsets.c
            rows = (await conn.execute(select(o.partition, o.offset).where(o.topic == topic))).all()
    finally:
        await engine.dispose()
    applied = {r.partition: r.offset for r in rows}
    return all(applied.get(p, -1) >= end - 1 for (_, p), end in ends.items() if end > 0)


async def test_nothing_refused_reached_kafka_and_nothing_accepted_was_dead_lettered(doors):
    settings_ = doors.stack.settings
    assert doors.accepted and doors.refused
    booking_ids = {json.loads(r.value)["event_id"]
                   for r in await names.read_all(settings_, settings_.topic(names.BOOKINGS))}
    stripe_ids = {json.loads(r.value)["id"] for r in await names.read_all(settings_, settings_.topic(names.STRIPE_EVENTS))}
    published = booking_ids | stripe_ids
    assert doors.accepted <= published
    assert not (doors.refused - doors.accepted) & published, "a refused body reached Kafka"
    topic = settings_.topic(names.BOOKINGS)
    await eventually(lambda: _caught_up(settings_, topic), timeout=120)
    assert await names.read_all(settings_, names.dlq(topic)) == [], "an accepted booking was dead-lettered"


async def test_nothing_of_a_refused_body_reached_any_topic(doors):
    settings_ = doors.stack.settings
    refused = doors.markers["refused"] - doors.markers["accepted"]
    assert refused and doors.markers["accepted"]
    for topic in (names.COMMUNICATIONS, names.EMAIL_EVENTS, names.COMMANDS, names.BOOKINGS, names.STRIPE_EVENTS):
        for record in await names.read_all(settings_, settings_.topic(topic)):
            value = record.value.decode("utf-8", "replace")
            assert not any(m in value for m in refused), f"a refused body reached {topic}"
