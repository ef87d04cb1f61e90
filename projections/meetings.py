"""Pure rules for one meeting: (current state, booking event) -> new state.

Events of one meeting may arrive duplicated or out of order, so every field is a register
with a merge that is commutative, associative and idempotent. Any order of the same set of
events therefore gives the same meeting:

* booking details (customer, service, price, payment ids, booked time) come from the
  `booking.created` with the greatest (occurred_at, event_id): last writer wins;
* the current time slot comes from the `booking.rescheduled` with the greatest
  (occurred_at, event_id), or from the booking when there is none;
* a cancellation is final: a reschedule applied after it does not revive the meeting;
  the earliest cancellation's time and details are kept;
* a no-show keeps the earliest report; it is shown only for meetings not cancelled.

A meeting with no `booking.created` yet is kept but belongs to no customer until it comes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable

from customers.events import (
    BookingCancelled,
    BookingCreated,
    BookingEvent,
    BookingNoShow,
    BookingRescheduled,
)


def stamp(occurred_at: datetime, event_id: str) -> str:
    """A sortable version for last-writer-wins registers (fixed-width UTC, then the event id)."""
    t = occurred_at
    return (f"{t.year}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}."
            f"{t.microsecond:06d}Z|{event_id}")


@dataclass(frozen=True, slots=True)
class Meeting:
    expert_id: str
    meeting_id: str
    customer_id: str | None = None
    customer_email: str | None = None
    customer_name: str | None = None
    customer_phone: str | None = None
    service_id: str | None = None
    service_name: str | None = None
    booked_start: datetime | None = None
    booked_end: datetime | None = None
    booked_timezone: str | None = None
    created_version: str | None = None
    resched_start: datetime | None = None
    resched_end: datetime | None = None
    resched_timezone: str | None = None
    resched_version: str | None = None
    price_amount: int | None = None
    price_currency: str | None = None
    payment_intent_id: str | None = None
    checkout_session_id: str | None = None
    cancelled_at: datetime | None = None
    cancel_reason: str | None = None
    cancelled_by: str | None = None
    no_show_at: datetime | None = None
    booked_at: datetime | None = None
    first_seen_at: datetime | None = None

    @property
    def is_booked(self) -> bool:
        return self.created_version is not None

    @property
    def start_time(self) -> datetime | None:
        return self.resched_start if self.resched_version else self.booked_start

    @property
    def end_time(self) -> datetime | None:
        return self.resched_end if self.resched_version else self.booked_end

    @property
    def timezone(self) -> str | None:
        if self.resched_version and self.resched_timezone:
            return self.resched_timezone
        return self.booked_timezone


BOOKING_TYPES = (BookingCreated, BookingRescheduled, BookingCancelled, BookingNoShow)
MEETING_FIELDS = tuple(Meeting.__dataclass_fields__)


def meeting_from_row(row) -> Meeting:
    """A meeting from a `meetings` row (any mapping with the dataclass's fields)."""
    data = row._mapping
    return Meeting(**{k: data[k] for k in MEETING_FIELDS})


def replace(m: Meeting, **changes) -> Meeting:
    """A copy of `m` with some fields changed (as `dataclasses.replace`, without re-running the
    constructor over every field: this is on the path of every booking event)."""
    copy = object.__new__(Meeting)
    get = changes.get
    for name, slot in _SLOTS:
        slot.__set__(copy, get(name, slot.__get__(m)))
    return copy


_SLOTS = tuple((name, Meeting.__dict__[name]) for name in MEETING_FIELDS)  # the member descriptors


def _earliest(a: datetime | None, b: datetime) -> datetime:
    return b if a is None or b < a else a


def created(m: Meeting, e: BookingCreated, customer_id: str | None) -> Meeting:
    if customer_id is None:
        raise ValueError("booking.created needs the customer id")
    version = stamp(e.occurred_at, e.event_id)
    first_seen = _earliest(m.first_seen_at, e.created_at or e.occurred_at)
    if m.created_version is not None and m.created_version >= version:
        return replace(m, first_seen_at=first_seen)
    return replace(
        m,
        customer_id=customer_id,
        customer_email=e.customer.email,
        customer_name=e.customer.name,
        customer_phone=e.customer.phone,
        service_id=e.service.id,
        service_name=e.service.name,
        booked_start=e.start_time,
        booked_end=e.end_time,
        booked_timezone=e.timezone,
        created_version=version,
        price_amount=e.price.amount,
        price_currency=e.price.currency,
        payment_intent_id=e.payment.payment_intent_id,
        checkout_session_id=e.payment.checkout_session_id,
        booked_at=e.created_at or e.occurred_at,
        first_seen_at=first_seen,
    )


def rescheduled(m: Meeting, e: BookingRescheduled, _customer_id: str | None = None) -> Meeting:
    version = stamp(e.occurred_at, e.event_id)
    if m.resched_version is not None and m.resched_version >= version:
        return m
    return replace(
        m,
        resched_start=e.start_time,
        resched_end=e.end_time,
        resched_timezone=e.timezone,
        resched_version=version,
    )


def cancelled(m: Meeting, e: BookingCancelled, _customer_id: str | None = None) -> Meeting:
    if m.cancelled_at is not None and (m.cancelled_at, m.cancel_reason or "") <= (e.occurred_at, e.reason or ""):
        return m
    return replace(m, cancelled_at=e.occurred_at, cancel_reason=e.reason, cancelled_by=e.cancelled_by)


def no_show(m: Meeting, e: BookingNoShow, _customer_id: str | None = None) -> Meeting:
    return replace(m, no_show_at=_earliest(m.no_show_at, e.occurred_at))


Register = Callable[[Meeting, Any, "str | None"], Meeting]  # (meeting, event, customer id) -> meeting


def apply_register(register: Register, current: Meeting | None, event: BookingEvent,
                   customer_id: str | None = None) -> Meeting:
    """Apply one booking event through its register (`created`, `rescheduled`, `cancelled`,
    `no_show`: each booking type's registration names its own, `projections.rules.registry`).
    `customer_id` is required for `booking.created` only."""
    return register(current or Meeting(expert_id=event.expert_id, meeting_id=event.meeting_id), event, customer_id)


def appointment_status(m: Meeting, now: datetime) -> str:
    """Status relative to `now`: upcoming | in_progress | completed | cancelled | no_show."""
    if m.cancelled_at is not None:
        return "cancelled"
    if m.no_show_at is not None:
        return "no_show"
    if m.start_time is not None and now < m.start_time:
        return "upcoming"
    if m.end_time is not None and now < m.end_time:
        return "in_progress"
    return "completed"
