"""The pure payment rules, case by case, each against the Stripe behaviour it follows; then whole
generated histories against their own truth, in any order, duplicated, through any subscription."""

import json
import random
from datetime import datetime, timezone

from hypothesis import HealthCheck, given, settings, strategies as st

from testing import samples as s
from customers.facts import PaymentObserved
from projections import payments as money
from customers.stripe_facts import correlation, to_fact
from tests import stripe_histories as histories

PI, CH = "pi_1", "ch_1"
META = {"expert_id": "ex", "meeting_id": "m1", "customer_email": "Ana@Example.com"}
T = 1_767_000_000


def ev(kind, obj, at):
    return s.stripe_event(kind, obj, created=T + at)


def charge(ch=CH, *, amount=10000, captured=True, amount_captured=None, refunded=0, status="succeeded",
           last4="4242", brand="visa", fee=1500, listed=None):
    obj = s.charge(ch, PI, amount, fee=fee, status=status, brand=brand, last4=last4, refunded=refunded,
                   refunds=listed)
    obj.update(captured=captured, amount_captured=amount if amount_captured is None and captured else
               (amount_captured or 0))
    if listed is None:
        obj.pop("refunds")
    return obj


def intent(status, *, received=0, latest=CH):
    obj = s.payment_intent(PI, 10000, status, metadata=META, fee=1500, charge=latest)
    obj["amount_received"] = received
    return obj


def refund(rid, amount, status, at, *, pi=PI):
    obj = s.refund(rid, CH, pi, amount, status, created=T + at)
    if pi is None:
        obj.pop("payment_intent")
    return obj


def state_of(events):
    state = None
    for e in events:
        fact = to_fact(e)
        if isinstance(fact, PaymentObserved):
            state = money.observe(state, fact)
    return state


def paid(at=0):
    """A card payment captured at once: the charge and the intent both say so."""
    return [ev("charge.succeeded", charge(), at), ev("payment_intent.succeeded", intent("succeeded", received=10000), at)]


def figures(state):
    return {"spend": money.spend(state), "refunded": money.refunded(state), "revenue": money.expert_revenue(state),
            "status": money.payment_status(state)}


# --- 1. authorisations and manual capture -------------------------------------------------------


def test_an_uncaptured_charge_is_a_hold_not_money():
    # charge.succeeded with captured=false: the card is authorised, nothing is taken yet
    held = state_of([ev("charge.succeeded", charge(captured=False), 0),
                     ev("payment_intent.amount_capturable_updated", intent("requires_capture"), 0)])
    assert figures(held) == {"spend": 0, "refunded": 0, "revenue": 0, "status": "pending"}
    assert money.lifecycle(held) == "requires_capture"


def test_a_partial_capture_counts_what_was_captured():
    # charge.captured carries amount_captured; the rest of the hold is released, never money
    events = [ev("charge.succeeded", charge(captured=False), 0),
              ev("charge.captured", charge(amount_captured=6000), 60)]
    state = state_of(events)
    assert money.spend(state) == 6000 and money.payment_status(state) == "succeeded"
    # the intent alone says the same through amount_received
    alone = state_of([ev("charge.succeeded", charge(captured=False), 0),
                      ev("payment_intent.succeeded", intent("succeeded", received=6000), 60)])
    assert money.spend(alone) == 6000


def test_a_released_hold_counts_nothing_and_shows_failed():
    # payment_intent.canceled on an uncaptured charge: Stripe releases it (and marks the charge refunded)
    cancelled = state_of([ev("charge.succeeded", charge(captured=False), 0),
                          ev("payment_intent.canceled", intent("canceled"), 60),
                          ev("charge.refunded", charge(captured=False, refunded=10000), 60)])
    assert figures(cancelled) == {"spend": 0, "refunded": 0, "revenue": 0, "status": "failed"}
    # charge.expired: the authorisation lapsed
    expired = state_of([ev("charge.succeeded", charge(captured=False), 0), ev("charge.expired", charge(captured=False), 60)])
    assert figures(expired)["status"] == "failed" and money.spend(expired) == 0


