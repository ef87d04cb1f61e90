"""The projection's rules: pure functions from (the stored state of the keys a batch touches,
the batch's decoded items) to changes. No SQL, no clock, no I/O: the store shell
(`projections.store`) loads the state and writes the changes, the projector
(`projections.projector`) holds the transaction and the offsets.

Every item type is registered once (`projections.rules.registry`: its rule, its stage, the keys
it names). A batch runs in stages, because some state can only be loaded once earlier rules have
run (which payments a new booking may own):

1. `apply_items`: booking events and payment facts, in arrival order (stage `FIRST`);
2. `linking.link`: payments tied to meetings by the contract's evidence;
3. `apply_items`: commands and communications (notes, field definitions and values, tags,
   archive, merges, messages and their delivery reports, logged contacts, erasures), in arrival order;
4. `summaries.update_summaries`: each changed meeting and payment folded into its customer.
"""

from __future__ import annotations

from typing import Any, Iterable

from projections.rules.model import Changes, View
from projections.rules.registry import FIRST, of


def apply_items(view: View, changes: Changes, items: Iterable[Any]) -> None:
    """Run each item's rule, in order."""
    for item in items:
        of(item.type).rule(view, changes, item)


def stages(items: Iterable[Any]) -> tuple[list[Any], list[Any]]:
    """The items that run before linking, and those that run after (commands)."""
    first, then = [], []
    for item in items:
        (first if of(item.type).stage == FIRST else then).append(item)
    return first, then
