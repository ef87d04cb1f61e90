import itertools
from datetime import datetime, timedelta, timezone

import pytest

from testing import samples as s
from customers.events import parse_booking_event
from projections.meetings import appointment_status
from projections.rules.registry import apply_booking

T0 = datetime(2026, 5, 1, 10, tzinfo=timezone.utc)


def fold(events):
    m = None
    for e in events:
        m = apply_booking(m, e, "c_x" if e.type == "booking.created" else None)
    return m


def events():
    created = parse_booking_event(s.booking_created("ex", "m1", "Ana@Example.com ", "Ana", T0, occurred_at=T0 - timedelta(days=5)))
    moved = parse_booking_event(s.booking_event("booking.rescheduled", "ex", "m1", T0 - timedelta(days=2),
                                                start_time=s.iso(T0 + timedelta(days=1)),
                                                end_time=s.iso(T0 + timedelta(days=1, hours=1))))
    moved_again = parse_booking_event(s.booking_event("booking.rescheduled", "ex", "m1", T0 - timedelta(days=1),
                                                      start_time=s.iso(T0 + timedelta(days=3)),
                                                      end_time=s.iso(T0 + timedelta(days=3, hours=1))))
    cancelled = parse_booking_event(s.booking_event("booking.cancelled", "ex", "m1", T0 - timedelta(hours=12),
                                                    reason="sick", cancelled_by="customer"))
    return created, moved, moved_again, cancelled


def test_email_is_normalised():
    created = events()[0]
    assert created.customer.email == "ana@example.com"


def test_every_order_and_duplication_gives_the_same_meeting():
    evs = events()
    expected = fold(evs)
    assert expected.start_time == T0 + timedelta(days=3)
    assert expected.cancelled_at is not None
    for perm in itertools.permutations(evs):
        assert fold(perm) == expected
        assert fold(perm + perm[:2]) == expected


def test_reschedule_after_cancellation_does_not_revive():
    created, moved, _, cancelled = events()
    m = fold([created, cancelled, moved])
    assert appointment_status(m, T0) == "cancelled"


def test_duplicate_created_latest_wins_in_any_order():
    a = parse_booking_event(s.booking_created("ex", "m1", "a@example.com", "A", T0, occurred_at=T0 - timedelta(days=5)))
    b = parse_booking_event(s.booking_created("ex", "m1", "a@example.com", "A. Corrected", T0,
                                              occurred_at=T0 - timedelta(days=4)))
    assert fold([a, b]) == fold([b, a])
    assert fold([b, a]).customer_name == "A. Corrected"
    assert fold([b, a]).first_seen_at == T0 - timedelta(days=5)


@pytest.mark.parametrize("now,status", [
    (T0 - timedelta(hours=1), "upcoming"),
    (T0 + timedelta(minutes=30), "in_progress"),
    (T0 + timedelta(hours=2), "completed"),
])
def test_status_is_relative_to_now(now, status):
    assert appointment_status(fold(events()[:1]), now) == status


def test_no_show_shown_unless_cancelled():
    created = events()[0]
    ns = parse_booking_event(s.booking_event("booking.no_show", "ex", "m1", T0 + timedelta(hours=1)))
    assert appointment_status(fold([ns, created]), T0 + timedelta(hours=3)) == "no_show"


def test_invalid_events_are_refused():
    bad = s.booking_created("ex", "m1", "not-an-email", "A", T0)
    with pytest.raises(ValueError):
        parse_booking_event(bad)
    naive = s.booking_created("ex", "m1", "a@example.com", "A", T0)
    naive["start_time"] = "2026-05-01T10:00:00"
    with pytest.raises(ValueError):
        parse_booking_event(naive)