def test_requires_action_is_a_state_not_an_error():
    # payment_intent.requires_action: 3-D Secure pending; nothing is paid
    state = state_of([ev("payment_intent.requires_action", intent("requires_action", latest=None), 0)])
    assert figures(state) == {"spend": 0, "refunded": 0, "revenue": 0, "status": "pending"}


# --- 2. retried payments ------------------------------------------------------------------------


def test_the_charge_that_succeeded_is_the_payment_and_shows_its_card():
    # a declined card, then another card that succeeded: one intent, two charges
    events = [ev("charge.failed", charge("ch_declined", status="failed", captured=False, last4="0002"), 0),
              ev("payment_intent.payment_failed", intent("requires_payment_method", latest="ch_declined"), 0),
              ev("charge.succeeded", charge("ch_zzz_ok", last4="4444", brand="mastercard"), 60),
              ev("payment_intent.succeeded", intent("succeeded", received=10000, latest="ch_zzz_ok"), 60)]
    for order in (events, events[::-1]):
        state = state_of(order)
        assert money.money_charge(state) == "ch_zzz_ok"
        assert money.card(state)["last4"] == "4444"
        assert figures(state)["status"] == "succeeded" and money.spend(state) == 10000


def test_a_refund_naming_only_the_charge_is_the_payment_s_refund():
    # refunds, disputes and fee refunds may name the charge alone; they belong to its intent
    state = state_of(paid() + [ev("refund.created", refund("re_1", 4000, "succeeded", 120, pi=None), 120)])
    assert money.refunded(state) == 4000 and money.payment_status(state) == "partially_refunded"


def test_a_payment_failed_event_alone_shows_failed():
    # payment_intent.payment_failed: the intent is back to requires_payment_method after a decline
    state = state_of([ev("payment_intent.payment_failed", intent("requires_payment_method", latest="ch_d"), 0)])
    assert figures(state) == {"spend": 0, "refunded": 0, "revenue": 0, "status": "failed"}


def test_a_new_attempt_after_a_decline_is_pending_not_failed():
    # the customer is asked to authenticate again after a decline: still in progress
    state = state_of([ev("charge.failed", charge("ch_d", status="failed", captured=False), 0),
                      ev("payment_intent.requires_action", intent("requires_action", latest="ch_d"), 60)])
    assert money.payment_status(state) == "pending"
    declined = state_of([ev("payment_intent.requires_action", intent("requires_action", latest=None), 0),
                         ev("charge.failed", charge("ch_d", status="failed", captured=False), 60)])
    assert money.payment_status(declined) == "failed"


# --- 3. refund feeds that are not itemised -------------------------------------------------------


def test_charge_totals_and_itemised_refunds_agree_in_any_order():
    # charge.refunded (no list since 2022-11-15) tells 7000 in total; one refund.updated names 3000 of it
    events = paid() + [ev("charge.refunded", charge(refunded=3000), 120),
                       ev("charge.refunded", charge(refunded=7000), 180),
                       ev("charge.refund.updated", refund("re_2", 4000, "succeeded", 180), 240)]
    for order in (events, events[::-1], events[2:] + events[:2]):
        assert money.refunded(state_of(order)) == 7000  # never forgets the refund known only from the total


def test_a_refund_that_fails_after_the_total_is_restored():
    # the charge's total counted it; refund.failed (or refund.updated, or charge.refund.updated) gives it back
    base = paid() + [ev("charge.refunded", charge(refunded=3000), 120),
                     ev("charge.refunded", charge(refunded=5000), 180)]
    for kind in ("refund.failed", "refund.updated", "charge.refund.updated"):
        state = state_of(base + [ev(kind, refund("re_2", 2000, "failed", 180), 600)])
        assert money.refunded(state) == 3000, kind
        assert money.spend(state) == 7000


