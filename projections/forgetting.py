"""The names under which the erasure ledger (`erased_refs`) remembers what it removed.

The `customer.erased` rule itself is `projections.rules.erasure`.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache


@lru_cache(maxsize=1 << 16)  # a batch names the same things in its loads and its rules
def ref_of(*ids: str | None) -> str:
    """The `erased_refs.ref` of a thing named by these ids: SHA-256 of their JSON array.

    Unambiguous whatever characters the ids hold (`("a/b", "c")` and `("a", "b/c")` differ).
    """
    return hashlib.sha256(json.dumps(list(ids)).encode()).hexdigest()


def payment_refs(fact) -> set[str]:
    """The refs of every id a payment fact names its payment by."""
    named = {fact.payment_id, fact.payment_intent_id, fact.checkout_session_id} | fact.charge_ids()
    return {ref_of(i) for i in named if i}
