"""Erasure of one person: the ledger entry and the command every version applies."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

from sqlalchemy.ext.asyncio import AsyncEngine

from typing import Awaitable, Callable

from customers.ids import email_hash
from customers.settings import Settings
from customers.commands import CustomerErased
from projections.db import upsert
from projections.tables import erasures


async def erase(settings: Settings, engine: AsyncEngine, send: Callable[[CustomerErased], Awaitable[None]],
                email: str) -> CustomerErased:
    """Record the erasure in the ledger, then publish it for the projection (and future replays).

    The ledger write comes first so that no event of that person applied from now on, by the
    worker or a replay, can bring them back, even before the command is projected.
    """
    now = datetime.now(timezone.utc)
    command = CustomerErased(command_id=uuid.uuid4().hex, occurred_at=now,
                             email_hash=email_hash(settings.customer_id_secret, email))
    async with engine.begin() as conn:
        await upsert(conn, erasures, [{"email_hash": command.email_hash, "erased_at": now}], ["email_hash"])
    await send(command)
    return command
