"""What one customer adds to the expert's monthly figures (`projections.rules.insights`), without a
database: months by the appointment's current start, time as an input, refunds in their own
month, and the differences a change adds."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from api.insights import figures, median_days, months_between, stored_from
from customers.facts import ChargeSeen, IntentSeen, PaymentObserved, RefundSeen
from projections import payments as money
from projections.meetings import Meeting
from projections.rules import insights
from projections.rules.insights import contribution, delta, money_of, payment_months

UTC = timezone.utc
H = timedelta(hours=1)


def meeting(mid: str, start: datetime, *, service: str = "svc_1", cancelled: datetime | None = None,
            no_show: datetime | None = None, moved_to: datetime | None = None) -> Meeting:
    return Meeting(expert_id="ex", meeting_id=mid, customer_id="c_1", service_id=service, service_name="Consultation",
                   booked_start=start, booked_end=start + H, created_version=f"v{mid}",
                   resched_start=moved_to, resched_end=moved_to + H if moved_to else None,
                   resched_version=f"r{mid}" if moved_to else None,
                   cancelled_at=cancelled, no_show_at=no_show)


def paid(amount: int, at: str, *, refunds: list[tuple[int, str]] = (), fee: int = 0, currency: str = "eur") -> dict:
    """A payment's joined state as the payment rules build it from Stripe's facts."""
    when = datetime.fromisoformat(at)
    pi = f"pi_{amount}_{at[:10]}"
    fact = PaymentObserved(
        stripe_event_id=f"evt_{pi}", stripe_event_type="charge.succeeded", occurred_at=when, payment_id=pi,
        payment_intent_id=pi, expert_id="ex", currency=currency, created_at=when,
        intent=IntentSeen(status="succeeded", amount=amount, amount_received=amount, latest_charge=f"ch_{pi}",
                          application_fee=fee or None),
        charge=ChargeSeen(id=f"ch_{pi}", status="succeeded", captured=True, amount=amount, amount_captured=amount),
        refunds=[RefundSeen(id=f"re_{i}", charge_id=f"ch_{pi}", amount=a, status="succeeded",
                            created_at=datetime.fromisoformat(c)) for i, (a, c) in enumerate(refunds)])
    return money.from_fact(fact)


def test_a_reschedule_across_a_month_boundary_moves_the_appointment_to_the_new_month():
    before = contribution([meeting("m1", datetime(2026, 3, 30, 10, tzinfo=UTC))], [], datetime(2026, 1, 1, tzinfo=UTC))
    moved = meeting("m1", datetime(2026, 3, 30, 10, tzinfo=UTC), moved_to=datetime(2026, 4, 2, 10, tzinfo=UTC))
    after = contribution([moved], [], datetime(2026, 1, 1, tzinfo=UTC))
    assert before[("2026-03", "booked", "")] == 1 and before[("2026-03", "new", "")] == 1
    assert ("2026-03", "booked", "") not in after and after[("2026-04", "new", "")] == 1
    change = delta(before, after)
    assert change[("2026-03", "booked", "")] == -1 and change[("2026-04", "booked", "")] == 1
    assert change[("2026-03", "new", "")] == -1 and change[("2026-04", "new", "")] == 1


def test_a_cancellation_after_the_month_closed_leaves_completed_for_cancelled_in_that_month():
    start = datetime(2026, 3, 10, 10, tzinfo=UTC)
    in_april = datetime(2026, 4, 20, tzinfo=UTC)
    done = contribution([meeting("m1", start)], [], in_april)
    assert done[("2026-03", "completed", "")] == 1
    cancelled = contribution([meeting("m1", start, cancelled=datetime(2026, 4, 15, tzinfo=UTC))], [], in_april)
    change = delta(done, cancelled)
    assert change == {("2026-03", "completed", ""): -1, ("2026-03", "cancelled", ""): 1,
                      ("2026-03", "new", ""): -1, ("2026-03", "svc_appts", "svc_1"): -1}


def test_completed_follows_the_watermark_not_the_clock():
    start = datetime(2026, 3, 10, 10, tzinfo=UTC)
    assert ("2026-03", "completed", "") not in contribution([meeting("m1", start)], [], start)
    assert contribution([meeting("m1", start)], [], start + 2 * H)[("2026-03", "completed", "")] == 1


def test_a_refund_in_a_later_month_counts_in_the_refunds_month():
    months = payment_months(paid(10_000, "2026-03-05T10:00:00+00:00", refunds=[(2_500, "2026-05-02T09:00:00+00:00")],
                                 fee=1_000))
    assert months == {"2026-03": {"spend": 10_000, "revenue": 9_000, "refunded": 0},
                      "2026-05": {"spend": -2_500, "revenue": -2_500, "refunded": 2_500}}
    # every month together is the payment's summary figures
    assert sum(m["spend"] for m in months.values()) == 7_500
    assert sum(m["revenue"] for m in months.values()) == 6_500


def test_new_returning_back_within_90_days_and_gaps():
    visits = [meeting("m1", datetime(2026, 1, 5, tzinfo=UTC)), meeting("m2", datetime(2026, 2, 9, tzinfo=UTC)),
              meeting("m3", datetime(2026, 2, 23, tzinfo=UTC)),
              meeting("m4", datetime(2026, 3, 1, tzinfo=UTC), cancelled=datetime(2026, 2, 1, tzinfo=UTC)),
              meeting("m5", datetime(2026, 6, 1, tzinfo=UTC), no_show=datetime(2026, 6, 1, 2, tzinfo=UTC))]
    c = contribution(visits, [], datetime(2026, 7, 1, tzinfo=UTC))
    assert c[("2026-01", "new", "")] == 1 and ("2026-02", "new", "") not in c
    assert c[("2026-02", "returning", "")] == 1  # once a month, however many visits
    assert c[("2026-01", "back90", "")] == 1
    assert c[("2026-02", "gap", "35")] == 1 and c[("2026-02", "gap", "14")] == 1
    assert c[("2026-03", "cancelled", "")] == 1 and c[("2026-06", "no_show", "")] == 1
    assert ("2026-03", "svc_appts", "svc_1") not in c  # a cancelled appointment is no service given


def test_returned_counts_a_visit_after_a_lapse_once_it_has_started():
    visits = [meeting("m1", datetime(2026, 1, 5, tzinfo=UTC)), meeting("m2", datetime(2026, 6, 1, 9, tzinfo=UTC)),
              meeting("m3", datetime(2026, 6, 20, tzinfo=UTC))]
    assert contribution(visits, [], datetime(2026, 7, 1, tzinfo=UTC))[("2026-06", "returned", "")] == 1  # once a month
    assert ("2026-06", "returned", "") not in contribution(visits, [], datetime(2026, 6, 1, 8, tzinfo=UTC))  # not yet
    assert ("2026-06", "returned", "") not in contribution(visits, [], datetime(2026, 7, 1, tzinfo=UTC), lapse_days=200)


def test_the_contribution_does_not_depend_on_the_order_of_its_inputs():
    visits = [meeting("m1", datetime(2026, 1, 5, tzinfo=UTC)), meeting("m2", datetime(2026, 2, 9, tzinfo=UTC)),
              meeting("m3", datetime(2026, 2, 9, tzinfo=UTC), service="svc_2"),  # same start: ordered by id
              meeting("m4", datetime(2026, 8, 1, tzinfo=UTC), moved_to=datetime(2026, 1, 20, tzinfo=UTC)),
              meeting("m5", datetime(2026, 3, 1, tzinfo=UTC), cancelled=datetime(2026, 2, 1, tzinfo=UTC))]
    payments = [(money_of(paid(5_000, "2026-01-05T00:00:00+00:00")), "m1"),
                (money_of(paid(700, "2026-02-02T00:00:00+00:00", refunds=[(300, "2026-04-01T00:00:00+00:00")])), "m3")]
    as_of = datetime(2026, 3, 1, tzinfo=UTC)
    expected = contribution(visits, payments, as_of)
    assert expected[("2026-01", "gap", "15")] == 1 and expected[("2026-02", "gap", "20")] == 1  # m4 moved first
    for turn in range(1, len(visits)):
        assert contribution(visits[turn:] + visits[:turn], payments[::-1], as_of) == expected


def test_money_of_is_the_payments_months_as_a_contribution_takes_them():
    state = paid(10_000, "2026-03-05T10:00:00+00:00", refunds=[(2_500, "2026-05-02T09:00:00+00:00")], fee=1_000)
    assert money_of(state) == ("eur", (("2026-03", 10_000, 9_000, 0), ("2026-05", -2_500, -2_500, 2_500)))
    assert money_of({"currency": "eur"}) == ("eur", ())  # nothing taken: no month


def test_a_held_payment_keeps_its_money_and_works_it_out_again_when_its_objects_change():
    from projections.memory import money_held, packed, unpacked
    from projections.rules.model import Payment

    first = paid(10_000, "2026-03-05T10:00:00+00:00")
    held = packed(Payment(payment_id="pi_1", state=first, expert_id="ex", customer_id="c_1"))
    assert held.money == money_of(first) and money_held(held) == money_of(first)
    assert packed(held) is held  # already held: nothing worked out again
    copy = unpacked(held)  # what the rules change: its own objects, no money kept
    copy.state = paid(10_000, "2026-03-05T10:00:00+00:00", refunds=[(4_000, "2026-04-01T00:00:00+00:00")])
    assert money_held(copy) == money_of(copy.state)
    again = packed(copy)
    assert again.money == money_of(copy.state) != held.money
    assert again.money[1][1] == ("2026-04", -4_000, -4_000, 4_000)


def test_service_spend_follows_the_payments_meeting():
    m = meeting("m1", datetime(2026, 3, 10, tzinfo=UTC), service="svc_yoga")
    c = contribution([m], [(money_of(paid(5_000, "2026-03-01T00:00:00+00:00")), "m1"),
                           (money_of(paid(700, "2026-03-02T00:00:00+00:00")), None)],
                     datetime(2026, 4, 1, tzinfo=UTC))
    assert c[("2026-03", "svc_spend", "svc_yoga\x1feur")] == 5_000 and c[("2026-03", "spend", "eur")] == 5_700


def test_fold_gives_differences_per_expert_and_forgets_a_customer_gone():
    start = datetime(2026, 3, 10, tzinfo=UTC)
    stored = {("ex", "c_1"): insights.encode(contribution([meeting("m1", start)], [], start))}
    rows, gone, deltas, labels = insights.fold({("ex", "c_1")}, {}, stored, start)
    assert rows == {} and gone == {("ex", "c_1")}
    assert deltas[("ex", "2026-03", "booked", "")] == -1
    rows, gone, deltas, labels = insights.fold({("ex", "c_2")}, {("ex", "c_2"): ([meeting("m9", start)], [])}, {}, start)
    assert ("ex", "c_2") in rows and not gone and labels == {("ex", "svc_1"): "Consultation"}


def test_the_period_figures_from_stored_rows():
    from types import SimpleNamespace as R

    rows = [R(month="2026-01", metric="booked", dim="", value=10, label=None),
            R(month="2026-01", metric="cancelled", dim="", value=2, label=None),
            R(month="2026-02", metric="no_show", dim="", value=1, label=None),
            R(month="2026-01", metric="new", dim="", value=4, label=None),
            R(month="2026-01", metric="back90", dim="", value=3, label=None),
            R(month="2026-02", metric="gap", dim="10", value=2, label=None),
            R(month="2026-02", metric="gap", dim="30", value=2, label=None),
            R(month="2026-02", metric="spend", dim="eur", value=900, label=None),
            R(month="2026-02", metric="svc_appts", dim="s1", value=7, label=None),
            R(month="2026-09", metric="booked", dim="", value=99, label=None)]  # outside the range
    f = figures(["2026-01", "2026-02"], stored_from([(r.month, r.metric, r.dim, r.value) for r in rows]), {"s1": "Yoga"})
    assert f.period["cancellation_rate"] == 0.2 and f.period["no_show_rate"] == 0.125
    assert f.period["returned_within_90_days"] == 0.75 and f.period["median_days_between_appointments"] == 20
    assert f.period["top_services"][0]["service"] == {"id": "s1", "name": "Yoga"}
    assert f.months[1]["money"] == [{"currency": "eur", "total_spend": 900, "expert_revenue": 0, "refunded": 0}]
    assert median_days({3: 1}) == 3 and median_days({}) is None and median_days({1: 1, 5: 2}) == 5


def test_the_months_asked_for():
    now = datetime(2026, 12, 4, tzinfo=UTC)
    assert months_between(None, None, now)[0] == "2026-01" and months_between(None, None, now)[-1] == "2026-12"
    assert months_between("2025-11", "2026-02", now) == ["2025-11", "2025-12", "2026-01", "2026-02"]
    for first, last in (("2026-13", None), ("2026-05", "2026-01"), ("2023-01", "2026-01"), ("26-01", None)):
        try:
            months_between(first, last, now)
        except ValueError:
            continue
        raise AssertionError((first, last))


def test_months_are_real_months_and_a_computed_from_stays_in_range():
    now = datetime(2026, 12, 4, tzinfo=UTC)
    for first, last in (("0000-01", "0000-12"), (None, "0000-05"), ("0000-12", None), ("١٢٣٤-01", None)):
        with pytest.raises(ValueError):
            months_between(first, last, now)
    assert months_between(None, "0001-05", now) == ["0001-01", "0001-02", "0001-03", "0001-04", "0001-05"]
    assert months_between("0001-01", "0001-01", now) == ["0001-01"]
    assert months_between("9999-12", None, now) == ["9999-12"]
    assert months_between(None, "9999-12", now)[-1] == "9999-12"
