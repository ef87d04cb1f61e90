"""Payment facts into payments: each Stripe event once, joined into the one payment it names."""

from __future__ import annotations

from projections.forgetting import payment_refs, ref_of
from projections.payments import merge, observe
from projections.rules.bookings import erased_before
from projections.rules.model import Changes, Payment, View


def first_sighting(view: View, changes: Changes, fact) -> bool:
    """Each Stripe event id is applied once, however often it is delivered."""
    if fact.stripe_event_id in view.stripe_seen:
        changes.count("stripe.duplicate")
        return False
    view.stripe_seen.add(fact.stripe_event_id)
    changes.stripe_events[fact.stripe_event_id] = fact.stripe_event_type
    return True


def stripe_ignored(view: View, changes: Changes, fact) -> None:
    """A Stripe event that says nothing about money: remembered as applied, nothing else."""
    if first_sighting(view, changes, fact):
        changes.count("stripe.ignored")


def named(fact) -> set[str]:
    """Every id of the payment a fact names."""
    return {fact.payment_id} | fact.charge_ids() | {v for v in (fact.payment_intent_id, fact.checkout_session_id) if v}


def _other_intent(p: Payment, fact) -> bool:
    """A row of another payment intent is never joined: a charge belongs to one intent."""
    theirs = p.state.get("payment_intent_id") or p.payment_intent_id
    return bool(fact.payment_intent_id and theirs and theirs != fact.payment_intent_id)


def payment_observed(view: View, changes: Changes, fact) -> None:
    """The fact and every row it names are one payment: joined under the best id they know."""
    if not first_sighting(view, changes, fact):
        return
    if erased_before(view, fact.customer_email, fact.occurred_at) or (view.erased_refs and not (
            {("payment", ref) for ref in payment_refs(fact)} | {("meeting", ref_of(fact.expert_id, fact.meeting_id))}
    ).isdisjoint(view.erased_refs)):
        changes.skipped_erased += 1
        return
    known = [pid for pid in view.known_by(named(fact)) if not _other_intent(view.payments[pid], fact)]
    state = observe(None, fact)
    for pid in known:
        state = merge(state, view.payments[pid].state)
    target = state.get("payment_intent_id") or state.get("checkout_session_id") or fact.payment_id
    base = view.payments.get(target) or Payment(payment_id=target)
    changes.payments_before.setdefault(target, view.payments.get(target))
    for pid in known:
        if pid == target:
            continue
        changes.payments_before.setdefault(pid, view.payments[pid])
        del view.payments[pid]  # parked under a charge or session id, now joined
        changes.payments.discard(pid)
        changes.payments_removed.add(pid)
    row = base.with_state(state)
    view.keep_payment(row)
    changes.payments_removed.discard(target)
    changes.payments.add(target)
    changes.count(fact.stripe_event_type)
