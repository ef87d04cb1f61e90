"""Opaque identifiers derived with a key: stable across replays, never the email itself."""

from __future__ import annotations

import hashlib
import hmac
from functools import lru_cache

from customers.events import normalise_email


@lru_cache(maxsize=1 << 16)  # a batch names the same people many times
def customer_id(secret: str, expert_id: str, email: str) -> str:
    """The customer's id for one expert: a keyed hash of (expert, normalised email)."""
    message = f"customer\x00{expert_id}\x00{normalise_email(email)}".encode()
    return "c_" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()[:32]


@lru_cache(maxsize=1 << 16)
def email_hash(secret: str, email: str) -> str:
    """A keyed hash of an email for logs and the erasure ledger."""
    message = f"email\x00{normalise_email(email)}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
