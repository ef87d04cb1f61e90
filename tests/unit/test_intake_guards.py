"""The intake's doors, in process with a recording producer: bodies too large or too deep,
tokens with any characters, Stripe ids the read model cannot store, records Kafka would refuse.
Every refusal publishes nothing."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timezone

import httpx
import pytest
from aiokafka.errors import MessageSizeTooLargeError
from sqlalchemy import String

from testing import samples as s
from customers.kafka import MAX_RECORD_BYTES
from customers.settings import Settings
from projections import tables as t
from webhooks.app import create_app
from webhooks.guards import FACT_LIMITS, STRIPE_EVENT_ID, STRIPE_EVENT_TYPE, STRIPE_ID
from webhooks.signing import signature_header

TOKEN = "unit-ingest-token"
WHSEC = "whsec_unit_test"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
START = datetime(2026, 5, 1, 10, tzinfo=timezone.utc)


class RecordingProducer:
    """Stands in for aiokafka's producer: acknowledges at once, remembers what was sent."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.fail = fail

    async def send(self, topic, key=None, value=None):
        if self.fail:
            raise self.fail
        self.sent.append((topic, key, value))
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    async def stop(self) -> None:
        pass


class Intake:
    def __init__(self, **overrides) -> None:
        self.settings = Settings(environment="test", ingest_token=TOKEN, stripe_webhook_secret=WHSEC,
                                 kafka_bootstrap_servers="127.0.0.1:9", **overrides)
        self.app = create_app(self.settings)
        self.producer = RecordingProducer()
        self.app.state.intake.producer._producer = self.producer  # as if started

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://intake")

    async def bookings(self, content: bytes | object, headers: dict | None = None) -> httpx.Response:
        async with self.client() as client:
            if isinstance(content, (bytes, str)) or hasattr(content, "__aiter__"):
                return await client.post("/events/bookings", content=content, headers=headers or AUTH)
            return await client.post("/events/bookings", json=content, headers=headers or AUTH)

    async def stripe(self, body: bytes | dict, *, sign: bool = True) -> httpx.Response:
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if sign:
            headers["Stripe-Signature"] = signature_header(payload, WHSEC)
        async with self.client() as client:
            return await client.post("/webhooks/stripe", content=payload, headers=headers)


def booking(**kw) -> dict:
    return s.booking_created("ex_1", s.rid("m"), "ana@example.com", "Ana", START, **kw)


def intent_event(pi: str = "pi_1", **metadata) -> dict:
    return s.stripe_event("payment_intent.succeeded", s.payment_intent(pi, 7000, "succeeded", metadata=metadata))


# Bodies

async def test_a_body_declared_larger_than_the_limit_is_413_before_it_is_read():
    intake = Intake(intake_max_body_bytes=4096)
    r = await intake.bookings(b"[" + b" " * 5000 + b"]")
    assert r.status_code == 413 and "4096" in r.json()["detail"]
    r = await intake.stripe(b"{" + b" " * 5000 + b"}")
    assert r.status_code == 413
    assert intake.producer.sent == []


async def test_a_streamed_body_is_refused_once_it_passes_the_limit_and_the_rest_drained():
    intake = Intake(intake_max_body_bytes=4096)
    chunks_read = 0

    async def chunks():
        nonlocal chunks_read
        for _ in range(1000):
            chunks_read += 1
            yield b" " * 1024

    r = await intake.bookings(chunks())  # no Content-Length: chunked
    assert r.status_code == 413 and intake.producer.sent == []
    assert chunks_read == 1000  # the rest read and thrown away, so that the sender reads the 413


async def test_the_default_limit_is_one_mebibyte():
    intake = Intake()
    assert intake.settings.intake_max_body_bytes == 1 << 20
    body = json.dumps([booking() for _ in range(2)]).encode()
    assert (await intake.bookings(body + b" " * ((1 << 20) - len(body)))).status_code == 202
    assert (await intake.bookings(body + b" " * ((1 << 20) - len(body) + 1))).status_code == 413


@pytest.mark.parametrize("depth", [2_000, 100_000])
async def test_json_nested_too_deeply_is_400_on_both_doors(depth):
    intake = Intake()
    deep = b"[" * depth + b"]" * depth
    r = await intake.bookings(deep)
    assert r.status_code == 400 and "nested too deeply" in r.json()["detail"]
    r = await intake.stripe(b'{"a":' * depth + b"1" + b"}" * depth)
    assert r.status_code == 400 and "nested too deeply" in r.json()["detail"]
    assert intake.producer.sent == []


# Tokens

@pytest.mark.parametrize("header", [
    "Bearer ünit-ingest-token".encode("latin-1"),
    "Bearer \u00ff\u00fe".encode("latin-1"),
    b"Bearer \xe2\x82\xac",  # UTF-8 bytes of the euro sign
    f"Bearer {TOKEN}\u00e9".encode("latin-1"),
])
async def test_authorization_with_non_ascii_characters_is_401(header):
    intake = Intake()
    r = await intake.bookings([booking()], headers={"Authorization": header})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert intake.producer.sent == []


