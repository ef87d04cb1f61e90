"""What the expert keeps on a customer: field definitions, field values, tags, archive.

Each command states a whole value (the definitions, the tags, archived or not) or, for field
values, the keys it sets (null clears one), so applying one twice changes nothing and the
newest in the expert's partition wins. A command on a customer id that an erasure removed, from
up to that erasure, changes nothing (a later command is a new relationship, as with notes).
Values of a definition that was removed are kept: defining the key again shows them again.
"""

from __future__ import annotations

from projections.forgetting import ref_of
from projections.rules.model import Changes, Profile, View
from projections.rules.status import status_of


def fields_defined(view: View, changes: Changes, cmd) -> None:
    changes.count(cmd.type)
    view.definitions[cmd.expert_id] = [d.model_dump(exclude_none=True) for d in cmd.definitions]
    view.definitions_at[cmd.expert_id] = cmd.occurred_at
    changes.definitions.add(cmd.expert_id)


def _profile(view: View, changes: Changes, cmd) -> Profile | None:
    """The profile a command on a customer changes; None when an erasure keeps it out."""
    changes.count(cmd.type)
    erased_at = view.erased_refs.get(("customer", ref_of(cmd.expert_id, cmd.customer_id)))
    if erased_at is not None and cmd.occurred_at <= erased_at:
        changes.skipped_erased += 1
        return None
    key = view.owner((cmd.expert_id, cmd.customer_id))  # a command on a merged customer: its survivor
    profile = view.profiles.get(key)
    if profile is None:
        profile = view.profiles[key] = Profile(cmd.expert_id, cmd.customer_id, cmd.email_hash)
    profile.updated_at = cmd.occurred_at if profile.updated_at is None else max(profile.updated_at, cmd.occurred_at)
    changes.profiles.add(key)
    changes.profiles_removed.discard(key)
    return profile


def fields_set(view: View, changes: Changes, cmd) -> None:
    profile = _profile(view, changes, cmd)
    if profile is None:
        return
    values = dict(profile.fields)
    for key, value in cmd.values.items():
        if value is None:
            values.pop(key, None)
        else:
            values[key] = value
    profile.fields = dict(sorted(values.items()))


def tags_set(view: View, changes: Changes, cmd) -> None:
    profile = _profile(view, changes, cmd)
    if profile is not None:
        profile.tags = sorted(set(cmd.tags))


def archived(view: View, changes: Changes, cmd) -> None:
    profile = _profile(view, changes, cmd)
    if profile is not None:
        profile.archived = cmd.type == "customer.archived"


def onto_summaries(view: View, changes: Changes) -> None:
    """Copy what the list filters on from each profile into the customer's summary row, and
    settle the customer's status (`projections.rules.status`) as of the view's watermark.

    Run last in a batch (and a sweep), over every summary the view holds: the store loads the
    profiles of those customers (and of the customers merged into them), so a summary created, recounted or loaded in this batch shows
    its profile whatever order the profile's commands and the bookings came in.
    """
    for key, summary in view.summaries.items():
        if key in changes.summaries_removed:
            continue
        profile = view.profiles.get(key)
        archived = profile.archived if profile is not None else False
        contact = profile.last_contact_at if profile is not None else None
        for member in view.members(key) if view.merges else ():  # the newest contact of everyone merged in
            theirs = view.profiles.get((key[0], member))
            if theirs is not None and theirs.last_contact_at is not None and (
                    contact is None or theirs.last_contact_at > contact):
                contact = theirs.last_contact_at
        if (summary.archived, summary.last_contact_at) != (archived, contact):
            summary.archived, summary.last_contact_at = archived, contact
            changes.summaries.add(key)
        status = status_of(summary, view.as_of, view.lifecycle)
        if summary.status != status:
            summary.status = status
            changes.summaries.add(key)
