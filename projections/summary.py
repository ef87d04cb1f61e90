"""Pure rules for one customer's summary row, from that customer's meetings and payments.

The stored row holds only what does not depend on the clock. Counts that do (upcoming,
past, completed minutes) are derived at read time from `schedule`, so a page never goes
stale as meetings pass.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Iterable

from projections import payments as payments_money
from projections.meetings import Meeting


def _iso(value: datetime) -> str:
    return value.isoformat()


def summarise(meetings: Iterable[Meeting], payments: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    """The summary of one (expert, customer), or None when no booked meeting is left."""
    booked = [m for m in meetings if m.is_booked]
    if not booked:
        return None
    by_age = sorted(booked, key=lambda m: m.created_version or "", reverse=True)
    newest = by_age[0]
    phone = next((m.customer_phone for m in by_age if m.customer_phone), None)
    active = [m for m in booked if m.cancelled_at is None]
    schedule = sorted(
        [_iso(m.start_time), _iso(m.end_time), m.no_show_at is not None] for m in active
    )
    starts = [m.start_time for m in (active or booked)]

    money = payments_money.summed(payments)

    return {
        "email": newest.customer_email,
        "name": newest.customer_name or "",
        "phone": phone,
        "search_text": f"{(newest.customer_name or '').lower()} {newest.customer_email}",
        "first_seen_at": min(m.first_seen_at for m in booked),
        "latest_start": max(starts),
        "appointments": len(active),
        "cancelled": len(booked) - len(active),
        "no_shows": sum(1 for m in active if m.no_show_at is not None),
        "schedule": schedule,
        "spend": dict(sorted(money["spend"].items())),
        "spend_sort": sum(money["spend"].values()),
        "revenue": dict(sorted(money["revenue"].items())),
        "refunded": dict(sorted(money["refunded"].items())),
    }


def counts_at(schedule: list[list], now: datetime) -> dict[str, Any]:
    """Clock-dependent figures from a stored schedule: upcoming/past, next/last, minutes done."""
    upcoming = past = minutes = 0
    last = nxt = None
    for start_s, end_s, no_show in schedule:
        start, end = datetime.fromisoformat(start_s), datetime.fromisoformat(end_s)
        if start > now:
            upcoming += 1
            if nxt is None or start < nxt:
                nxt = start
        else:
            past += 1
            if last is None or start > last:
                last = start
            if end <= now and not no_show:
                minutes += int((end - start).total_seconds() // 60)
    return {
        "upcoming": upcoming,
        "past": past,
        "total": upcoming + past,
        "last_appointment_at": last,
        "next_appointment_at": nxt,
        "session_minutes": minutes,
    }
