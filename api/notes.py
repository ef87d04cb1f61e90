"""Private notes of an expert on a customer: checks, the command, and the bounded wait for the
read model to show it. Shared by the JSON routes and the pages."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from api.commands import CommandBus
from projections import queries
from customers.commands import NoteAdded, NoteDeleted

CUSTOMER_ID = re.compile(r"c_[0-9a-f]{32}")
NOTE_ID = re.compile(r"n_[0-9a-f]{32}")


class NotFound(LookupError):
    """Unknown, someone else's, or deleted: the caller cannot tell which."""


@dataclass(frozen=True)
class Added:
    note_id: str
    row: Any | None  # the note as the read model shows it, or None when not visible yet


def valid_customer_id(customer_id: str) -> bool:
    return CUSTOMER_ID.fullmatch(customer_id) is not None


class Notes:
    def __init__(self, engine: AsyncEngine, bus: CommandBus, wait_seconds: float) -> None:
        self.engine, self.bus, self.wait_seconds = engine, bus, wait_seconds

    async def read(self, fn: Callable[[AsyncConnection], Awaitable[Any]]) -> Any:
        async with self.engine.connect() as conn:  # a fresh snapshot each time; rolled back on exit
            return await fn(conn)

    async def until(self, fn: Callable[[AsyncConnection], Awaitable[Any]], accept) -> Any:
        """Poll the read model until `accept(result)` or the wait runs out; the last result."""
        deadline = time.monotonic() + self.wait_seconds
        delay = 0.02
        while True:
            result = await self.read(fn)
            if accept(result) or time.monotonic() >= deadline:
                return result
            await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 0.2)

    async def customer(self, expert_id: str, customer_id: str):
        """The expert's customer's summary row, or None (unknown, someone else's, or a bad id)."""
        if not valid_customer_id(customer_id):
            return None
        return await self.read(lambda c: queries.customer_row(c, expert_id, customer_id))

    async def require_customer(self, expert_id: str, customer_id: str) -> None:
        if await self.customer(expert_id, customer_id) is None:
            raise NotFound(customer_id)

    async def find(self, expert_id: str, customer_id: str, note_id: str):
        """A live (not deleted) note of this expert on this customer."""
        if not valid_customer_id(customer_id) or NOTE_ID.fullmatch(note_id) is None:
            raise NotFound(note_id)
        row = await self.read(lambda c: queries.note(c, expert_id, customer_id, note_id))
        if row is None or row.deleted:
            raise NotFound(note_id)
        return row

    async def add(self, expert_id: str, customer_id: str, body: str, now: datetime) -> Added:
        row = await self.customer(expert_id, customer_id)
        if row is None:
            raise NotFound(customer_id)
        customer_id = row.customer_id  # a merged customer's note goes to the one it was merged into
        note_id = f"n_{uuid.uuid4().hex}"
        await self.bus.send(NoteAdded(command_id=uuid.uuid4().hex, occurred_at=now, note_id=note_id,
                                      expert_id=expert_id, customer_id=customer_id, body=body, created_at=now))
        row = await self.until(lambda c: queries.note(c, expert_id, customer_id, note_id),
                                lambda r: r is not None)
        return Added(note_id, row if row is not None and not row.deleted else None)

    async def delete(self, expert_id: str, customer_id: str, note_id: str, now: datetime) -> bool:
        """Ask for the note's deletion; whether the read model shows it gone within the wait."""
        found = await self.find(expert_id, customer_id, note_id)
        await self.bus.send(NoteDeleted(command_id=uuid.uuid4().hex, occurred_at=now, note_id=note_id,
                                        expert_id=expert_id, customer_id=found.customer_id))
        row = await self.until(lambda c: queries.note(c, expert_id, customer_id, note_id),
                                lambda r: r is None or r.deleted)
        return row is None or row.deleted
