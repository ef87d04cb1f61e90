"""The worker's decoding of records: the shapes of `customers.events`, `customers.facts` and
`customers.commands` as frozen msgspec structs, validated alike, decoded several times faster.

Attribute names, types, properties and values are those of the pydantic models, so the
projection reads either; each `type` is a class attribute holding the tag.

A record in the form the project writes (every field known, times in RFC 3339 to the
microsecond at most) is decoded here alone. Anything else goes to the pydantic models, which
accept or refuse it as the intake does, and what they accept is carried over to these structs:
an unknown field, a first-release fact, a form pydantic coerces ("7000", "yes", a Unix time, a
time without seconds, a digit of another script in `last4`), a fraction of a second past the
microsecond (pydantic truncates it, msgspec would round it), an escaped digit or NUL. So both
decoders accept and refuse the same records and give the same values, and the common case
never reaches pydantic. Every refusal is pydantic's `ValidationError`, a `ValueError`.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Annotated, Any, Callable, ClassVar, Literal, Union

import msgspec
from msgspec import Meta
from msgspec.structs import force_setattr

from customers import events, facts
from customers.cards import mask_card_numbers
from customers.events import as_utc, check_email, check_order, check_tz
from customers import commands

# pydantic's patterns run on Rust's regex, where `$` is only the end and `\d` any script's digit:
# here `\Z`, and ASCII digits only (a digit of another script takes the slow path). A pattern is
# checked on decoding only, never again when a struct is built from what pydantic accepted.
_LAST4 = r"^[0-9]{4}\Z"
_HASH = r"^[0-9a-f]{64}\Z"

# what pydantic alone decides: a NUL (never stored), an escaped digit or dot, 7+ digits after a dot
_ESCAPED = re.compile(rb"\\u00(?:00|3|2[eE])")
_PAST_MICROSECONDS = re.compile(rb"\.\d{7}")

# results of the shared checks, kept: a look-up costs less than a check (customers come back)
_ZONES: set[str] = set()  # the valid time zones met so far
_EMAILS: dict[str, str] = {}  # email as given -> normalised, for the emails met lately
_EMAILS_KEPT = 10_000


class _Wire(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    """Values, other structs and lists of them, frozen: no reference cycle, so the garbage
    collector need not track them (faster to decode)."""

    def model_dump(self) -> dict[str, Any]:
        """The fields as a dict, nested structs as dicts, as pydantic's `model_dump()` gives them."""
        return {name: _dumped(getattr(self, name)) for name in self.__struct_fields__}


def _dumped(value: Any) -> Any:
    if isinstance(value, _Wire):
        return value.model_dump()
    if isinstance(value, list):
        return [_dumped(v) for v in value]
    return value


def _utc(item: _Wire, *names: str) -> None:
    for name in names:
        value = getattr(item, name)
        if value.tzinfo is not timezone.utc:
            force_setattr(item, name, as_utc(value))


def _scheduled(event: BookingCreated | BookingRescheduled) -> None:
    """The checks of pydantic's `_Scheduled`, and of the time zone."""
    if not (event.occurred_at.tzinfo is event.start_time.tzinfo is event.end_time.tzinfo is timezone.utc):
        _utc(event, "occurred_at", "start_time", "end_time")
    if event.timezone is not None and event.timezone not in _ZONES:
        _ZONES.add(check_tz(event.timezone))
    check_order(event.start_time, event.end_time)


def _email(given: str) -> str:
    email = _EMAILS.get(given)
    if email is None:
        email = check_email(given)
        if len(_EMAILS) >= _EMAILS_KEPT:
            _EMAILS.clear()
        _EMAILS[given] = email
    return email


# --- booking events ---------------------------------------------------------------------------

Id = Annotated[str, Meta(min_length=1, max_length=events.ID)]


class Customer(_Wire):
    """The email is checked and normalised by `BookingCreated` (one Python call per record)."""

    email: Annotated[str, Meta(min_length=3, max_length=320)]
    name: Annotated[str, Meta(max_length=200)] = ""
    phone: Annotated[str, Meta(max_length=40)] | None = None


class Service(_Wire):
    id: Id
    name: Annotated[str, Meta(max_length=200)] = ""


class Money(_Wire):
    """Three lower-case ASCII letters in `currency`, checked by `BookingCreated` (faster than a pattern)."""

    amount: Annotated[int, Meta(ge=0, le=events.MAX_AMOUNT)]
    currency: Annotated[str, Meta(min_length=3, max_length=3)]


