from hypothesis import given, settings, strategies as st

from customers import samples as s
from projections import payments as money
from streams.stripe_facts import correlation, to_fact

PI, CH = "pi_1", "ch_1"


def history():
    meta = {"expert_id": "ex", "meeting_id": "m1", "customer_email": "Ana@Example.com"}
    return [
        s.stripe_event("payment_intent.processing", s.payment_intent(PI, 10000, "processing", metadata=meta)),
        s.stripe_event("payment_intent.succeeded", s.payment_intent(PI, 10000, "succeeded", metadata=meta, fee=1500,
                                                                    charge=CH)),
        s.stripe_event("charge.succeeded", s.charge(CH, PI, 10000, fee=1500, brand="mastercard", last4="4444")),
        s.stripe_event("refund.created", s.refund("re_1", CH, PI, 3000, "pending")),
        s.stripe_event("refund.updated", s.refund("re_1", CH, PI, 3000, "succeeded")),
        s.stripe_event("refund.created", s.refund("re_2", CH, PI, 2000, "succeeded")),
        s.stripe_event("refund.failed", s.refund("re_2", CH, PI, 2000, "failed")),
        s.stripe_event("application_fee.refunded", s.application_fee("fee_1", CH, 1500, 450)),
    ]


def state_of(events):
    state = None
    for e in events:
        fact = to_fact(e)
        if fact.type == "payment.observed":
            state = money.observe(state, fact)
    return state


def test_figures():
    st_ = state_of(history())
    assert st_["status"] == "succeeded"
    assert money.refunded(st_) == 3000  # the failed refund is restored
    assert money.spend(st_) == 7000
    assert money.platform_fee(st_) == 1050
    assert money.expert_revenue(st_) == 5950
    assert money.payment_status(st_) == "partially_refunded"
    assert st_["card"] == {"brand": "mastercard", "last4": "4444", "exp_month": 8, "exp_year": 2030}
    assert st_["customer_email"] == "ana@example.com"


@settings(max_examples=200, deadline=None)
@given(st.permutations(list(range(8))), st.lists(st.integers(0, 7), max_size=8))
def test_any_order_and_duplicates_give_the_same_state(order, dupes):
    events = history()
    expected = state_of(events)
    shuffled = [events[i] for i in order] + [events[i] for i in dupes]
    assert state_of(shuffled) == expected


def test_disputes():
    base = history()[:3]
    lost = state_of(base + [s.stripe_event("charge.dispute.created", s.dispute("dp_1", CH, PI, 10000, "needs_response")),
                            s.stripe_event("charge.dispute.closed", s.dispute("dp_1", CH, PI, 10000, "lost"))])
    assert money.spend(lost) == 0 and money.payment_status(lost) == "disputed"
    won = state_of(base + [s.stripe_event("charge.dispute.closed", s.dispute("dp_1", CH, PI, 10000, "won")),
                           s.stripe_event("charge.dispute.created", s.dispute("dp_1", CH, PI, 10000, "needs_response"))])
    assert money.spend(won) == 10000 and money.payment_status(won) == "succeeded"


def test_full_refund_and_failed_payment():
    full = state_of(history()[:3] + [s.stripe_event("charge.refunded", s.charge(CH, PI, 10000, refunded=10000, refunds=[
        s.refund("re_9", CH, PI, 10000)]))])
    assert money.payment_status(full) == "refunded" and money.spend(full) == 0
    failed = state_of([s.stripe_event("payment_intent.payment_failed", s.payment_intent(PI, 10000, "requires_payment_method"))])
    assert money.spend(failed) == 0 and money.payment_status(failed) == "failed"


def test_meeting_json_metadata():
    meta = s.meeting_metadata("ex", "Guest@Example.com", "Guest", s.datetime(2026, 3, 1, 10, tzinfo=s.timezone.utc))
    hints = correlation(meta)
    assert hints["expert_id"] == "ex" and hints["customer_email"] == "guest@example.com"
    assert hints["booked_start"].isoformat() == "2026-03-01T10:00:00+00:00"
    assert correlation({"meeting": "{not json"}) == {"expert_id": None, "meeting_id": None,
                                                      "customer_email": None, "booked_start": None}


def test_unknown_types_are_ignored_and_garbage_refused():
    assert to_fact(s.stripe_event("customer.created", {"id": "cus_1", "object": "customer"})).type == "stripe.ignored"
    for bad in ({}, {"object": "event", "id": "evt"}, {"object": "event", "id": "e", "type": "x", "data": {}}):
        try:
            to_fact(bad)
        except ValueError:
            continue
        raise AssertionError(f"accepted {bad}")
