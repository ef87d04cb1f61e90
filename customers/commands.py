"""Commands on `customer-commands`: writes the read API accepts and the worker projects."""

from __future__ import annotations

import math
import re
import uuid
from datetime import date, datetime, timezone
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator, model_validator

from customers.cards import CardSafe
from customers.events import as_utc
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
    body: CardSafe = Field(min_length=1, max_length=10_000)
    created_at: datetime


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


# --- the relationship: custom fields, tags, archive (CONTRACT v1.1) -------------------------------

FIELD_KEY = r"^[a-z][a-z0-9_]{0,39}$"
CUSTOMER_ID = r"^c_[0-9a-f]{32}$"
FIELD_TYPES = ("text", "number", "date", "boolean", "choice")
MAX_FIELDS = 50
MAX_TAGS = 20
MAX_TEXT_VALUE = 500
FieldValue = Union[bool, int, float, CardSafe]  # text values masked as any free text


class FieldDefinition(BaseModel):
    """One custom field of an expert: the key is stable, the label may change."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    key: str = Field(pattern=FIELD_KEY)
    label: CardSafe = Field(min_length=1, max_length=80, pattern=r"^[^\x00]*$")
    type: Literal["text", "number", "date", "boolean", "choice"]
    choices: list[Annotated[CardSafe, Field(min_length=1, max_length=80, pattern=r"^[^\x00]*$")]] | None = \
        Field(default=None, max_length=50)

    @model_validator(mode="after")
    def _choices_fit_the_type(self) -> "FieldDefinition":
        if self.type == "choice":
            if not self.choices:
                raise ValueError("a choice field needs choices")
            if len(set(self.choices)) != len(self.choices):
                raise ValueError("choices must be distinct")
        elif self.choices is not None:
            raise ValueError("only a choice field has choices")
        return self


def check_definitions(definitions: list[FieldDefinition]) -> list[FieldDefinition]:
    keys = [d.key for d in definitions]
    if len(set(keys)) != len(keys):
        raise ValueError("field keys must be distinct")
    return definitions


def field_value(definition: FieldDefinition, value: object) -> FieldValue:
    """The value as stored for this definition; ValueError when it does not fit."""
    kind = definition.type
    if kind == "boolean":
        if not isinstance(value, bool):
            raise ValueError("must be true or false")
        return value
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError("must be a number")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("must be a finite number")
        if isinstance(value, int) and abs(value) >= 2**53:
            raise ValueError("is out of range")
        return value
    if not isinstance(value, str):
        raise ValueError("must be a string")
    if "\x00" in value:
        raise ValueError("must not contain NUL")
    if kind == "date":
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value) is None:
            raise ValueError("must be a date, YYYY-MM-DD")
        date.fromisoformat(value)  # ValueError when there is no such day
        return value
    if kind == "choice":
        if value not in (definition.choices or ()):
            raise ValueError("must be one of the field's choices")
        return value
    value = value.strip()
    if not 1 <= len(value) <= MAX_TEXT_VALUE:
        raise ValueError(f"must be 1 to {MAX_TEXT_VALUE} characters")
    return value


def canonical(value: FieldValue) -> str:
    """One text for a stored value, the form list filters compare (`field.KEY=value`)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def normalise_tags(tags: list[str]) -> list[str]:
    """Tags trimmed and lower-cased, each once, in a stable order; ValueError naming the fault."""
    out: list[str] = []
    for tag in tags:
        clean = " ".join(tag.split()).lower()
        if not 1 <= len(clean) <= 40:
            raise ValueError("each tag must be 1 to 40 characters")
        if "\x00" in clean:
            raise ValueError("a tag must not contain NUL")
        if clean not in out:
            out.append(clean)
    if len(out) > MAX_TAGS:
        raise ValueError(f"at most {MAX_TAGS} tags")
    return sorted(out)


class FieldsDefined(_Command):
    """The expert's whole list of field definitions (a PUT): the newest replaces the older."""

    type: Literal["fields.defined"] = "fields.defined"
    expert_id: str
    definitions: list[FieldDefinition] = Field(max_length=MAX_FIELDS)

    _distinct = field_validator("definitions")(classmethod(lambda cls, v: check_definitions(v)))


class _OnCustomer(_Command):
    expert_id: str
    customer_id: str
    # the customer's keyed email hash, so that an erasure finds this state whatever the order
    email_hash: str = Field(pattern=r"^[0-9a-f]{64}$")


class CustomerFieldsSet(_OnCustomer):
    """Values of custom fields on one customer: each named key set, or cleared when null."""

    type: Literal["customer.fields_set"] = "customer.fields_set"
    values: dict[Annotated[str, Field(pattern=FIELD_KEY)], FieldValue | None] = Field(max_length=MAX_FIELDS)


class CustomerTagsSet(_OnCustomer):
    """The customer's whole set of tags."""

    type: Literal["customer.tags_set"] = "customer.tags_set"
    tags: list[CardSafe] = Field(max_length=MAX_TAGS)

    _normalised = field_validator("tags")(classmethod(lambda cls, v: normalise_tags(v)))


class CustomerArchived(_OnCustomer):
    type: Literal["customer.archived"] = "customer.archived"


class CustomerUnarchived(_OnCustomer):
    type: Literal["customer.unarchived"] = "customer.unarchived"


class CommunicationLogged(_OnCustomer):
    """A contact the expert had with the customer outside the platform's own messages."""

    type: Literal["communication.logged"] = "communication.logged"
    communication_id: str = Field(pattern=r"^cm_[0-9a-f]{32}$")
    channel: Literal["phone", "email", "message", "in_person"]
    summary: CardSafe = Field(min_length=1, max_length=2000)
    at: datetime

    _utc = field_validator("at")(classmethod(lambda cls, v: as_utc(v)))


class CustomerMerged(_Command):
    """One person, two customers of one expert: `duplicate` counts in `customer_id` (the survivor)."""

    type: Literal["customer.merged"] = "customer.merged"
    expert_id: str
    customer_id: str = Field(pattern=CUSTOMER_ID)
    duplicate: str = Field(pattern=CUSTOMER_ID)
    email_hash: str = Field(pattern=r"^[0-9a-f]{64}$")  # the duplicate's, so that an erasure finds the merge
    survivor_email_hash: str = Field(pattern=r"^[0-9a-f]{64}$")  # for the survivor's profile


class CustomerUnmerged(_Command):
    """A customer merged into `customer_id` stands alone again."""

    type: Literal["customer.unmerged"] = "customer.unmerged"
    expert_id: str
    customer_id: str = Field(pattern=CUSTOMER_ID)
    duplicate: str = Field(pattern=CUSTOMER_ID)


Command = Annotated[Union[NoteAdded, NoteDeleted, CustomerErased, FieldsDefined, CustomerFieldsSet,
                          CustomerTagsSet, CustomerArchived, CustomerUnarchived, CommunicationLogged,
                          CustomerMerged, CustomerUnmerged],
                    Field(discriminator="type")]
command_adapter: TypeAdapter[Command] = TypeAdapter(Command)
