"""Only brand, last four digits and expiry of a card are kept: the database, the topics the
service writes and its logs hold no card-number-shaped digits."""

import json
import re

from sqlalchemy import text

from testing import samples as s
from customers.kafka import STRIPE_EVENTS
from testing.harness import ARTIFACTS, eventually, unique
from tests.integration.test_operations import produce_raw
from tests.kafka_read import read_all, topic_names

# 13 to 19 digits standing as a number of their own. A run inside an identifier
# ("evt_8635cf66855146529282": random hex) is part of that identifier, not a card number.
PAN = re.compile(r"(?<!\w)\d{13,19}(?!\w)")
PLANTED = "4000056655665556"  # a test card number, planted where Stripe would never put one
TYPED = "4000 0566 5566 5556"  # the same, as people type it


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, d in enumerate(reversed(digits)):
        n = int(d) * (2 if i % 2 else 1)
        total += n - 9 if n > 9 else n
    return total % 10 == 0


def card_numbers(blob: str) -> set[str]:
    return {m for m in PAN.findall(blob) if luhn_ok(m)}


def test_the_scan_finds_numbers_not_identifiers():
    assert card_numbers(f'{{"note": "card {PLANTED}", "n": {PLANTED}}}') == {PLANTED}
    assert card_numbers("evt_8635cf66855146529282 ch_66855146529282x") == set()


async def test_no_card_numbers_anywhere(pg_stack):
    stack = pg_stack
    expert, meeting, pi, ch = unique("ex_"), unique("m_"), unique("pi_"), unique("ch_")
    meta = {"expert_id": expert, "meeting_id": meeting, "note": f"card {PLANTED}"}
    charge = s.charge(ch, pi, 8000, last4=PLANTED[-4:])
    charge["description"] = f"paid with {PLANTED}"
    charge["metadata"] = meta
    for event in (s.stripe_event("payment_intent.succeeded", s.payment_intent(pi, 8000, "succeeded", metadata=meta)),
                  s.stripe_event("charge.succeeded", charge)):
        assert (await stack.post_stripe(event)).status_code == 200
    poison = s.stripe_event("charge.succeeded", {"object": "charge", "note": PLANTED})  # no id
    refused = await stack.post_stripe(poison)  # the intake refuses what the worker could only dead-letter
    assert refused.status_code == 400 and card_numbers(refused.text) == set()
    # such a record can still be on the topic (written by another producer): it is dead-lettered
    await produce_raw(stack, STRIPE_EVENTS, [(unique("k"), json.dumps(poison).encode())])
    booking = s.booking_created(expert, meeting, "hana@example.com", "Hana", s.datetime.now(s.timezone.utc),
                                amount=8000)
    assert (await stack.post_bookings(booking)).status_code == 202

    async def card_stored():
        listed = (await stack.api.get("/api/customers", headers=stack.auth(expert))).json()["customers"]
        if not listed:
            return None
        d = (await stack.api.get(f"/api/customers/{listed[0]['id']}", headers=stack.auth(expert))).json()
        return d if d["payments"] and d["payments"][0]["card"] else None

    d = await eventually(card_stored)
    assert d["payments"][0]["card"] == {"brand": "visa", "last4": PLANTED[-4:]}

    # free text the service stores: a note and a cancellation reason, with the number as typed
    customer = d["id"]
    r = await stack.api.post(f"/api/customers/{customer}/notes", json={"body": f"paid by {TYPED}, or {PLANTED}"},
                             headers=stack.auth(expert))
    assert r.status_code in (201, 202)
    cancel = s.booking_event("booking.cancelled", expert, meeting, s.datetime.now(s.timezone.utc),
                             reason=f"refund to {TYPED}", cancelled_by="customer")
    assert (await stack.post_bookings(cancel)).status_code == 202

    async def free_text_stored():
        d = (await stack.api.get(f"/api/customers/{customer}", headers=stack.auth(expert))).json()
        return d if d["notes"] and d["stats"]["appointments"]["cancelled"] == 1 else None

    d = await eventually(free_text_stored)
    assert d["notes"][0]["body"] == "paid by [card number], or [card number]"

    prefix = stack.settings.topic_prefix
    topics = await topic_names(stack.settings.kafka_bootstrap_servers, prefix)
    dlq = await eventually(lambda: read_all(stack.settings.kafka_bootstrap_servers, f"{prefix}stripe-events.dlq"))
    assert dlq, "the malformed event was dead-lettered"
    ours, theirs = "", ""
    for topic in topics:
        records = await read_all(stack.settings.kafka_bootstrap_servers, topic)
        blob = "\n".join((r.value or b"").decode("utf-8", "replace") for r in records)
        if topic == f"{prefix}stripe-events":
            theirs += blob  # Stripe's events are kept exactly as received
        else:  # activity, commands and the dead letters (which keep the original, masked)
            ours += blob
    # the scan can find numbers: the stripe-events topic holds the planted one as received
    assert PLANTED in card_numbers(theirs)
    assert card_numbers(ours) == set() and TYPED not in ours, "a card number was published by the service"

    dump = []
    async with stack.api._transport.app.state.engine.connect() as conn:  # type: ignore[attr-defined]
        names = [r[0] for r in await conn.execute(text(
            "select tablename from pg_tables where schemaname = 'public'"))]
        for name in names:
            rows = await conn.execute(text(f'select row_to_json(t)::text from "{name}" t'))
            dump += [r[0] for r in rows]
    assert card_numbers("\n".join(dump)) == set(), "a card number reached the database"
    assert TYPED not in "\n".join(dump) and "refund to [card number]" in "\n".join(dump)

    logs = "\n".join(p.read_text(errors="replace") for p in ARTIFACTS.glob("worker-*.log"))
    assert card_numbers(logs) == set(), "a card number reached the logs"
