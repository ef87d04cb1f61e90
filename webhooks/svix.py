"""The email provider's webhook signatures (Svix: `svix-id`, `svix-timestamp`, `svix-signature`),
checked with the `svix` package on the exact body, against every configured secret (rotation)."""

from __future__ import annotations

from typing import Mapping

from fastapi import HTTPException
from svix.webhooks import Webhook, WebhookVerificationError

HEADERS = ("svix-id", "svix-timestamp", "svix-signature")


def verify_svix(payload: bytes, headers: Mapping[str, str], secrets: list[str]) -> str:
    """The message id (`svix-id`) of a body signed with one of `secrets`; HTTPException(400) when the
    signature is missing, wrong or older than the package's tolerance (five minutes)."""
    given = {name: headers.get(name) for name in HEADERS}
    missing = [name for name, value in given.items() if not value]
    if missing:
        raise HTTPException(400, f"missing {', '.join(missing)} header")
    for secret in secrets:
        try:
            Webhook(secret).verify(payload, given)
            return given["svix-id"]
        except WebhookVerificationError:
            continue
    raise HTTPException(400, "signature verification failed")
