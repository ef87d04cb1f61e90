"""A customer's status (new, active, lapsed, archived) as of a time, how it moves as time passes,
and the customers a sweep must recount for it."""

from dataclasses import replace
from datetime import timedelta

import pytest
from hypothesis import given, settings, strategies as st

from projections.rules.status import Lifecycle, shifted_windows, status_of
from projections.rules.summaries import summary_of
from projections.sweep import EARLIEST, due
from tests.unit.test_counts_as_of import T0, meeting

D = timedelta(days=1)
LIFE = Lifecycle(30, 90)


def status(meetings, as_of, life=LIFE, archived=False):
    s = summary_of(meetings, [], as_of)
    return status_of(replace(s, archived=archived), as_of, life)


def test_a_first_appointment_upcoming_or_recent_is_new():
    assert status([meeting("m1", T0 + 3 * D)], T0) == "new"
    assert status([meeting("m1", T0 - 29 * D)], T0) == "new"
    assert status([meeting("m1", T0 - 31 * D)], T0) == "active"  # its one visit is within 90 days


def test_a_visit_within_the_active_days_or_one_upcoming_is_active():
    assert status([meeting("m1", T0 - 200 * D), meeting("m2", T0 - 89 * D)], T0) == "active"
    assert status([meeting("m1", T0 - 200 * D), meeting("m2", T0 + 60 * D)], T0) == "active"


def test_no_visit_in_the_active_days_and_none_upcoming_is_lapsed():
    assert status([meeting("m1", T0 - 200 * D), meeting("m2", T0 - 91 * D)], T0) == "lapsed"
    # a cancelled appointment neither brings a customer back nor makes them new
    assert status([meeting("m1", T0 - 200 * D), meeting("m2", T0 + 5 * D, cancelled=True)], T0) == "lapsed"
    assert status([meeting("m1", T0 + 5 * D, cancelled=True)], T0) == "lapsed"


def test_archived_wins_and_the_thresholds_are_settings():
    assert status([meeting("m1", T0 + 3 * D)], T0, archived=True) == "archived"
    history = [meeting("m1", T0 - 200 * D), meeting("m2", T0 - 50 * D)]
    assert status(history, T0, Lifecycle(7, 30)) == "lapsed"
    assert status(history, T0, Lifecycle(7, 60)) == "active"
    with pytest.raises(ValueError):
        Lifecycle(90, 30)


def test_a_status_as_of_the_earliest_time_does_not_overflow():
    assert status([meeting("m1", T0)], EARLIEST) == "new"  # upcoming as of before every meeting


def test_the_sweep_recounts_customers_whose_status_threshold_passed_in_its_window():
    rows = [("ex", "c_lapsing", T0 - 95 * D, T0 - 95 * D + timedelta(hours=1)),
            ("ex", "c_no_longer_new", T0 - 31 * D, T0 - 31 * D + timedelta(hours=1)),
            ("ex", "c_quiet", T0 - 60 * D, T0 - 60 * D + timedelta(hours=1))]
    since, until = T0 - 10 * D, T0
    windows = shifted_windows(since, until, LIFE)
    assert due(rows, since, until, windows) == [("ex", "c_lapsing"), ("ex", "c_no_longer_new")]
    assert due(rows, since, until) == []  # the counts alone would leave them


days = st.integers(min_value=-400, max_value=120).map(lambda n: T0 + n * D)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(days, st.booleans(), st.booleans()), min_size=1, max_size=5), days, days,
       st.sampled_from([Lifecycle(30, 90), Lifecycle(7, 30), Lifecycle(14, 14)]))
def test_a_customer_the_sweep_leaves_alone_keeps_their_status(plan, since, until, life):
    """What the sweep does not recount must not have changed status between its two times."""
    since, until = min(since, until), max(since, until)
    meetings = [meeting(f"m{i}", start, cancelled=c, no_show=n) for i, (start, c, n) in enumerate(plan)]
    rows = [("ex", "c_ana", m.start_time, m.end_time) for m in meetings]
    if not due(rows, since, until, shifted_windows(since, until, life)):
        assert status(meetings, since, life) == status(meetings, until, life)


def test_the_first_appointment_and_the_status_follow_changes_to_the_earliest_one_batch_by_batch():
    """Taking off the earliest appointment cannot be undone by a difference: the customer is
    recounted, and the batches end where one recount of the whole history does."""
    from projections.memory import FoldState, state_of
    from tests.unit.test_fold import ANA, fold
    from tests.unit.test_rules import SECRET, T0 as R0, created, event

    state = FoldState(SECRET)
    fold(state, [created("m1", start=R0 - 40 * D), created("m2", start=R0 - 100 * D)])
    s = state.summaries.rows[("ex", ANA)]
    assert (s.first_appointment_at, s.status) == (R0 - 100 * D, "active")
    fold(state, [event("booking.cancelled", "m2", R0 - D, reason="ill")])
    s = state.summaries.rows[("ex", ANA)]
    assert (s.first_appointment_at, s.status) == (R0 - 40 * D, "active")
    moved = R0 + 5 * D
    fold(state, [event("booking.rescheduled", "m1", R0 - D, start_time=moved.isoformat(),
                       end_time=(moved + timedelta(hours=1)).isoformat())])
    s = state.summaries.rows[("ex", ANA)]
    assert (s.first_appointment_at, s.status) == (moved, "new")
    recount = summary_of(state.meetings.rows.values(), [state_of(p) for p in state.payments.rows.values()], R0)
    assert s.first_appointment_at == recount.first_appointment_at and s.upcoming == recount.upcoming
