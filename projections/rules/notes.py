"""Notes: the first add wins, a delete leaves a tombstone, an erased relationship takes none."""

from __future__ import annotations

from projections.forgetting import ref_of
from projections.rules.model import Changes, Note, View


def _erased(view: View, cmd) -> bool:
    """A note command on an erased customer id from up to the erasure (later: a new relationship)."""
    erased_at = view.erased_refs.get(("customer", ref_of(cmd.expert_id, cmd.customer_id)))
    return erased_at is not None and cmd.occurred_at <= erased_at


def note_added(view: View, changes: Changes, cmd) -> None:
    changes.count(cmd.type)
    if _erased(view, cmd):
        changes.skipped_erased += 1
        return
    if cmd.note_id in view.notes:  # a re-sent add never revives a deleted note (nor one a delete overtook)
        return
    view.notes[cmd.note_id] = Note(cmd.note_id, cmd.expert_id, cmd.customer_id, cmd.body, cmd.created_at)
    changes.notes.add(cmd.note_id)
    changes.notes_removed.discard(cmd.note_id)


def note_deleted(view: View, changes: Changes, cmd) -> None:
    """Only the owner's note is deleted: its text goes, its id stays as a tombstone."""
    changes.count(cmd.type)
    if _erased(view, cmd):
        changes.skipped_erased += 1
        return
    note = view.notes.get(cmd.note_id)
    if note is None:
        view.notes[cmd.note_id] = Note(cmd.note_id, cmd.expert_id, cmd.customer_id, "", cmd.occurred_at, True)
    elif (note.expert_id, note.customer_id) == (cmd.expert_id, cmd.customer_id):
        note.body, note.deleted = "", True
    else:
        return
    changes.notes.add(cmd.note_id)
    changes.notes_removed.discard(cmd.note_id)
