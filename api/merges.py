"""Merging an expert's duplicate customers, and splitting them again: checked against the read
model at the door, published as commands on `customer-commands`, projected by the worker."""

from __future__ import annotations

import uuid
from datetime import datetime

from api.notes import NotFound, Notes, valid_customer_id
from customers.commands import CustomerMerged, CustomerUnmerged
from customers.events import normalise_email
from customers.ids import customer_id as derive_customer_id
from projections import queries


class Refused(ValueError):
    """A merge or an unmerge the customers as they are cannot take: (field, why)."""

    def __init__(self, field: str, message: str, status: int = 409) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message, self.status = field, message, status


class Merges:
    def __init__(self, notes: Notes, secret: str) -> None:
        self.notes, self.secret = notes, secret  # the read helpers and the command bus; the ids' key

    async def _root(self, expert_id: str, customer_id: str):
        """The customer's row (the survivor's for a merged one); NotFound when not the expert's."""
        row = await self.notes.customer(expert_id, customer_id)
        if row is None:
            raise NotFound(customer_id)
        return row

    async def candidates(self, expert_id: str, customer_id: str, duplicate_id: str):
        """(survivor row, duplicate row), as a merge of them would take them; Refused or NotFound."""
        survivor = await self._root(expert_id, customer_id)
        if not valid_customer_id(duplicate_id):
            raise Refused("duplicate", "no such customer", 404)
        duplicate = await self.notes.read(lambda c: queries.customer_row(c, expert_id, duplicate_id))
        if duplicate is None:
            raise Refused("duplicate", "no such customer", 404)
        if duplicate.customer_id == survivor.customer_id:
            raise Refused("duplicate", "is this customer already" if duplicate_id == duplicate.customer_id
                          else "is merged into this customer already", 409 if duplicate_id != survivor.customer_id
                          else 422)
        _, merged = await self.notes.read(lambda c: queries.merges_of(c, expert_id, duplicate.customer_id))
        if merged:
            raise Refused("duplicate", "has customers merged into it: merge it the other way round")
        return survivor, duplicate

    async def merge(self, expert_id: str, customer_id: str, duplicate_id: str, now: datetime, wait: bool = False):
        """Publish the merge; with `wait`, whether the read model shows it within the wait."""
        survivor, duplicate = await self.candidates(expert_id, customer_id, duplicate_id)
        await self.notes.bus.send(CustomerMerged(
            command_id=uuid.uuid4().hex, occurred_at=now, expert_id=expert_id, customer_id=survivor.customer_id,
            duplicate=duplicate.customer_id, email_hash=duplicate.email_hash, survivor_email_hash=survivor.email_hash))
        if not wait:
            return survivor.customer_id, False
        found = await self.notes.until(lambda c: queries.merges_of(c, expert_id, duplicate.customer_id),
                                       lambda r: r[0] == survivor.customer_id)
        return survivor.customer_id, found[0] == survivor.customer_id

    async def unmerge(self, expert_id: str, customer_id: str, email: str, now: datetime, wait: bool = False):
        """Publish the split of the customer of `email` from the one it was merged into."""
        survivor = await self._root(expert_id, customer_id)
        try:
            duplicate = derive_customer_id(self.secret, expert_id, normalise_email(email))
        except ValueError as exc:
            raise Refused("email", "is not an email address", 422) from exc
        into, _ = await self.notes.read(lambda c: queries.merges_of(c, expert_id, duplicate))
        if into != survivor.customer_id:
            raise Refused("email", "no customer with this email is merged into this one")
        await self.notes.bus.send(CustomerUnmerged(command_id=uuid.uuid4().hex, occurred_at=now, expert_id=expert_id,
                                                   customer_id=survivor.customer_id, duplicate=duplicate))
        if not wait:
            return survivor.customer_id, duplicate, False
        found = await self.notes.until(lambda c: queries.merges_of(c, expert_id, duplicate), lambda r: r[0] is None)
        return survivor.customer_id, duplicate, found[0] is None
