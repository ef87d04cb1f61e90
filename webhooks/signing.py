"""Stripe's webhook signature scheme, for senders we control (tests, demo, benchmarks)."""

from __future__ import annotations

import hashlib
import hmac
import time


def signature_header(payload: bytes, secrets: str | list[str], timestamp: int | None = None) -> str:
    """`t=<unix>,v1=<hex>[,v1=...]`: HMAC-SHA256 of `"{t}.{payload}"` with each secret."""
    ts = int(time.time()) if timestamp is None else timestamp
    secrets = [secrets] if isinstance(secrets, str) else secrets
    signed = f"{ts}.".encode() + payload
    parts = [f"t={ts}"] + [f"v1={hmac.new(s.encode(), signed, hashlib.sha256).hexdigest()}" for s in secrets]
    return ",".join(parts)
