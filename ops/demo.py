"""A small, realistic demo stream sent through the public intake: bookings and Stripe payments."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone

import httpx

from testing import samples as s
from customers.settings import Settings
from webhooks.signing import signature_header

EXPERT = "expert_demo"
PEOPLE = [
    ("ana.silva@example.com", "Ana Silva", "+351912345678"),
    ("bruno.costa@example.com", "Bruno Costa", None),
    ("carla.mendes@example.com", "Carla Mendes", "+351913000111"),
    ("david.rocha@example.com", "David Rocha", None),
    ("eva.lopes@example.com", "Eva Lopes", "+351914222333"),
    ("filipe.nunes@example.com", "Filipe Nunes", None),
    ("gabriela.pinto@example.com", "Gabriela Pinto", "+351915444555"),
    ("hugo.ramos@example.com", "Hugo Ramos", None),
]
# each person's appointments, in days from now: regulars, a newcomer, people who lapsed, one who came back
VISITS = [[-130, -70, -25, 12], [-40, 9], [-8], [-210, -160], [-300, -120], [6], [-400, -150, -12], [-100]]
BOOKED_AHEAD = timedelta(days=10)  # how long before an appointment it was booked (and paid)


def demo_stream(now: datetime) -> tuple[list[dict], list[dict]]:
    """A realistic history up to `now`: every booking, payment, cancellation, refund, no-show and
    reschedule happened before `now`; only appointments lie ahead. Payments are taken when the
    appointment is booked, ten days ahead (or yesterday, for what is booked sooner than that)."""
    bookings, stripe_events = [], []
    for i, ((email, name, phone), visits) in enumerate(zip(PEOPLE, VISITS)):
        for j, days in enumerate(visits):
            start = (now + timedelta(days=days)).replace(minute=0, second=0, microsecond=0)
            booked = min(start - BOOKED_AHEAD, now - timedelta(days=1))
            meeting, pi, ch = f"mtg_demo_{i}_{j}", f"pi_demo_{i}_{j}", f"ch_demo_{i}_{j}"
            amount = 6000 + 1000 * (i % 3)
            bookings.append(s.booking_created(EXPERT, meeting, email, name, start, amount=amount, phone=phone,
                                              payment_intent_id=pi, occurred_at=booked))
            fee = amount // 10
            paid_at = int(booked.timestamp())
            stripe_events.append(s.stripe_event("payment_intent.succeeded", s.payment_intent(
                pi, amount, "succeeded", fee=fee, charge=ch, created=paid_at), created=paid_at))
            stripe_events.append(s.stripe_event("charge.succeeded", s.charge(ch, pi, amount, fee=fee, created=paid_at),
                                                created=paid_at))
            if i == 1 and days > 0:  # Bruno cancels his next appointment and is refunded
                cancelled = now - timedelta(hours=12)
                bookings.append(s.booking_event("booking.cancelled", EXPERT, meeting, cancelled,
                                                reason="customer asked", cancelled_by="customer"))
                stripe_events.append(s.stripe_event("refund.created", s.refund(
                    f"re_demo_{i}", ch, pi, amount, created=int(cancelled.timestamp())), created=int(cancelled.timestamp())))
            if i == 3 and j == 1:  # David did not come to his last one
                bookings.append(s.booking_event("booking.no_show", EXPERT, meeting, start + timedelta(hours=1)))
            if i == 4 and j == 1:  # Eva moved hers by two days, a few days after booking it
                later = start + timedelta(days=2)
                bookings.append(s.booking_event("booking.rescheduled", EXPERT, meeting, booked + timedelta(days=3),
                                                start_time=s.iso(later), end_time=s.iso(later + timedelta(hours=1))))
    return bookings, stripe_events


async def load_demo(settings: Settings, intake_url: str, api_url: str, timeout: float = 60.0) -> str:
    """Send the demo stream and wait until the API shows every demo customer."""
    from api.auth import issue_token

    bookings, stripe_events = demo_stream(datetime.now(timezone.utc))
    async with httpx.AsyncClient(timeout=30) as client:
        r = await client.post(f"{intake_url}/events/bookings", json=bookings,
                              headers={"Authorization": f"Bearer {settings.ingest_token}"})
        r.raise_for_status()
        for event in stripe_events:
            body = json.dumps(event).encode()
            r = await client.post(f"{intake_url}/webhooks/stripe", content=body, headers={
                "Stripe-Signature": signature_header(body, settings.webhook_secrets[0]),
                "Content-Type": "application/json"})
            r.raise_for_status()
        token = issue_token(settings, EXPERT)
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            r = await client.get(f"{api_url}/api/customers", headers={"Authorization": f"Bearer {token}"})
            if r.status_code == 200 and r.json()["total"] >= len(PEOPLE):
                return EXPERT
            await asyncio.sleep(0.5)
    raise TimeoutError("the demo customers did not appear in time")
