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

from customers import samples as s

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

    def add(self, bucket: dict[str, int], currency: str, amount: int) -> None:
        bucket[currency] = bucket.get(currency, 0) + amount


@dataclass
class Scenario:
    bookings: list[dict]
    stripe_events: list[dict]
    expected: dict[tuple[str, str], Expected]  # (expert, email) -> figures
    experts: list[str]


def generate(n_bookings: int, *, seed: int, templates: dict[str, dict] | None = None, experts: int = 5,
             customers_per_expert: int = 40, prefix: str = "") -> Scenario:
    rng = random.Random(seed)
    now = datetime.now(timezone.utc).replace(microsecond=0)
    tpl = templates or {}

    def shaped(kind: str, obj: dict) -> dict:
        base = json.loads(json.dumps(tpl.get(kind, {})))
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
        meeting, pi, ch = f"{prefix}m{n}", f"pi_{prefix}{n}", f"ch_{prefix}{n}"
        currency = "eur" if who % 5 else "usd"
        amount = rng.choice([4500, 6000, 7500, 9000, 12000])
        fee = amount * rng.choice([10, 15, 20]) // 100
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

        outcome = rng.random()
        pay_events = [("payment_intent.processing", shaped("payment_intent", s.payment_intent(
            pi, amount, "processing", currency=currency, metadata=meta, fee=fee)))]
        if mode == "checkout":  # the platform's checkout: metadata on the session, the booking names it
            session_meta = s.meeting_metadata(expert, email, name, start)
            pay_events.append(("checkout.session.completed", shaped("checkout.session", s.checkout_session(
                cs, pi, amount, "complete", "unpaid", currency=currency, metadata=session_meta))))
            if outcome >= 0.08:
                pay_events.append(("checkout.session.async_payment_succeeded", shaped(
                    "checkout.session", s.checkout_session(cs, pi, amount, "complete", "paid", currency=currency,
                                                           metadata=session_meta))))
        if outcome < 0.08:  # failed payment
            pay_events.append(("payment_intent.payment_failed", shaped("payment_intent", s.payment_intent(
                pi, amount, "requires_payment_method", currency=currency, metadata=meta, fee=fee))))
            if mode == "checkout":
                pay_events.append(("checkout.session.async_payment_failed", shaped("checkout.session",
                    s.checkout_session(cs, pi, amount, "complete", "unpaid", currency=currency))))
            exp.payments[pi] = {"status": "failed", "amount_refunded": 0}
            events += [(k, o) for k, o in pay_events]
            continue
        last4 = f"{rng.randrange(10000):04d}"
        pay_events += [
            ("payment_intent.succeeded", shaped("payment_intent", s.payment_intent(
                pi, amount, "succeeded", currency=currency, metadata=meta, fee=fee, charge=ch))),
            ("charge.succeeded", shaped("charge", s.charge(ch, pi, amount, currency=currency, fee=fee, last4=last4))),
        ]
        refunded = lost = fee_back = 0
        if rng.random() < 0.25:  # refunds: some partial, some full, some failing later
            remaining = amount
            for r in range(rng.randint(1, 2)):
                part = remaining if rng.random() < 0.4 else remaining // 3
                if part <= 0:
                    break
                rid = f"re_{prefix}{n}_{r}"
                pay_events.append(("refund.created", shaped("refund", s.refund(rid, ch, pi, part, "pending",
                                                                                currency=currency))))
                if rng.random() < 0.2:
                    pay_events.append(("refund.failed", shaped("refund", s.refund(rid, ch, pi, part, "failed",
                                                                                   currency=currency))))
                else:
                    pay_events.append(("charge.refund.updated", shaped("refund", s.refund(
                        rid, ch, pi, part, "succeeded", currency=currency))))
                    refunded += part
                    remaining -= part
            if refunded and rng.random() < 0.5:
                fee_back = fee * refunded // amount
                pay_events.append(("application_fee.refunded", shaped("application_fee", s.application_fee(
                    f"fee_{prefix}{n}", ch, fee, fee_back, currency=currency))))
        elif rng.random() < 0.08:  # disputes, won or lost
            dp = f"dp_{prefix}{n}"
            result = rng.choice(["won", "lost"])
            pay_events.append(("charge.dispute.created", shaped("dispute", s.dispute(
                dp, ch, pi, amount, "needs_response", currency=currency))))
            pay_events.append(("charge.dispute.closed", shaped("dispute", s.dispute(dp, ch, pi, amount, result,
                                                                                   currency=currency))))
            lost = amount if result == "lost" else 0
        events += pay_events
        spend = amount - refunded - lost
        exp.add(exp.spend, currency, spend)
        exp.add(exp.revenue, currency, spend - (fee - fee_back))
        exp.add(exp.refunded, currency, refunded)
        exp.payments[pi] = {"status": "succeeded", "amount_refunded": refunded}
    stripe_events = [s.stripe_event(kind, obj) for kind, obj in events]
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
