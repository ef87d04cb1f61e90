"""Direct Stripe API use against stripe-mock: enrichment of thin events, and reconciliation."""

import json
import os
from datetime import datetime, timedelta, timezone

import pytest
from aiokafka import AIOKafkaConsumer

from api.app import create_app as create_api
from api.auth import issue_token
from testing import samples as s
from ops.reconcile import reconcile
from projections.db import migrate
from testing.harness import WorkerProcess, asgi_client, eventually, fresh_pg_database, settings_for, unique
from webhooks.app import create_app as create_intake
from webhooks.signing import signature_header

STRIPE_BASE = os.environ.get("STRIPE_API_BASE", "http://127.0.0.1:12111")
NOW = datetime.now(timezone.utc).replace(microsecond=0)


@pytest.fixture(scope="module")
async def stripe_stack():
    url = await fresh_pg_database()
    settings = settings_for(url, stripe_api_key="sk_test_123", stripe_api_base=STRIPE_BASE)
    await migrate(url)
    worker = WorkerProcess(settings, name="worker-stripe-api").start()
    intake_app, api_app = create_intake(settings), create_api(settings)
    async with asgi_client(intake_app) as intake, asgi_client(api_app) as api:
        yield settings, intake, api
    worker.stop()
    await intake_app.state.intake.close()
    await api_app.state.engine.dispose()


async def test_thin_event_is_enriched_with_the_card(stripe_stack):
    settings, intake, api = stripe_stack
    expert, meeting, pi = unique("ex_"), unique("m_"), unique("pi_")
    meta = {"expert_id": expert, "meeting_id": meeting}
    event = s.stripe_event("payment_intent.succeeded", s.payment_intent(pi, 5000, "succeeded", metadata=meta))
    body = json.dumps(event).encode()
    r = await intake.post("/webhooks/stripe", content=body,
                          headers={"Stripe-Signature": signature_header(body, "whsec_test_primary")})
    assert r.status_code == 200
    booking = s.booking_created(expert, meeting, "gil@example.com", "Gil", NOW - timedelta(days=1), amount=5000)
    r = await intake.post("/events/bookings", json=booking, headers={"Authorization": f"Bearer {settings.ingest_token}"})
    assert r.status_code == 202
    auth = {"Authorization": f"Bearer {issue_token(settings, expert)}"}

    async def card_seen():
        listed = (await api.get("/api/customers", headers=auth)).json()["customers"]
        if not listed:
            return None
        d = (await api.get(f"/api/customers/{listed[0]['id']}", headers=auth)).json()
        return d if d["payments"] and d["payments"][0]["card"] else None

    d = await eventually(card_seen)
    # the card comes from stripe-mock's PaymentIntent fixture (its expanded latest charge)
    assert d["payments"][0]["card"]["brand"] == "visa"
    assert len(d["payments"][0]["card"]["last4"]) == 4
    assert d["total_spend"] == [{"currency": "eur", "amount": 5000}]


async def test_reconcile_feeds_missing_events_once(stripe_stack):
    settings, _intake, _api = stripe_stack
    first = await reconcile(settings, NOW - timedelta(days=30))
    assert first["listed"] >= 1 and first["published"] == first["listed"] - first["already_applied"]

    consumer = AIOKafkaConsumer(settings.topic("stripe-events"), bootstrap_servers=settings.kafka_bootstrap_servers,
                                auto_offset_reset="earliest", enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        batch = await consumer.getmany(timeout_ms=5000)
        ids = {json.loads(r.value)["id"] for records in batch.values() for r in records}
    finally:
        await consumer.stop()
    assert ids, "reconciled events were published on stripe-events"

    async def all_applied():
        again = await reconcile(settings, NOW - timedelta(days=30))
        return again if again["published"] == 0 else None

    again = await eventually(all_applied, timeout=60, interval=1)
    assert again["already_applied"] == again["listed"]


async def _payment_row(settings, pi):
    from sqlalchemy import select

    from projections import tables as t
    from projections.db import make_engine

    engine = make_engine(settings.database_url)
    try:
        async with engine.connect() as conn:
            return (await conn.execute(select(t.payments).where(t.payments.c.payment_id == pi))).first()
    finally:
        await engine.dispose()


async def test_a_refund_of_a_charge_never_seen_is_settled_by_stripe(stripe_stack):
    # charge.refund.updated alone cannot say what else the charge had refunded: the worker asks once
    settings, intake, _api = stripe_stack
    pi, ch = unique("pi_"), unique("ch_")
    for event in (s.stripe_event("payment_intent.succeeded", s.payment_intent(pi, 5000, "succeeded", charge=ch)),
                  s.stripe_event("charge.refund.updated", s.refund(unique("re_"), ch, pi, 1000, "succeeded"))):
        body = json.dumps(event).encode()
        r = await intake.post("/webhooks/stripe", content=body,
                              headers={"Stripe-Signature": signature_header(body, "whsec_test_primary")})
        assert r.status_code == 200

    async def settled():
        row = await _payment_row(settings, pi)
        return row if row is not None and row.undecided is False and len(row.state["refunds"]) == 2 else None

    row = await eventually(settled)
    # stripe-mock's charge (echoing our id) lists its fixture refund beside ours: Stripe's answer was used
    assert row.state["charges"][ch]["refunded"] is not None


async def test_reconcile_settles_payments_the_events_could_not(stripe_stack):
    from customers.facts import PaymentObserved
    from projections.db import make_engine
    from projections.projector import Position, Projector
    from projections.versions import live_version
    from customers.stripe_facts import to_fact

    settings, _intake, _api = stripe_stack
    pi, ch = unique("pi_"), unique("ch_")
    fact = to_fact(s.stripe_event("refund.updated", s.refund(unique("re_"), ch, pi, 700, "succeeded")))
    assert isinstance(fact, PaymentObserved)
    engine = make_engine(settings.database_url)
    try:  # projected as a worker without STRIPE_API_KEY would: the payment waits for reconcile
        async with engine.connect() as conn:
            version = await live_version(conn)
        await Projector(engine, version=version, id_secret=settings.customer_id_secret).apply(
            [(Position("manual", 0, 0), fact)])
    finally:
        await engine.dispose()
    assert (await _payment_row(settings, pi)).undecided is True

    result = await reconcile(settings, NOW - timedelta(days=1))
    assert result["charges_settled"] >= 1

    async def settled():
        row = await _payment_row(settings, pi)
        return row if row.undecided is False else None

    assert (await eventually(settled)).state["charges"][ch]["refunded"] is not None
