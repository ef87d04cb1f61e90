"""What the expert keeps on a customer (custom fields, tags, archive) and the expert's field
definitions: checks, the commands, and the bounded wait for the read model to show them.
Shared by the JSON routes and the pages, like `api.notes`."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from api.notes import Notes, NotFound
from projections import queries
from customers.bodies import shorten
from customers.commands import (MAX_FIELDS, CommunicationLogged, CustomerArchived, CustomerFieldsSet,
                                  CustomerTagsSet, CustomerUnarchived, FieldDefinition, FieldsDefined, field_value,
                                  normalise_tags)


class Invalid(ValueError):
    """A value that does not fit: `field` names where, the message says why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


def checked_values(definitions: list[dict[str, Any]], values: dict[str, Any]) -> dict[str, Any]:
    """The values as they will be stored, each checked against its definition; `Invalid` names
    the first that does not fit (an unknown key included). `None` clears a key."""
    if len(values) > MAX_FIELDS:
        raise Invalid("fields", f"at most {MAX_FIELDS} values")
    by_key = {d["key"]: FieldDefinition(**d) for d in definitions}
    out: dict[str, Any] = {}
    for key, value in values.items():
        definition = by_key.get(key)
        if definition is None:
            raise Invalid(f"fields.{shorten(key)}", "no such custom field")
        if value is None:
            out[key] = None
            continue
        try:
            out[key] = field_value(definition, value)
        except ValueError as exc:
            raise Invalid(f"fields.{key}", str(exc)) from exc
    return out


def checked_tags(tags: list[str]) -> list[str]:
    try:
        return normalise_tags(tags)
    except ValueError as exc:
        raise Invalid("tags", str(exc)) from exc


class Profiles:
    def __init__(self, notes: Notes) -> None:
        self.notes = notes  # the shared read/wait helpers and the command bus

    async def definitions(self, expert_id: str) -> list[dict[str, Any]]:
        return await self.notes.read(lambda c: queries.field_definitions(c, expert_id))

    async def define(self, expert_id: str, definitions: list[FieldDefinition], now: datetime) -> bool:
        """Replace the expert's field definitions; whether the read model shows them within the wait."""
        cmd = FieldsDefined(command_id=uuid.uuid4().hex, occurred_at=now, expert_id=expert_id,
                            definitions=definitions)
        await self.notes.bus.send(cmd)
        want = [d.model_dump(exclude_none=True) for d in cmd.definitions]
        found = await self.notes.until(lambda c: queries.field_definitions(c, expert_id), lambda r: r == want)
        return found == want

    async def _customer(self, expert_id: str, customer_id: str):
        row = await self.notes.customer(expert_id, customer_id)
        if row is None:
            raise NotFound(customer_id)
        return row

    async def _profile(self, expert_id: str, customer_id: str, accept) -> bool:
        found = await self.notes.until(
            lambda c: queries.profiles_of(c, expert_id, [customer_id]), lambda r: accept(r.get(customer_id)))
        return accept(found.get(customer_id))

    async def set_fields(self, expert_id: str, customer_id: str, values: dict[str, Any], now: datetime) -> bool:
        row = await self._customer(expert_id, customer_id)
        values = checked_values(await self.definitions(expert_id), values)
        try:
            cmd = CustomerFieldsSet(command_id=uuid.uuid4().hex, occurred_at=now, expert_id=expert_id,
                                    customer_id=row.customer_id, email_hash=row.email_hash, values=values)
        except ValidationError as exc:  # a key the contract cannot carry
            raise Invalid("fields", exc.errors()[0]["msg"]) from exc
        await self.notes.bus.send(cmd)

        def shown(p) -> bool:
            stored = p.fields if p is not None else {}
            return all(stored.get(k) == v if v is not None else k not in stored for k, v in cmd.values.items())
        return await self._profile(expert_id, customer_id, shown)

    async def set_tags(self, expert_id: str, customer_id: str, tags: list[str], now: datetime) -> bool:
        row = await self._customer(expert_id, customer_id)
        cmd = CustomerTagsSet(command_id=uuid.uuid4().hex, occurred_at=now, expert_id=expert_id,
                              customer_id=row.customer_id, email_hash=row.email_hash, tags=checked_tags(tags))
        await self.notes.bus.send(cmd)
        return await self._profile(expert_id, customer_id,
                                   lambda p: (p.tags if p is not None else []) == cmd.tags)

    async def set_archived(self, expert_id: str, customer_id: str, archived: bool, now: datetime) -> bool:
        row = await self._customer(expert_id, customer_id)
        kind = CustomerArchived if archived else CustomerUnarchived
        await self.notes.bus.send(kind(command_id=uuid.uuid4().hex, occurred_at=now, expert_id=expert_id,
                                       customer_id=row.customer_id, email_hash=row.email_hash))
        return await self._profile(expert_id, customer_id,
                                   lambda p: (p.archived if p is not None else False) == archived)

    async def log_communication(self, expert_id: str, customer_id: str, channel: str, summary: str, at: datetime,
                                now: datetime) -> tuple[str, Any]:
        """Record a contact the expert had; (its id, its row once the read model shows it, else None)."""
        row = await self._customer(expert_id, customer_id)
        cid = f"cm_{uuid.uuid4().hex}"
        await self.notes.bus.send(CommunicationLogged(
            command_id=uuid.uuid4().hex, occurred_at=now, expert_id=expert_id, customer_id=row.customer_id,
            email_hash=row.email_hash, communication_id=cid, channel=channel, summary=summary, at=at))
        found = await self.notes.until(lambda c: queries.communication(c, expert_id, customer_id, cid),
                                        lambda r: r is not None)
        return cid, found

    async def communication(self, expert_id: str, customer_id: str, communication_id: str):
        await self._customer(expert_id, customer_id)
        found = await self.notes.read(lambda c: queries.communication(c, expert_id, customer_id, communication_id))
        if found is None:
            raise NotFound(communication_id)
        return found
