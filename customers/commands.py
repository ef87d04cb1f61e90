"""Commands on `customer-commands`: writes the read API accepts and the worker projects."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator

from customers.cards import mask_card_numbers


class _Command(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    command_id: str
    occurred_at: datetime


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


Command = Annotated[Union[NoteAdded, NoteDeleted, CustomerErased], Field(discriminator="type")]
command_adapter: TypeAdapter[Command] = TypeAdapter(Command)
