"""`customer.erased`: the person leaves every expert's rows, and what named them is remembered.

The store loads what the version holds for the email's hash (customers, meetings, payments and
every id they are known by, the notes of those customers); the batch's own rows with that email
are found in the view. Everything goes; the ledger (`erasures`, `erased_refs`) keeps later
events and replays from bringing any of it back. A note written after the erasure is kept.
The expert's profile of the person (field values, tags, archive) goes too, and every
communication with them, with the delivery reports of the platform's messages.
"""

from __future__ import annotations

from customers.ids import email_hash
from projections import payments as money
from projections.forgetting import ref_of
from projections.rules.merges import dissolve
from projections.rules.model import Changes, Erasure, View


def customer_erased(view: View, changes: Changes, cmd) -> None:
    changes.count(cmd.type)
    h, when = cmd.email_hash, cmd.occurred_at
    changes.erasures[h] = max(when, changes.erasures.get(h, when))
    view.erased_emails[h] = changes.erasures[h]
    loaded = view.erasures.get(h) or Erasure(h)

    def hashed(email: str | None) -> bool:
        return bool(email) and email_hash(view.secret, email) == h

    meetings = set(loaded.meetings) | {k for k, m in view.meetings.items() if hashed(m.customer_email)}
    victims = set(loaded.customers) | {(view.meetings[k].expert_id, view.meetings[k].customer_id)
                                       for k in meetings if k in view.meetings and view.meetings[k].customer_id}
    dissolve(view, changes, victims)  # a merge with the person: the other keeps their own
    payments = {pid: set(ids) for pid, ids in loaded.payments.items()}
    for pid, p in view.payments.items():
        if hashed(p.hint_email) or p.owner in victims:
            payments.setdefault(pid, set()).update(money.ids(p.state, pid))

    refs = {("customer", ref_of(e, c)) for e, c in victims}
    refs |= {("meeting", ref_of(e, m)) for e, m in meetings}
    refs |= {("payment", ref_of(i)) for ids in payments.values() for i in ids if i}
    for ref in refs:
        changes.erased_refs[ref] = when
        view.erased_refs[ref] = when

    for key in meetings:
        view.meetings.pop(key, None)
        changes.meetings.discard(key)
        changes.meetings_before.pop(key, None)
        changes.meetings_removed.add(key)
    for pid in payments:
        view.payments.pop(pid, None)
        changes.payments.discard(pid)
        changes.payments_before.pop(pid, None)
        changes.payments_removed.add(pid)
        changes.aliases_removed.add(pid)
    for key in victims:
        view.summaries.pop(key, None)
        changes.summaries.discard(key)
        changes.recount.discard(key)
        changes.summaries_removed.add(key)
    profiles = set(loaded.profiles) | victims | {k for k, p in view.profiles.items() if p.email_hash == h}
    for key in profiles:  # what the expert kept on the person: field values, tags, archive
        view.profiles.pop(key, None)
        changes.profiles.discard(key)
        changes.profiles_removed.add(key)
    messages = {c.communication_id: c for c in loaded.communications}
    messages.update({i: c for i, c in view.communications.items()
                     if c.email_hash == h or (c.expert_id, c.customer_id) in victims})
    for mid, message in messages.items():  # what was sent or logged, and the delivery reports of it
        view.communications.pop(mid, None)
        changes.communications.discard(mid)
        changes.communications_removed.add(mid)
        if message.provider_message_id:  # and later reports of it stay out
            changes.erased_refs[("email", ref_of(message.provider_message_id))] = when
            view.erased_refs[("email", ref_of(message.provider_message_id))] = when
            view.reports.pop(message.provider_message_id, None)
            changes.reports.discard(message.provider_message_id)
            changes.reports_removed.add(message.provider_message_id)
    notes = {n.note_id: n for n in loaded.notes}
    notes.update({i: n for i, n in view.notes.items() if (n.expert_id, n.customer_id) in victims})
    for note_id, note in notes.items():
        if (note.expert_id, note.customer_id) in victims and note.created_at <= when:
            view.notes.pop(note_id, None)
            changes.notes.discard(note_id)
            changes.notes_removed.add(note_id)
