"""Commands on `customer-commands`: writes the read API accepts and the worker projects."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator

from customers.cards import mask_card_numbers
from customers.ids import email_hash


class _Command(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    command_id: str
    occurred_at: datetime

    @property
    def kafka_key(self) -> str:
        """Commands of one expert stay in order on one partition."""
        return self.expert_id


class NoteAdded(_Command):
    type: Literal["note.added"] = "note.added"
    note_id: str
    expert_id: str
    customer_id: str
    body: str = Field(min_length=1, max_length=10_000)
    created_at: datetime

    # card numbers masked when the API builds the command (before it is published) and on decoding
    _masked = field_validator("body")(classmethod(lambda cls, v: mask_card_numbers(v)))


class NoteDeleted(_Command):
    type: Literal["note.deleted"] = "note.deleted"
    note_id: str
    expert_id: str
    customer_id: str


class CustomerErased(_Command):
    """Erase one person everywhere. Carries only a keyed hash of the email, never the email."""

    type: Literal["customer.erased"] = "customer.erased"
    email_hash: str = Field(pattern=r"^[0-9a-f]{64}$")

    @property
    def kafka_key(self) -> str:
        return self.email_hash  # one person, every expert: keyed by the person


def erasure(secret: str, email: str, at: datetime | None = None) -> CustomerErased:
    """The command that erases the person with this email (only its keyed hash travels)."""
    return CustomerErased(command_id=uuid.uuid4().hex, occurred_at=at or datetime.now(timezone.utc),
                          email_hash=email_hash(secret, email))


Command = Annotated[Union[NoteAdded, NoteDeleted, CustomerErased], Field(discriminator="type")]
command_adapter: TypeAdapter[Command] = TypeAdapter(Command)
