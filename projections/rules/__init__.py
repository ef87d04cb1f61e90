"""The projection's rules: pure functions from (the stored state of the keys a batch touches,
the batch's decoded items) to changes. No SQL, no clock, no I/O: the store shell
(`projections.store`) loads the state and writes the changes, the projector
(`projections.projector`) holds the transaction and the offsets.

One table, `RULES`, maps every item type to its rule. A batch runs in stages, because some
state can only be loaded once earlier rules have run (which payments a new booking may own):

1. `apply_items`: booking events and payment facts, in arrival order (`BEFORE_LINKING`);
2. `linking.link`: payments tied to meetings by the contract's evidence;
3. `apply_items`: commands and communications (notes, field definitions and values, tags,
   archive, merges, messages and their delivery reports, logged contacts, erasures), in arrival order;
4. `summaries.update_summaries`: each changed meeting and payment folded into its customer.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from projections.rules.bookings import booking
from projections.rules.communications import communication_logged, email_report, message_sent
from projections.rules.erasure import customer_erased
from projections.rules.merges import customer_merged, customer_unmerged
from projections.rules.model import Changes, View
from projections.rules.notes import note_added, note_deleted
from projections.rules.payment_facts import payment_observed, stripe_ignored
from projections.rules.profiles import archived, fields_defined, fields_set, tags_set

Rule = Callable[[View, Changes, Any], None]

RULES: dict[str, Rule] = {
    "booking.created": booking,
    "booking.rescheduled": booking,
    "booking.cancelled": booking,
    "booking.no_show": booking,
    "payment.observed": payment_observed,
    "stripe.ignored": stripe_ignored,
    "note.added": note_added,
    "note.deleted": note_deleted,
    "customer.erased": customer_erased,
    "fields.defined": fields_defined,
    "customer.fields_set": fields_set,
    "customer.tags_set": tags_set,
    "customer.archived": archived,
    "customer.unarchived": archived,
    "message.sent": message_sent,
    "email.report": email_report,
    "communication.logged": communication_logged,
    "customer.merged": customer_merged,
    "customer.unmerged": customer_unmerged,
}

BEFORE_LINKING = frozenset({"booking.created", "booking.rescheduled", "booking.cancelled", "booking.no_show",
                            "payment.observed", "stripe.ignored"})


def apply_items(view: View, changes: Changes, items: Iterable[Any]) -> None:
    """Run each item's rule, in order."""
    for item in items:
        rule = RULES.get(item.type)
        if rule is None:
            raise TypeError(f"no rule for {item.type!r}")
        rule(view, changes, item)


def stages(items: Iterable[Any]) -> tuple[list[Any], list[Any]]:
    """The items that run before linking, and those that run after (commands)."""
    first, then = [], []
    for item in items:
        (first if item.type in BEFORE_LINKING else then).append(item)
    return first, then
