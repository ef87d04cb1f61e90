"""Pure rules for one customer's summary row, from that customer's meetings and payments.

Some figures depend on the time they are counted at (upcoming and past appointments, the last
and next one, minutes of completed sessions). The time is an input, `as_of`: the projection
counts as of its version's sweep watermark, and the sweep (`projections.sweep`) moves the
watermark and recounts the customers whose appointments started or ended in between.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Iterable

from projections import payments as payments_money
from projections.meetings import Meeting


def summarise(meetings: Iterable[Meeting], payments: Iterable[dict[str, Any]],
              as_of: datetime) -> dict[str, Any] | None:
    """The summary of one (expert, customer) as of `as_of`, or None when no booked meeting is left."""
    booked = [m for m in meetings if m.is_booked]
    if not booked:
        return None
    by_age = sorted(booked, key=lambda m: m.created_version or "", reverse=True)
    newest = by_age[0]
    phone = next((m.customer_phone for m in by_age if m.customer_phone), None)
    active = [m for m in booked if m.cancelled_at is None]
    money = payments_money.summed(payments)

    return {
        "email": newest.customer_email,
        "name": newest.customer_name or "",
        "phone": phone,
        "search_text": f"{(newest.customer_name or '').lower()} {newest.customer_email}",
        "first_seen_at": min(m.first_seen_at for m in booked),
        "appointments": len(active),
        "cancelled": len(booked) - len(active),
        "no_shows": sum(1 for m in active if m.no_show_at is not None),
        **counts_as_of(active, as_of),
        "spend": dict(sorted(money["spend"].items())),
        "spend_sort": sum(money["spend"].values()),
        "revenue": dict(sorted(money["revenue"].items())),
        "refunded": dict(sorted(money["refunded"].items())),
    }


def counts_as_of(active: list[Meeting], as_of: datetime) -> dict[str, Any]:
    """Figures of non-cancelled meetings that depend on the time: an appointment is past once its
    start is at or before `as_of`, and its minutes count once its end is too (no-shows apart)."""
    past = [m for m in active if m.start_time <= as_of]
    upcoming = [m for m in active if m.start_time > as_of]
    return {
        "upcoming": len(upcoming),
        "past": len(past),
        "last_appointment_at": max((m.start_time for m in past), default=None),
        "next_appointment_at": min((m.start_time for m in upcoming), default=None),
        "session_minutes": sum(int((m.end_time - m.start_time).total_seconds() // 60) for m in past
                               if m.end_time <= as_of and m.no_show_at is None),
    }