# What the read model cannot store

async def test_a_booking_with_a_field_longer_than_its_column_is_422_naming_it_and_publishes_nothing():
    intake = Intake()
    good, bad = booking(), booking(service_name="x" * 201)
    r = await intake.bookings([good, bad])
    assert r.status_code == 422
    [error] = r.json()["errors"]
    assert error["index"] == 1 and error["errors"][0]["loc"] == ["booking.created", "service", "name"]
    r = await intake.bookings(booking(event_id="e" * 53))
    assert r.json()["errors"][0]["errors"][0]["loc"] == ["booking.created", "event_id"]
    r = await intake.bookings(booking(amount=2**63))
    assert r.json()["errors"][0]["errors"][0]["loc"] == ["booking.created", "price", "amount"]
    assert intake.producer.sent == []
    assert (await intake.bookings([good])).status_code == 202 and len(intake.producer.sent) == 1


@pytest.mark.parametrize("event,named", [
    (dict(intent_event(), id="evt_" + "x" * 252), "id"),
    (dict(intent_event(), id="evt_\x00"), "id"),
    (dict(intent_event(), type="payment_intent." + "x" * 100), "type"),
    (intent_event(pi="pi_" + "x" * 198), "payment_id"),
    (intent_event(pi="pi_\ud800"), "payment_id"),
    (intent_event(expert_id="ex_" + "x" * 198, meeting_id="m_1"), "expert_id"),
    (intent_event(expert_id="ex_1", meeting_id="m\x00"), "meeting_id"),
    (intent_event(customer_email="a@" + "b" * 320 + ".com"), "customer_email"),
], ids=["event id long", "event id NUL", "type long", "payment id long", "payment id surrogate",
        "expert hint long", "meeting hint NUL", "email hint long"])
async def test_a_stripe_event_naming_ids_no_column_can_hold_is_400_and_publishes_nothing(event, named):
    intake = Intake()
    r = await intake.stripe(event)
    assert r.status_code == 400 and named in r.json()["detail"]
    assert intake.producer.sent == []


async def test_a_stripe_event_at_the_columns_limits_is_received():
    intake = Intake()
    event = intent_event(pi="pi_" + "x" * 197, expert_id="e" * 200, meeting_id="m" * 200)
    event["id"] = "evt_" + "x" * 251
    r = await intake.stripe(event)
    assert r.status_code == 200 and len(intake.producer.sent) == 1


def test_the_stripe_limits_are_the_columns():
    applied = t.stripe_events_applied.c
    assert STRIPE_EVENT_ID <= applied.event_id.type.length
    assert STRIPE_EVENT_TYPE <= applied.event_type.type.length
    assert FACT_LIMITS["customer_email"] <= t.payments.c.hint_email.type.length
    derived = {"customer_id", "email_hash"}  # keyed hashes the worker computes
    for table in (t.payments, getattr(t, "payment_aliases", None)):
        for col in table.columns if table is not None else ():
            if isinstance(col.type, String) and col.name not in derived and col.name != "hint_email":
                assert STRIPE_ID <= col.type.length, f"{table.name}.{col.name}"


# Kafka's size

async def test_a_stripe_event_kafka_would_refuse_for_its_size_is_413_not_503():
    intake = Intake(intake_max_body_bytes=4 << 20)
    event = intent_event()
    event["data"]["object"]["description"] = "x" * MAX_RECORD_BYTES
    r = await intake.stripe(event)
    assert r.status_code == 413 and "Retry-After" not in r.headers
    assert intake.producer.sent == []


async def test_kafka_refusing_a_record_for_its_size_is_413():
    intake = Intake()
    intake.producer.fail = MessageSizeTooLargeError("too large")
    r = await intake.bookings([booking()])
    assert r.status_code == 413 and "Retry-After" not in r.headers
    r = await intake.stripe(intent_event())
    assert r.status_code == 413


# Described in OpenAPI

def test_the_intake_describes_its_bodies_and_refusals():
    doc = Intake().app.openapi()
    bookings = doc["paths"]["/events/bookings"]["post"]
    assert {"202", "400", "401", "413", "422", "503"} <= set(bookings["responses"])
    schema = bookings["requestBody"]["content"]["application/json"]["schema"]
    assert any(branch.get("type") == "array" for branch in schema["anyOf"])
    created = doc["components"]["schemas"]["BookingCreated"]
    assert created["properties"]["event_id"]["maxLength"] == 52
    stripe = doc["paths"]["/webhooks/stripe"]["post"]
    assert {"200", "400", "413", "503"} <= set(stripe["responses"])
    assert any(p["name"] == "stripe-signature" for p in stripe["parameters"])
