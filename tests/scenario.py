"""Generated marketplace histories with their expected figures, computed apart from the projection.

A scenario knows the ground truth of every payment (what was captured, which refunds finally
stood, which disputes were lost, the platform fee) and derives each customer's expected figures
from it directly. The events it emits are what the booking system and Stripe would send; tests
deliver them duplicated and shuffled and compare the API with `expected`.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx

from testing import samples as s
from tests import stripe_histories as histories

STRIPE_KINDS = {
    "payment_intent": "/v1/payment_intents/pi_template",
    "charge": "/v1/charges/ch_template",
    "refund": "/v1/refunds/re_template",
    "dispute": "/v1/disputes/dp_template",
    "application_fee": "/v1/application_fees/fee_template",
    "checkout.session": "/v1/checkout/sessions/cs_template",
}


def stripe_templates(base_url: str) -> dict[str, dict]:
    """Stripe's published object shapes, as stripe-mock serves them from Stripe's fixtures."""
    out = {}
    with httpx.Client(base_url=base_url, headers={"Authorization": "Bearer sk_test_123"}, timeout=10) as client:
        for kind, path in STRIPE_KINDS.items():
            r = client.get(path)
            r.raise_for_status()
            out[kind] = r.json()
    return out


@dataclass
class Expected:
    email: str
    appointments: int = 0
    cancelled: int = 0
    spend: dict[str, int] = field(default_factory=dict)
    revenue: dict[str, int] = field(default_factory=dict)
    refunded: dict[str, int] = field(default_factory=dict)
    payments: dict[str, dict[str, Any]] = field(default_factory=dict)
    appointments_paid: dict[str, str] = field(default_factory=dict)  # meeting id -> payment_status

    def add(self, bucket: dict[str, int], currency: str, amount: int) -> None:
        bucket[currency] = bucket.get(currency, 0) + amount


@dataclass
class Scenario:
    bookings: list[dict]
    stripe_events: list[dict]
    expected: dict[tuple[str, str], Expected]  # (expert, email) -> figures
    experts: list[str]


def generate(n_bookings: int, *, seed: int, templates: dict[str, dict] | None = None, experts: int = 5,
             customers_per_expert: int = 40, prefix: str = "", subsets: float = 0.3) -> Scenario:
    """`subsets`: the share of payments whose events come through a subscription to only some types."""
    rng = random.Random(seed)
    now = datetime.now(timezone.utc).replace(microsecond=0)
    tpl = templates or {}

    def shaped(obj: dict) -> dict:
        base = json.loads(json.dumps(tpl.get(obj["object"], {})))
        if "refunds" not in obj:
            base.pop("refunds", None)  # a charge of today's API versions lists no refunds
        base.update(obj)
        return base

    expert_ids = [f"{prefix}ex{e}" for e in range(experts)]
    bookings, events, expected = [], [], {}
    for n in range(n_bookings):
        expert = rng.choice(expert_ids)
        who = rng.randrange(customers_per_expert)
        email = f"{prefix}person{who}@example.com"
        name = f"Person {who}"
        exp = expected.setdefault((expert, email), Expected(email=email))
        meeting, pi = f"{prefix}m{n}", f"pi_{prefix}{n}"
        currency = "eur" if who % 5 else "usd"
        amount = rng.choice([4500, 6000, 7500, 9000, 12000])
        start = now + timedelta(days=rng.randint(-120, 60), hours=rng.randint(0, 10))
        if abs(start - now) < timedelta(hours=3):  # no meeting starts or ends while a test runs
            start += timedelta(hours=4)
        start += timedelta(seconds=n % 3600)  # one customer never books one expert twice at the same time
        mode = rng.choice(["flat", "json", "booking", "checkout"])
        meta = ({"expert_id": expert, "meeting_id": meeting} if mode == "flat" else
                s.meeting_metadata(expert, email.upper(), name, start) if mode == "json" else {})
        cs = f"cs_{prefix}{n}"
        bookings.append(s.booking_created(expert, meeting, f" {email.title()}" if n % 7 == 0 else email, name, start,
                                          amount=amount, currency=currency,
                                          payment_intent_id=pi if mode == "booking" else None,
                                          checkout_session_id=cs if mode == "checkout" else None))
        cancelled = rng.random() < 0.1
        if rng.random() < 0.15:
            moved = start + timedelta(days=rng.randint(1, 5))
            bookings.append(s.booking_event("booking.rescheduled", expert, meeting, start - timedelta(days=1),
                                            start_time=s.iso(moved), end_time=s.iso(moved + timedelta(hours=1))))
        if cancelled:
            bookings.append(s.booking_event("booking.cancelled", expert, meeting, start - timedelta(hours=5),
                                            reason="schedule", cancelled_by="customer"))
            exp.cancelled += 1
        else:
            exp.appointments += 1

        # the payment's whole life in Stripe, seen through a subscription that still tells its figures
        checkout = (cs, s.meeting_metadata(expert, email, name, start)) if mode == "checkout" else None
        h = histories.generate(rng, pi, currency=currency, metadata=meta, amount=amount, checkout=checkout)
        kinds = histories.all_types(h)
        types = set(kinds)
        if rng.random() < subsets:
            for _ in range(20):
                drawn = set(rng.sample(kinds, rng.randint(1, len(kinds))))
                linked = {"checkout": "checkout.session.completed" in drawn, "booking": True}.get(
                    mode, any(k.startswith("payment_intent.") for k in drawn))
                if linked and h.knows_status(drawn) and h.knows_card(drawn):
                    types = drawn
                    break
        events += histories.events_of(h, types, shape=shaped)
        if h.captured:
            exp.add(exp.spend, currency, h.spend())
            exp.add(exp.revenue, currency, h.revenue())
            exp.add(exp.refunded, currency, h.refunded())
        exp.payments[pi] = {"status": h.payment_status(), "amount_refunded": h.refunded(), "card": h.card}
        exp.appointments_paid[meeting] = h.payment_status()
    stripe_events = events
    return Scenario(bookings=bookings, stripe_events=stripe_events, expected=expected, experts=expert_ids)


def deliveries(scenario: Scenario, *, seed: int, max_copies: int = 3) -> list[tuple[str, dict]]:
    """Every event one to `max_copies` times, all shuffled together: ("booking"|"stripe", event)."""
    rng = random.Random(seed)
    out = []
    for kind, items in (("booking", scenario.bookings), ("stripe", scenario.stripe_events)):
        for event in items:
            out += [(kind, event)] * rng.randint(1, max_copies)
    rng.shuffle(out)
    return out


def amounts(values: dict[str, int]) -> list[dict]:
    return [{"currency": c, "amount": a} for c, a in sorted(values.items())]