def test_a_refund_failed_before_a_later_refund_is_not_taken_off_twice():
    # 3000 then 2000 (fails) then 1000: the last total (4000) already left the failed one out
    events = paid() + [ev("charge.refunded", charge(refunded=3000), 120),
                       ev("charge.refunded", charge(refunded=5000), 180),
                       ev("refund.failed", refund("re_b", 2000, "failed", 180), 240),
                       ev("charge.refunded", charge(refunded=4000), 300)]
    for order in (events, events[::-1]):
        assert money.refunded(state_of(order)) == 4000


def test_a_cancelled_refund_is_restored():
    state = state_of(paid() + [ev("refund.created", refund("re_1", 5000, "pending", 120), 120),
                               ev("refund.updated", refund("re_1", 5000, "canceled", 120), 180)])
    assert money.refunded(state) == 0 and money.payment_status(state) == "succeeded"


def test_refunds_known_only_by_item_without_any_total():
    state = state_of(paid() + [ev("refund.created", refund("re_1", 2500, "pending", 120), 120)])
    assert money.refunded(state) == 2500  # pending refunds are already taken from the charge
    assert not money.undecided(state)


def test_a_refund_whose_charge_was_never_seen_is_undecided():
    # the events cannot tell what else the charge had refunded: ask Stripe (or reconcile)
    state = state_of([ev("charge.refund.updated", refund("re_1", 2500, "succeeded", 120), 120),
                      ev("payment_intent.succeeded", intent("succeeded", received=10000), 0)])
    assert money.undecided(state) and money.refunded(state) == 2500


# --- 4. disputes --------------------------------------------------------------------------------


def dispute(status, amount=10000, at=300):
    kind = "charge.dispute.closed" if status in ("won", "lost", "warning_closed", "prevented") else "charge.dispute.created"
    return ev(kind, s.dispute("dp_1", CH, PI, amount, status), at)


def test_inquiries_never_take_money():
    for path in (["warning_needs_response"], ["warning_needs_response", "warning_under_review", "warning_closed"]):
        state = state_of(paid() + [dispute(st_, at=300 + i) for i, st_ in enumerate(path)])
        assert figures(state) == {"spend": 10000, "refunded": 0, "revenue": 8500, "status": "succeeded"}, path


def test_a_chargeback_is_disputed_while_money_is_at_stake():
    for status in ("needs_response", "under_review"):
        state = state_of(paid() + [dispute(status)])
        assert money.payment_status(state) == "disputed" and money.spend(state) == 10000


def test_won_and_prevented_return_nothing_lost_takes_the_disputed_amount():
    won = state_of(paid() + [dispute("won", at=400), dispute("needs_response")])
    assert figures(won) == {"spend": 10000, "refunded": 0, "revenue": 8500, "status": "succeeded"}
    prevented = state_of(paid() + [dispute("needs_response"), dispute("prevented", at=400)])
    assert money.payment_status(prevented) == "succeeded"
    lost = state_of(paid() + [dispute("lost", amount=6000, at=400), dispute("needs_response", amount=6000)])
    assert money.spend(lost) == 4000 and money.payment_status(lost) == "disputed"


# --- application fees ---------------------------------------------------------------------------


def test_expert_revenue_is_spend_less_the_net_application_fee():
    state = state_of(paid() + [ev("refund.created", refund("re_1", 5000, "succeeded", 120), 120),
                               ev("application_fee.refunded", s.application_fee("fee_1", CH, 1500, 300), 180),
                               ev("application_fee.refunded", s.application_fee("fee_1", CH, 1500, 750), 240)])
    assert money.platform_fee(state) == 750
    assert money.expert_revenue(state) == 5000 - 750


# --- 6. times ------------------------------------------------------------------------------------


