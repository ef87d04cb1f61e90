"""Signed Stripe webhooks -> Kafka -> worker -> read model -> API."""

import json
import time
from datetime import datetime, timedelta, timezone

from testing import samples as s
from testing.harness import eventually, unique
from tests.kafka_read import read_all
from webhooks.signing import signature_header

NOW = datetime.now(timezone.utc).replace(microsecond=0)


async def send(stack, event, secret="whsec_test_primary", timestamp=None, header=None):
    body = event if isinstance(event, bytes) else json.dumps(event).encode()
    sig = header if header is not None else signature_header(body, secret, timestamp)
    return await stack.intake.post("/webhooks/stripe", content=body,
                                   headers={"Stripe-Signature": sig, "Content-Type": "application/json"})


async def detail_of(stack, expert, email, ready):
    r = await stack.api.get("/api/customers", params={"email": email}, headers=stack.auth(expert))
    found = r.json()["customers"]
    if not found:
        return None
    d = (await stack.api.get(f"/api/customers/{found[0]['id']}", headers=stack.auth(expert))).json()
    return d if ready(d) else None


async def test_payment_refund_and_fee_reach_the_customer(stack):
    expert, meeting = unique("ex_"), unique("m_")
    pi, ch = unique("pi_"), unique("ch_")
    start = NOW - timedelta(days=2)
    meta = s.meeting_metadata(expert, "Eva@Example.com", "Eva", start)
    # the payment arrives before its booking, correlated by the checkout's JSON metadata only
    for event in [
        s.stripe_event("payment_intent.succeeded", s.payment_intent(pi, 12000, "succeeded", metadata=meta, fee=1200,
                                                                    charge=ch)),
        s.stripe_event("charge.succeeded", s.charge(ch, pi, 12000, fee=1200, brand="visa", last4="1881")),
        s.stripe_event("refund.created", s.refund("re_" + pi, ch, pi, 2000)),
        s.stripe_event("application_fee.refunded", s.application_fee(unique("fee_"), ch, 1200, 200)),
        s.stripe_event("customer.created", {"id": unique("cus_"), "object": "customer"}),
    ]:
        r = await send(stack, event, secret="whsec_test_secondary")
        assert r.status_code == 200, r.text
    booking = s.booking_created(expert, meeting, "eva@example.com", "Eva", start, amount=12000)
    assert (await stack.post_bookings(booking)).status_code == 202

    d = await eventually(lambda: detail_of(stack, expert, "eva@example.com", lambda d: d["payments"]
                                           and d["payments"][0]["amount_refunded"] == 2000
                                           and d["stats"]["expert_revenue"]))
    assert d["total_spend"] == [{"currency": "eur", "amount": 10000}]
    assert d["stats"]["refunded"] == [{"currency": "eur", "amount": 2000}]
    assert d["stats"]["expert_revenue"] == [{"currency": "eur", "amount": 9000}]
    pay = d["payments"][0]
    assert pay["id"] == pi and pay["meeting_id"] == meeting and pay["card"] == {"brand": "visa", "last4": "1881"}
    assert d["appointments"][0]["payment_status"] == "partially_refunded"


async def test_bad_webhooks_are_400_and_publish_nothing(stack):
    def fresh():
        return s.stripe_event("payment_intent.succeeded", s.payment_intent(unique("pi_"), 100, "succeeded"))

    rejected = [fresh() for _ in range(4)]
    assert (await send(stack, rejected[0], secret="whsec_wrong")).status_code == 400
    assert (await send(stack, rejected[1], timestamp=int(time.time()) - 3600)).status_code == 400
    assert (await send(stack, rejected[2], header="")).status_code == 400
    assert (await send(stack, rejected[3], header="t=1,v1=deadbeef")).status_code == 400
    assert (await send(stack, b"not json")).status_code == 400
    assert (await send(stack, {"id": "evt_x", "object": "charge"})).status_code == 400
    event = fresh()
    # rotation: a header carrying an old and a new signature is accepted
    body = json.dumps(event).encode()
    ts = int(time.time())
    both = signature_header(body, ["whsec_retired", "whsec_test_primary"], ts)
    assert (await send(stack, body, header=both)).status_code == 200
    published = {json.loads(r.value).get("id") for r in await read_all(stack.settings.kafka_bootstrap_servers,
                                                                        stack.settings.topic("stripe-events"))}
    assert event["id"] in published
    assert not published & {e["id"] for e in rejected} and "evt_x" not in published