class PaymentRef(_Wire):
    payment_intent_id: Annotated[str, Meta(max_length=events.ID)] | None = None
    checkout_session_id: Annotated[str, Meta(max_length=events.ID)] | None = None


class _BookingEvent(_Wire, tag_field="type", kw_only=True):
    event_id: Annotated[str, Meta(min_length=1, max_length=events.EVENT_ID)]
    occurred_at: datetime
    schema_version: Literal[1] = 1
    expert_id: Id
    meeting_id: Id


class BookingCreated(_BookingEvent, tag="booking.created", kw_only=True):
    type: ClassVar[str] = "booking.created"
    start_time: datetime
    end_time: datetime
    customer: Customer
    service: Service
    timezone: Annotated[str, Meta(max_length=64)] = "UTC"
    price: Money
    payment: PaymentRef = PaymentRef()
    created_at: datetime | None = None  # as given: the pydantic model does not convert it either

    def __post_init__(self) -> None:
        _scheduled(self)
        force_setattr(self.customer, "email", _email(self.customer.email))
        currency = self.price.currency
        if not (currency.isascii() and currency.isalpha() and currency.islower()):
            raise ValueError("currency must be three lower-case letters")


class BookingRescheduled(_BookingEvent, tag="booking.rescheduled"):
    type: ClassVar[str] = "booking.rescheduled"
    start_time: datetime
    end_time: datetime
    timezone: Annotated[str, Meta(max_length=64)] | None = None

    def __post_init__(self) -> None:
        _scheduled(self)


class BookingCancelled(_BookingEvent, tag="booking.cancelled"):
    type: ClassVar[str] = "booking.cancelled"
    reason: Annotated[str, Meta(max_length=events.REASON)] | None = None
    cancelled_by: Literal["customer", "expert", "system"] | None = None

    def __post_init__(self) -> None:
        _utc(self, "occurred_at")
        if self.reason:
            force_setattr(self, "reason", mask_card_numbers(self.reason))


class BookingNoShow(_BookingEvent, tag="booking.no_show"):
    type: ClassVar[str] = "booking.no_show"

    def __post_init__(self) -> None:
        _utc(self, "occurred_at")


BookingEvent = Union[BookingCreated, BookingRescheduled, BookingCancelled, BookingNoShow]


# --- payment facts ----------------------------------------------------------------------------


class Card(_Wire):
    brand: str | None = None
    last4: Annotated[str, Meta(pattern=_LAST4)] | None = None
    exp_month: int | None = None
    exp_year: int | None = None


class IntentSeen(_Wire):
    status: facts.IntentStatus
    amount: int | None = None
    amount_received: int | None = None
    latest_charge: str | None = None
    application_fee: int | None = None


class SessionSeen(_Wire):
    status: facts.SessionStatus
    paid: bool = False
    amount_total: int | None = None


class ChargeSeen(_Wire):
    id: str
    status: facts.ChargeStatus | None = None
    captured: bool | None = None
    expired: bool = False
    amount: int | None = None
    amount_captured: int | None = None
    amount_refunded: int | None = None
    application_fee: int | None = None
    card: Card | None = None


class RefundSeen(_Wire, kw_only=True):
    id: str
    charge_id: str | None = None
    amount: int
    status: facts.RefundStatus
    created_at: datetime | None = None


class DisputeSeen(_Wire, kw_only=True):
    id: str
    charge_id: str | None = None
    amount: int
    status: facts.DisputeStatus


class FeeSeen(_Wire):
    id: str
    charge_id: str | None = None
    amount: int | None = None
    amount_refunded: int | None = None


class PaymentObserved(_Wire, tag_field="type", tag="payment.observed"):
    """Times as given, offset and all (the pydantic model keeps them so too)."""

    type: ClassVar[str] = "payment.observed"
    stripe_event_id: str
    stripe_event_type: str
    occurred_at: datetime
    payment_id: str
    payment_intent_id: str | None = None
    checkout_session_id: str | None = None
    charge_id: str | None = None
    expert_id: str | None = None
    meeting_id: str | None = None
    customer_email: str | None = None
    booked_start: datetime | None = None
    currency: str | None = None
    created_at: datetime | None = None
    intent: IntentSeen | None = None
    session: SessionSeen | None = None
    charge: ChargeSeen | None = None
    refunds: list[RefundSeen] = []
    disputes: list[DisputeSeen] = []
    fee: FeeSeen | None = None
    undecided: bool = False

    # the pydantic model's own code, so that the two cannot drift apart
    kafka_key = facts.PaymentObserved.kafka_key
    charge_ids = facts.PaymentObserved.charge_ids