def test_a_local_booked_start_is_read_in_the_metadata_timezone():
    meta = {"meeting": '{"expert": "ex", "guest": "a@example.com", "start": "2026-07-01T10:00:00", '
                       '"timezone": "Europe/Lisbon"}'}
    assert correlation(meta)["booked_start"] == datetime(2026, 7, 1, 9, tzinfo=timezone.utc)
    offset = {"meeting": '{"expert": "ex", "start": "2026-07-01T10:00:00+02:00", "timezone": "Europe/Lisbon"}'}
    assert correlation(offset)["booked_start"] == datetime(2026, 7, 1, 8, tzinfo=timezone.utc)
    unknown = {"meeting": '{"expert": "ex", "start": "2026-07-01T10:00:00", "timezone": "Mars/Olympus"}'}
    assert correlation(unknown)["booked_start"] == datetime(2026, 7, 1, 10, tzinfo=timezone.utc)


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


def test_facts_of_the_first_release_still_apply():
    # the retained customer-activity topic holds facts with flat figures
    old = {"type": "payment.observed", "stripe_event_id": "evt_old", "stripe_event_type": "charge.succeeded",
           "occurred_at": "2026-01-01T00:00:00Z", "payment_id": PI, "payment_intent_id": PI, "charge_id": CH,
           "status": "succeeded", "amount": 10000, "captured": 10000, "currency": "eur", "application_fee": 1500,
           "charge_amount_refunded": 2000, "card": {"brand": "visa", "last4": "4242"}}
    state = money.observe(None, PaymentObserved.model_validate(old))
    assert figures(state) == {"spend": 8000, "refunded": 2000, "revenue": 6500, "status": "partially_refunded"}


# --- whole histories ------------------------------------------------------------------------------


def _fold(events):
    return state_of(events)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), data=st.data())
def test_generated_histories_match_their_truth_in_any_order_and_subscription(seed, data):
    h = histories.generate(random.Random(seed), "pi_h", metadata=META)
    kinds = histories.all_types(h)
    if data.draw(st.booleans(), label="every type"):
        types = set(kinds)
    else:
        types = set(data.draw(st.lists(st.sampled_from(kinds), unique=True, min_size=1), label="subscribed"))
    events = histories.events_of(h, types)
    copies = data.draw(st.lists(st.sampled_from(events), max_size=len(events)), label="duplicates") if events else []
    delivered = data.draw(st.permutations(events + copies), label="order")
    state = _fold(delivered) or {}
    truth = histories.expectation(h)
    assert state == (_fold(events) or {}), "order and duplicates change nothing"
    assert json.dumps(state) == json.dumps(_fold(events) or {}), "not even the stored JSON's key order"
    if h.knows_money(types):
        assert money.spend(state) == truth["spend"]
        assert money.refunded(state) == truth["refunded"]
        assert money.expert_revenue(state) == truth["revenue"]
        card = money.card(state) if h.outcome == "captured" else None
        assert card is None or {k: card[k] for k in ("brand", "last4")} == truth["card"], "never another charge's card"
    if h.knows_status(types):
        assert money.payment_status(state) == truth["status"]
    if h.knows_card(types):
        assert {k: money.card(state)[k] for k in ("brand", "last4")} == truth["card"]


def test_every_kind_of_history_is_generated():
    seen = {"outcomes": set(), "refund ends": set(), "dispute ends": set(), "manual": set()}
    for seed in range(400):
        h = histories.generate(random.Random(seed), "pi_x")
        seen["outcomes"].add(h.outcome)
        seen["manual"].add((h.manual, h.captured == h.amount))
        seen["refund ends"] |= {r.status for r in h.refunds}
        if h.dispute:
            seen["dispute ends"].add(h.dispute[2][-1][0])
    assert seen["outcomes"] == {"captured", "released", "declined", "pending"}
    assert seen["refund ends"] == {"succeeded", "pending", "failed", "canceled"}
    assert seen["dispute ends"] >= {"warning_needs_response", "warning_closed", "won", "lost", "prevented", "under_review"}
    assert (True, False) in seen["manual"]  # partial captures
