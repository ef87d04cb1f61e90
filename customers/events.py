"""Booking events, schema version 1: the shapes the booking system publishes on `bookings`.

These are shared by the intake (which validates them) and the worker (which applies them).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Literal, Union
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator, model_validator

from customers.cards import CardSafe


def normalise_email(email: str) -> str:
    """Emails compare case- and space-insensitively: ``" Ana@Example.com"`` is ``ana@example.com``."""
    return "".join(email.split()).lower()


def check_email(value: str) -> str:
    """The normalised email; ValueError when it is not one. Shared with `customers.wire`."""
    value = normalise_email(value)
    if len(value) > 320:  # lower-casing may lengthen it
        raise ValueError("email is longer than 320 characters")
    local, _, domain = value.partition("@")
    if not local or "." not in domain:
        raise ValueError("not an email address")
    return value


def as_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("timestamp must carry a UTC offset (RFC 3339)")
    try:
        return value.astimezone(timezone.utc)
    except OverflowError as exc:  # 0001-01-01T00:00+01:00 has no UTC time
        raise ValueError("timestamp is out of range in UTC") from exc


# Limits are those of the read model (`projections/tables.py`); tests/unit/test_event_limits.py
# derives them from the tables so that the two cannot drift apart.
ID = 200
EVENT_ID = 52  # the version stamps: 28 characters of time, then the event id, in String(80)
MAX_AMOUNT = 2**63 - 1  # BigInteger
REASON = 2000


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    @field_validator("*")
    @classmethod
    def _storable_text(cls, value):
        """No text the database cannot hold: no NUL, no lone surrogate (not UTF-8)."""
        if isinstance(value, str):
            if "\x00" in value:
                raise ValueError("must not contain NUL characters")
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise ValueError("must be valid Unicode text") from exc
        return value


class Customer(_Model):
    email: str = Field(min_length=3, max_length=320)
    name: str = Field(default="", max_length=200)
    phone: str | None = Field(default=None, max_length=40)

    _email = field_validator("email")(classmethod(lambda cls, v: check_email(v)))


class Service(_Model):
    id: str = Field(min_length=1, max_length=ID)
    name: str = Field(default="", max_length=200)


class Money(_Model):
    amount: int = Field(ge=0, le=MAX_AMOUNT)
    currency: str = Field(pattern=r"^[a-z]{3}$")


class PaymentRef(_Model):
    payment_intent_id: str | None = Field(default=None, max_length=ID)
    checkout_session_id: str | None = Field(default=None, max_length=ID)


class _BookingEvent(_Model):
    event_id: str = Field(min_length=1, max_length=EVENT_ID)
    occurred_at: datetime
    schema_version: Literal[1] = 1
    expert_id: str = Field(min_length=1, max_length=ID)
    meeting_id: str = Field(min_length=1, max_length=ID)

    _utc = field_validator("occurred_at")(classmethod(lambda cls, v: as_utc(v)))


def check_tz(value: str | None) -> str | None:
    if value is None:
        return value
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise ValueError(f"unknown IANA time zone {value!r}") from exc
    return value


def check_order(start: datetime, end: datetime) -> None:
    if end < start:
        raise ValueError("end_time is before start_time")


class _Scheduled(_Model):
    start_time: datetime
    end_time: datetime

    _utc_times = field_validator("start_time", "end_time")(classmethod(lambda cls, v: as_utc(v)))

    @model_validator(mode="after")
    def _ordered(self):
        check_order(self.start_time, self.end_time)
        return self


class BookingCreated(_BookingEvent, _Scheduled):
    type: Literal["booking.created"]
    customer: Customer
    service: Service
    timezone: str = Field(default="UTC", max_length=64)
    price: Money
    payment: PaymentRef = PaymentRef()
    created_at: datetime | None = None

    _tz = field_validator("timezone")(classmethod(lambda cls, v: check_tz(v)))


class BookingRescheduled(_BookingEvent, _Scheduled):
    type: Literal["booking.rescheduled"]
    timezone: str | None = Field(default=None, max_length=64)

    _tz = field_validator("timezone")(classmethod(lambda cls, v: check_tz(v)))


class BookingCancelled(_BookingEvent):
    type: Literal["booking.cancelled"]
    reason: CardSafe | None = Field(default=None, max_length=REASON)
    cancelled_by: Literal["customer", "expert", "system"] | None = None


class BookingNoShow(_BookingEvent):
    type: Literal["booking.no_show"]


BookingEvent = Annotated[
    Union[BookingCreated, BookingRescheduled, BookingCancelled, BookingNoShow],
    Field(discriminator="type"),
]
booking_event_adapter: TypeAdapter[BookingEvent] = TypeAdapter(BookingEvent)


def parse_booking_event(data: dict | bytes | str) -> BookingEvent:
    if isinstance(data, (bytes, str)):
        return booking_event_adapter.validate_json(data)
    return booking_event_adapter.validate_python(data)
