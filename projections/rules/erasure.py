"""`customer.erased`: the person leaves every expert's rows, and what named them is remembered.

The store loads what the version holds for the email's hash (customers, meetings, payments and
every id they are known by, the notes of those customers); the batch's own rows with that email
are found in the view. Everything goes; the ledger (`erasures`, `erased_refs`) keeps later
events and replays from bringing any of it back. A note written after the erasure is kept.
The expert's profile of the person (field values, tags, archive) goes too.
"""

from __future__ import annotations

from customers.ids import email_hash
from projections import payments as money
from projections.forgetting import ref_of
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
    notes = {n.note_id: n for n in loaded.notes}
    notes.update({i: n for i, n in view.notes.items() if (n.expert_id, n.customer_id) in victims})
    for note_id, note in notes.items():
        if (note.expert_id, note.customer_id) in victims and note.created_at <= when:
            view.notes.pop(note_id, None)
            changes.notes.discard(note_id)
            changes.notes_removed.add(note_id)
