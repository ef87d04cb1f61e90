"""Properties of the pure projection rules: any reordering the contract allows and any
duplication of a valid event set give the same state."""

from datetime import datetime, timedelta, timezone

from hypothesis import given, settings, strategies as st

from testing import samples as s
from customers.events import parse_booking_event
from projections.rules.registry import apply_booking
from projections.summary import summarise

T0 = datetime(2026, 3, 1, 9, tzinfo=timezone.utc)
offsets = st.integers(min_value=-30 * 24, max_value=30 * 24).map(lambda h: timedelta(hours=h))


@st.composite
def meeting_events(draw, meeting_id="m1"):
    events = []
    for _ in range(draw(st.integers(1, 3))):
        email = draw(st.sampled_from(["ana@example.com", " ANA@example.com", "bea@example.com"]))
        events.append(s.booking_created("ex", meeting_id, email, draw(st.sampled_from(["Ana", "Bea"])),
                                        T0 + draw(offsets), occurred_at=T0 - draw(offsets).__abs__() - timedelta(days=40),
                                        amount=draw(st.sampled_from([5000, 7000]))))
    for _ in range(draw(st.integers(0, 3))):
        start = T0 + draw(offsets)
        events.append(s.booking_event("booking.rescheduled", "ex", meeting_id, T0 - draw(offsets).__abs__(),
                                      start_time=s.iso(start), end_time=s.iso(start + timedelta(hours=1))))
    for _ in range(draw(st.integers(0, 2))):
        events.append(s.booking_event("booking.cancelled", "ex", meeting_id, T0 - draw(offsets).__abs__(),
                                      reason=draw(st.sampled_from(["ill", "travel", None]))))
    for _ in range(draw(st.integers(0, 2))):
        events.append(s.booking_event("booking.no_show", "ex", meeting_id, T0 + draw(offsets).__abs__()))
    return [parse_booking_event(e) for e in events]


def fold(events):
    state = None
    for e in events:
        state = apply_booking(state, e, f"c_{e.customer.email}" if e.type == "booking.created" else None)
    return state


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_meeting_state_ignores_order_and_duplicates(data):
    events = data.draw(meeting_events())
    shuffled = data.draw(st.permutations(events))
    dupes = data.draw(st.lists(st.sampled_from(events), max_size=6))
    assert fold(list(shuffled) + dupes) == fold(events)


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_customer_summary_ignores_order_of_meetings(data):
    meetings = [fold(data.draw(meeting_events(f"m{i}"))) for i in range(data.draw(st.integers(1, 4)))]
    reordered = data.draw(st.permutations(meetings))
    as_of = T0 + data.draw(offsets)
    assert summarise(reordered, [], as_of) == summarise(meetings, [], as_of)
