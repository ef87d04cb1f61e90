"""Booking events into meetings (the per-meeting registers live in `projections.meetings`)."""

from __future__ import annotations

from customers.ids import customer_id as derive_customer_id
from customers.ids import email_hash
from projections.forgetting import ref_of
from projections.meetings import Register, apply_register
from projections.rules.model import Changes, View


def erased_before(view: View, email: str | None, occurred_at) -> bool:
    """Anything that happened up to a person's erasure stays out, replays included."""
    if not (email and view.erased_emails):
        return False
    when = view.erased_emails.get(email_hash(view.secret, email))
    return when is not None and occurred_at <= when


def booking(register: Register, *, creates: bool = False):
    """The rule of one booking type: the meeting's registers take the event through `register`
    (`projections.meetings`). A type that `creates` the meeting (`booking.created`) names its
    customer by email: the customer's id is derived, and a person erased after it is kept out."""
    def rule(view: View, changes: Changes, event) -> None:
        key = (event.expert_id, event.meeting_id)
        if view.erased_refs and ("meeting", ref_of(event.expert_id, event.meeting_id)) in view.erased_refs:
            changes.skipped_erased += 1
            return
        cid = None
        if creates:
            if erased_before(view, event.customer.email, event.occurred_at):
                changes.skipped_erased += 1
                return
            cid = derive_customer_id(view.secret, event.expert_id, event.customer.email)
        current = view.meetings.get(key)
        updated = apply_register(register, current, event, cid)
        changes.count(event.type)
        if updated == current:
            return
        changes.meetings_before.setdefault(key, current)
        view.meetings[key] = updated
        changes.meetings.add(key)
    rule.__name__ = rule.__qualname__ = f"booking_{register.__name__}"
    return rule
