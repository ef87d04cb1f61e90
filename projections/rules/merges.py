"""Merging one customer into another of the same expert, and splitting them again. Pure.

One person who booked with two emails is two customers. `customer.merged` makes the duplicate
count in the survivor: the duplicate's own rows (appointments, payments, notes, communications,
its profile) keep its id, and a merge record says whose figures they count in
(`View.owner`), so the survivor's summary is recounted over both and the duplicate's row leaves
the list. The survivor's profile takes the duplicate's tags and the field values it lacks (the
survivor's own win a conflict); the record keeps what was added. Later events for either email
land on the survivor: a booking keeps its email's own id and counts for the survivor.

`customer.unmerged` removes the record, takes off the survivor's profile what the merge added and
is still as added, and recounts both: the two are as they would be had they never been merged.
Either command is a no-op when the customers are not (or no longer) as it expects.

An erasure of either person dissolves the merge first (`dissolve`): the other keeps their own.
"""

from __future__ import annotations

from projections.forgetting import ref_of
from projections.rules.model import Changes, Key, Merge, Profile, View


def _erased(view: View, expert: str, customer: str, when) -> bool:
    erased_at = view.erased_refs.get(("customer", ref_of(expert, customer)))
    return erased_at is not None and when <= erased_at


def customer_merged(view: View, changes: Changes, cmd) -> None:
    changes.count(cmd.type)
    e = cmd.expert_id
    survivor, duplicate = (e, cmd.customer_id), (e, cmd.duplicate)
    # the door checked that both are the expert's customers; here only what may have changed since
    # counts (a replay may fold the merge before the bookings it names: they count for the survivor)
    if (survivor == duplicate or survivor in view.merges or duplicate in view.merges or view.members(duplicate)
            or _erased(view, e, cmd.customer_id, cmd.occurred_at) or _erased(view, e, cmd.duplicate, cmd.occurred_at)):
        changes.count("customer.merged.refused")
        return
    kept = view.profiles.get(survivor)
    theirs = view.profiles.get(duplicate)
    added: dict = {"tags": [], "fields": {}}
    if kept is None:  # the commands on the duplicate go to this profile from now on
        kept = view.profiles[survivor] = Profile(e, cmd.customer_id, cmd.survivor_email_hash,
                                                 updated_at=cmd.occurred_at)
        changes.profiles.add(survivor)
        changes.profiles_removed.discard(survivor)
    if theirs is not None and (theirs.tags or theirs.fields):
        added["tags"] = sorted(set(theirs.tags) - set(kept.tags))
        added["fields"] = {k: v for k, v in sorted(theirs.fields.items()) if k not in kept.fields}
        kept.tags = sorted(set(kept.tags) | set(added["tags"]))
        kept.fields = dict(sorted({**kept.fields, **added["fields"]}.items()))
        kept.updated_at = cmd.occurred_at if kept.updated_at is None else max(kept.updated_at, cmd.occurred_at)
        changes.profiles.add(survivor)
        changes.profiles_removed.discard(survivor)
    view.merges[duplicate] = Merge(e, cmd.duplicate, cmd.customer_id, cmd.email_hash, cmd.occurred_at, added)
    changes.merges.add(duplicate)
    changes.merges_removed.discard(duplicate)
    view.summaries.pop(duplicate, None)
    changes.summaries.discard(duplicate)
    changes.summaries_removed.add(duplicate)
    changes.recount.add(survivor)


def _take_added(view: View, changes: Changes, survivor: Key, merge: Merge) -> None:
    """Off the survivor's profile: the tags and field values the merge added, where still as added."""
    kept = view.profiles.get(survivor)
    if kept is None:
        return
    tags = set(merge.added.get("tags") or ())
    fields = merge.added.get("fields") or {}
    kept.tags = [t for t in kept.tags if t not in tags]
    kept.fields = {k: v for k, v in kept.fields.items() if not (k in fields and fields[k] == v)}
    changes.profiles.add(survivor)


def _split(view: View, changes: Changes, duplicate: Key) -> Key:
    merge = view.merges.pop(duplicate)
    survivor = (duplicate[0], merge.survivor_id)
    changes.merges.discard(duplicate)
    changes.merges_removed.add(duplicate)
    _take_added(view, changes, survivor, merge)
    return survivor


def customer_unmerged(view: View, changes: Changes, cmd) -> None:
    changes.count(cmd.type)
    duplicate = (cmd.expert_id, cmd.duplicate)
    merge = view.merges.get(duplicate)
    if merge is None or merge.survivor_id != cmd.customer_id:
        changes.count("customer.unmerged.refused")
        return
    survivor = _split(view, changes, duplicate)
    changes.summaries_removed.discard(duplicate)
    changes.recount |= {survivor, duplicate}


def dissolve(view: View, changes: Changes, erased: set[Key]) -> None:
    """Before an erasure removes the customers `erased`: a merge of one of them into another is
    split (the survivor loses what came from them and is recounted), and the customers merged
    into one of them stand alone again."""
    for key in sorted(erased):
        for duplicate in ([key] if key in view.merges else []) + [(key[0], m) for m in view.members(key)]:
            survivor = _split(view, changes, duplicate)
            changes.recount |= {k for k in (survivor, duplicate) if k not in erased}
