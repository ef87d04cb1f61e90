"""Where a customer stands with their expert: `new`, `active`, `lapsed` or `archived`. Pure.

* `archived`: the expert archived them (wins over the rest);
* `new`: their first appointment (not cancelled) is upcoming, or started within `new_days`;
* `active`: an appointment upcoming, or one that started within `active_days`;
* `lapsed`: none of those (a customer who only ever cancelled is lapsed too).

Appointments count as the list counts them: booked and not cancelled, no-shows included. The
status is as of the version's sweep watermark, like the other time-dependent columns; a status
changes with time when a first or last appointment's start passes `new_days` or `active_days`
before the watermark, so a sweep recounts the customers with a meeting starting in those
windows too (`shifted_windows`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

STATUSES = ("new", "active", "lapsed", "archived")
_EARLIEST = datetime(1, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class Lifecycle:
    """The thresholds, in days (settings `CUSTOMER_NEW_DAYS`, `CUSTOMER_ACTIVE_DAYS`)."""

    new_days: int = 30
    active_days: int = 90

    def __post_init__(self) -> None:
        if not 0 < self.new_days <= self.active_days:
            raise ValueError(f"need 0 < new_days <= active_days, got {self.new_days} and {self.active_days}")

    @classmethod
    def of(cls, settings: Any) -> "Lifecycle":
        """From the settings `CUSTOMER_NEW_DAYS` and `CUSTOMER_ACTIVE_DAYS`."""
        return cls(settings.customer_new_days, settings.customer_active_days)


DEFAULT = Lifecycle()


def _within(when: datetime | None, as_of: datetime, days: int) -> bool:
    """Whether `when` is later than `days` before `as_of` (written as a difference: no overflow
    near the earliest time)."""
    return when is not None and when - as_of > -timedelta(days=days)


def status_of(s: Any, as_of: datetime, life: Lifecycle = DEFAULT) -> str:
    """The status of a customer summary (`first_appointment_at`, `last_appointment_at`,
    `upcoming`, `archived`) as of `as_of`."""
    if s.archived:
        return "archived"
    if _within(s.first_appointment_at, as_of, life.new_days):
        return "new"
    if s.upcoming > 0 or _within(s.last_appointment_at, as_of, life.active_days):
        return "active"
    return "lapsed"


def shifted(when: datetime, days: int) -> datetime:
    """`when` minus `days`, the earliest time when that would come before it."""
    return when - timedelta(days=days) if when - _EARLIEST > timedelta(days=days) else _EARLIEST


def shifted_windows(since: datetime, until: datetime, life: Lifecycle) -> list[tuple[datetime, datetime]]:
    """The windows of meeting starts whose customers' status may change when the watermark moves
    from `since` to `until`: those whose start is `new_days` or `active_days` older."""
    return [(shifted(since, d), shifted(until, d)) for d in sorted({life.new_days, life.active_days})]