class StripeEventIgnored(_Wire, tag_field="type", tag="stripe.ignored"):
    type: ClassVar[str] = "stripe.ignored"
    stripe_event_id: str
    stripe_event_type: str
    occurred_at: datetime

    kafka_key = facts.StripeEventIgnored.kafka_key


Activity = Union[PaymentObserved, StripeEventIgnored]


# --- commands ---------------------------------------------------------------------------------


class _Command(_Wire, tag_field="type"):
    command_id: str
    occurred_at: datetime


class NoteAdded(_Command, tag="note.added"):
    type: ClassVar[str] = "note.added"
    note_id: str
    expert_id: str
    customer_id: str
    body: Annotated[str, Meta(min_length=1, max_length=10_000)]
    created_at: datetime

    def __post_init__(self) -> None:
        force_setattr(self, "body", mask_card_numbers(self.body))


class NoteDeleted(_Command, tag="note.deleted"):
    type: ClassVar[str] = "note.deleted"
    note_id: str
    expert_id: str
    customer_id: str


class CustomerErased(_Command, tag="customer.erased"):
    type: ClassVar[str] = "customer.erased"
    email_hash: Annotated[str, Meta(pattern=_HASH)]


Command = Union[NoteAdded, NoteDeleted, CustomerErased]


# --- decoding ---------------------------------------------------------------------------------

_FROM_MODEL: dict[type, type[_Wire]] = {
    events.Customer: Customer, events.Service: Service, events.Money: Money, events.PaymentRef: PaymentRef,
    events.BookingCreated: BookingCreated, events.BookingRescheduled: BookingRescheduled,
    events.BookingCancelled: BookingCancelled, events.BookingNoShow: BookingNoShow,
    facts.Card: Card, facts.IntentSeen: IntentSeen, facts.SessionSeen: SessionSeen, facts.ChargeSeen: ChargeSeen,
    facts.RefundSeen: RefundSeen, facts.DisputeSeen: DisputeSeen, facts.FeeSeen: FeeSeen,
    facts.PaymentObserved: PaymentObserved, facts.StripeEventIgnored: StripeEventIgnored,
    commands.NoteAdded: NoteAdded, commands.NoteDeleted: NoteDeleted, commands.CustomerErased: CustomerErased,
}


def from_model(value: Any) -> Any:
    """A value the pydantic models decoded, as these structs (their checks pass again unchanged)."""
    wire = _FROM_MODEL.get(type(value))
    if wire is not None:
        return wire(**{name: from_model(getattr(value, name)) for name in wire.__struct_fields__})
    if isinstance(value, list):
        return [from_model(v) for v in value]
    return value


def _plain(raw: Any) -> bool:
    """Bytes that msgspec decodes as pydantic would, if it decodes them at all."""
    return (type(raw) is bytes and (b"\\" not in raw or _ESCAPED.search(raw) is None)
            and _PAST_MICROSECONDS.search(raw) is None)


def _decoders(union: Any, slow: Callable[[Any], Any]) -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
    """(fast, decode): the record by msgspec alone (None when pydantic must decide it), and the record."""
    structs = msgspec.json.Decoder(union).decode

    def fast(raw: Any) -> Any:
        if _plain(raw):
            try:
                return structs(raw)
            except ValueError:
                return None
        return None

    def decode(raw: Any) -> Any:
        # `_plain` written out: one call less per record
        if type(raw) is bytes and (b"\\" not in raw or _ESCAPED.search(raw) is None) \
                and _PAST_MICROSECONDS.search(raw) is None:
            try:
                return structs(raw)
            except ValueError:  # msgspec's errors, and bad UTF-8
                pass
        return from_model(slow(raw))

    return fast, decode


fast_booking_event, decode_booking_event = _decoders(BookingEvent, events.parse_booking_event)
fast_activity, decode_activity = _decoders(Activity, facts.activity_adapter.validate_json)
fast_command, decode_command = _decoders(Command, commands.command_adapter.validate_json)
