"""Appointment counts as of a given time (no clock inside the rules), and the customers a sweep
from one time to another must recount."""

from datetime import datetime, timedelta, timezone

from hypothesis import given, settings, strategies as st

from testing import samples as s
from customers.events import parse_booking_event
from projections.rules.registry import apply_booking
from projections.summary import summarise
from projections.sweep import EARLIEST, due, passed

T0 = datetime(2026, 3, 1, 9, tzinfo=timezone.utc)
H = timedelta(hours=1)


def meeting(meeting_id: str, start: datetime, minutes: int = 60, *, cancelled=False, no_show=False, email="ana@example.com"):
    m = apply_booking(None, parse_booking_event(s.booking_created("ex", meeting_id, email, "Ana", start, minutes=minutes,
                                                                 occurred_at=T0 - timedelta(days=60))), "c_ana")
    if cancelled:
        m = apply_booking(m, parse_booking_event(s.booking_event("booking.cancelled", "ex", meeting_id,
                                                                 T0 - timedelta(days=30), reason="ill")), None)
    if no_show:
        m = apply_booking(m, parse_booking_event(s.booking_event("booking.no_show", "ex", meeting_id,
                                                                 start + 2 * H)), None)
    return m


def counts(summary: dict) -> tuple:
    return (summary["upcoming"], summary["past"], summary["last_appointment_at"], summary["next_appointment_at"],
            summary["session_minutes"])


HISTORY = [meeting("m1", T0 - 48 * H, 50), meeting("m2", T0 - 24 * H, no_show=True), meeting("m3", T0 + 24 * H),
           meeting("m4", T0 + 48 * H, 45), meeting("m5", T0 - 72 * H, cancelled=True), meeting("m6", T0 + 72 * H, cancelled=True)]


def test_counts_follow_the_time_given():
    assert counts(summarise(HISTORY, [], T0)) == (2, 2, T0 - 24 * H, T0 + 24 * H, 50)
    # a day later m3 has started and ended; the no-show never counts minutes
    assert counts(summarise(HISTORY, [], T0 + 25 * H)) == (1, 3, T0 + 24 * H, T0 + 48 * H, 110)
    # before every meeting, all are upcoming; after all of them, all are past
    assert counts(summarise(HISTORY, [], EARLIEST)) == (4, 0, None, T0 - 48 * H, 0)
    assert counts(summarise(HISTORY, [], T0 + 100 * H)) == (0, 4, T0 + 48 * H, None, 155)


def test_the_time_only_moves_the_clock_dependent_figures():
    before, after = summarise(HISTORY, [], T0), summarise(HISTORY, [], T0 + 100 * H)
    clock = {"upcoming", "past", "last_appointment_at", "next_appointment_at", "session_minutes"}
    assert {k: v for k, v in before.items() if k not in clock} == {k: v for k, v in after.items() if k not in clock}
    assert before["appointments"] == before["upcoming"] + before["past"] == 4 and before["cancelled"] == 2


def test_a_start_at_the_time_is_past_and_an_end_at_the_time_is_done():
    one = [meeting("m1", T0, 30)]
    assert counts(summarise(one, [], T0 - timedelta(microseconds=1))) == (1, 0, None, T0, 0)
    assert counts(summarise(one, [], T0)) == (0, 1, T0, None, 0)  # started, not over
    assert counts(summarise(one, [], T0 + timedelta(minutes=30))) == (0, 1, T0, None, 30)


def test_only_cancelled_meetings_leave_no_last_or_next_appointment():
    summary = summarise([meeting("m5", T0 - 72 * H, cancelled=True)], [], T0)
    assert counts(summary) == (0, 0, None, None, 0) and summary["cancelled"] == 1


def test_the_sweep_recounts_customers_whose_meeting_started_or_ended_in_its_window():
    rows = [
        ("ex", "c_start", T0 + 10 * H, T0 + 11 * H),   # starts inside
        ("ex", "c_end", T0 - H, T0 + 5 * H),          # started before, ends inside
        ("ex", "c_edge_since", T0, T0 + 30 * H),       # starts exactly at the old watermark: already counted
        ("ex", "c_edge_until", T0 + 24 * H, T0 + 25 * H),  # starts exactly at the new one: past now
        ("ex", "c_later", T0 + 30 * H, T0 + 31 * H),
        ("ex", "c_earlier", T0 - 10 * H, T0 - 9 * H),
        ("ex", None, T0 + 2 * H, T0 + 3 * H),           # no booking yet: no customer to recount
        ("ex", "c_start", T0 + 12 * H, T0 + 13 * H),   # a customer once, however many meetings passed
        ("other", "c_start", T0 + 12 * H, T0 + 13 * H),
    ]
    assert due(rows, T0, T0 + 24 * H) == [("ex", "c_edge_until"), ("ex", "c_end"), ("ex", "c_start"),
                                          ("other", "c_start")]
    assert due(rows, T0 + 24 * H, T0 + 24 * H) == []  # the same time again: nothing
    assert ("ex", "c_earlier") in due(rows, EARLIEST, T0)  # never swept: everything up to now


times = st.integers(min_value=-96, max_value=96).map(lambda h: T0 + h * H)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(times, st.sampled_from([30, 60, 90]), st.booleans(), st.booleans()), min_size=1, max_size=5),
       times, times)
def test_a_customer_the_sweep_leaves_alone_has_the_same_counts_at_both_times(plan, since, until):
    since, until = min(since, until), max(since, until)
    meetings = [meeting(f"m{i}", start, minutes, cancelled=c, no_show=n) for i, (start, minutes, c, n) in enumerate(plan)]
    recount = any(passed(m.start_time, m.end_time, since, until) for m in meetings)
    if not recount:
        assert counts(summarise(meetings, [], since)) == counts(summarise(meetings, [], until))
