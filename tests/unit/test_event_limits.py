"""The booking event schema accepts only what the read model can store: every limit is derived
from the table definitions, so a column narrowed (or a field widened) fails here, not in the
worker as a dead letter."""

from __future__ import annotations

import copy
import types
import typing
from datetime import datetime, timedelta, timezone

import pytest
from pydantic import BaseModel, ValidationError
from sqlalchemy import BigInteger, String

from testing import samples as s
from customers.events import BookingCancelled, BookingCreated, BookingRescheduled, parse_booking_event
from projections import tables as t
from projections.meetings import stamp

T0 = datetime(2026, 3, 1, 9, tzinfo=timezone.utc)
LATEST = datetime.max.replace(tzinfo=timezone.utc)
STAMP_WIDTH = len(stamp(LATEST, ""))  # what a version stamp holds besides the event id

m, c = t.meetings.c, t.customers.c
# event field -> the columns it is stored in
STORED_IN = {
    (BookingCreated, "event_id"): [m.created_version, c.profile_version, c.phone_version],
    (BookingRescheduled, "event_id"): [m.resched_version],
    (BookingCreated, "expert_id"): [m.expert_id, c.expert_id],
    (BookingCreated, "meeting_id"): [m.meeting_id],
    (BookingCreated, "customer.email"): [m.customer_email, c.email],
    (BookingCreated, "customer.name"): [m.customer_name, c.name],
    (BookingCreated, "customer.phone"): [m.customer_phone, c.phone],
    (BookingCreated, "service.id"): [m.service_id],
    (BookingCreated, "service.name"): [m.service_name],
    (BookingCreated, "timezone"): [m.booked_timezone, m.timezone],
    (BookingRescheduled, "timezone"): [m.resched_timezone, m.timezone],
    (BookingCreated, "price.currency"): [m.price_currency],
    (BookingCreated, "price.amount"): [m.price_amount],
    (BookingCreated, "payment.payment_intent_id"): [m.payment_intent_id],
    (BookingCreated, "payment.checkout_session_id"): [m.checkout_session_id],
    (BookingCancelled, "reason"): [m.cancel_reason],
    (BookingCancelled, "cancelled_by"): [m.cancelled_by],
}
# columns the service fills itself (keyed hashes, the projection version, ...)
DERIVED = {m.version, m.customer_id, m.email_hash, c.version, c.customer_id, c.email_hash, c.search_text, c.status}  # status: one of `projections.rules.status.STATUSES`
VERSION_STAMPS = {m.created_version, m.resched_version, c.profile_version, c.phone_version}


def _inner(annotation):
    """`X | None` -> X."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    optional = typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1
    return args[0] if optional else annotation


def _field(model: type[BaseModel], path: str):
    *parents, name = path.split(".")
    for part in parents:
        model = _inner(model.model_fields[part].annotation)
    return model.model_fields[name]


def _constraint(field, name: str):
    found = [getattr(meta, name) for meta in field.metadata if getattr(meta, name, None) is not None]
    return found[0] if found else None


def schema_max_length(model: type[BaseModel], path: str) -> int | None:
    field = _field(model, path)
    literal = _inner(field.annotation)
    if typing.get_origin(literal) is typing.Literal:
        return max(len(v) for v in typing.get_args(literal))
    pattern = _constraint(field, "pattern")
    if pattern == r"^[a-z]{3}$":
        return 3
    return _constraint(field, "max_length")


def column_room(column) -> int | None:
    """How many characters of the event field the column holds (None: unbounded text)."""
    length = getattr(column.type, "length", None)
    if length is None:
        return None
    return length - STAMP_WIDTH if column in VERSION_STAMPS else length


@pytest.mark.parametrize("key", list(STORED_IN), ids=lambda k: f"{k[0].__name__}.{k[1]}")
def test_no_field_is_longer_than_its_columns(key):
    model, path = key
    columns = STORED_IN[key]
    if isinstance(columns[0].type, BigInteger):
        field = _field(model, path)
        assert _constraint(field, "ge") == 0 and _constraint(field, "le") <= 2**63 - 1
        return
    room = [column_room(col) for col in columns if column_room(col) is not None]
    limit = schema_max_length(model, path)
    if room:
        assert limit is not None and limit <= min(room), f"{path}: {limit} > {min(room)}"
    else:  # unbounded text still has a limit at the door: records stay far below Kafka's size
        assert limit is not None and limit <= 10_000


def test_every_text_column_fed_by_an_event_is_covered():
    covered = {col for cols in STORED_IN.values() for col in cols} | DERIVED
    text_columns = {col for table in (t.meetings, t.customers) for col in table.columns
                    if isinstance(col.type, String)}
    assert text_columns - covered == set(), "a new column needs its event field's limit here"


def test_every_text_field_of_an_event_has_a_limit():
    seen = set()

    def walk(model: type[BaseModel], prefix: str = "") -> None:
        for name, field in model.model_fields.items():
            inner = _inner(field.annotation)
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                walk(inner, f"{prefix}{name}.")
            elif inner is str:
                seen.add((model, f"{prefix}{name}"))
                assert schema_max_length(model, name) is not None, f"{prefix}{name} has no maximum length"

    for model in (BookingCreated, BookingRescheduled, BookingCancelled):
        walk(model)
    assert seen


# Behaviour at the limits the columns set: one character more is refused, naming the field.

def created(**kw) -> dict:
    return s.booking_created("ex_1", "m_1", "ana@example.com", "Ana", T0, **kw)


def _set(event: dict, path: str, value) -> dict:
    event = copy.deepcopy(event)
    *parents, name = path.split(".")
    target = event
    for part in parents:
        target = target.setdefault(part, {})
    target[name] = value
    return event


def refused_at(event: dict) -> list[tuple]:
    with pytest.raises(ValidationError) as caught:
        parse_booking_event(event)
    return [e["loc"][1:] for e in caught.value.errors()]


def base_for(model) -> dict:
    if model is BookingCreated:
        return created()
    if model is BookingRescheduled:
        return s.booking_event("booking.rescheduled", "ex_1", "m_1", T0, start_time=s.iso(T0),
                               end_time=s.iso(T0 + timedelta(hours=1)))
    return s.booking_event("booking.cancelled", "ex_1", "m_1", T0, reason="ill", cancelled_by="customer")


ID_FIELDS = [(model, path) for (model, path), cols in STORED_IN.items()
             if path in ("event_id", "expert_id", "meeting_id", "customer.name", "customer.phone", "service.id",
                         "service.name", "payment.payment_intent_id", "payment.checkout_session_id")]


@pytest.mark.parametrize("key", ID_FIELDS, ids=lambda k: f"{k[0].__name__}.{k[1]}")
def test_text_one_character_over_its_column_is_refused(key):
    model, path = key
    room = min(column_room(col) for col in STORED_IN[key])
    at_limit = _set(base_for(model), path, "x" * room)
    assert parse_booking_event(at_limit)  # what fits is accepted
    assert tuple(path.split(".")) in refused_at(_set(base_for(model), path, "x" * (room + 1)))


def test_an_email_that_lower_casing_lengthens_past_its_column_is_refused():
    email = "İ" * 200 + "@example.com"  # 212 characters, 412 once lower-cased
    assert ("customer", "email") in refused_at(_set(created(), "customer.email", email))


@pytest.mark.parametrize("amount,ok", [(0, True), (2**63 - 1, True), (2**63, False), (10**30, False), (-1, False)])
def test_price_amount_fits_a_signed_64_bit_column(amount, ok):
    event = _set(created(), "price.amount", amount)
    if ok:
        assert parse_booking_event(event).price.amount == amount
    else:
        assert ("price", "amount") in refused_at(event)


@pytest.mark.parametrize("path", ["event_id", "expert_id", "meeting_id", "customer.name", "customer.phone",
                                  "customer.email", "service.id", "service.name", "payment.payment_intent_id",
                                  "timezone"])
@pytest.mark.parametrize("bad", ["a\x00b", "a\ud800b"], ids=["NUL", "lone surrogate"])
def test_text_the_database_cannot_hold_is_refused(path, bad):
    value = f"{bad}@example.com" if path == "customer.email" else bad
    assert tuple(path.split(".")) in refused_at(_set(created(), path, value))


def test_a_cancellation_reason_with_nul_is_refused():
    event = base_for(BookingCancelled)
    assert ("reason",) in refused_at(_set(event, "reason", "no\x00show"))


@pytest.mark.parametrize("value", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_a_time_with_no_utc_equivalent_is_refused(value):
    assert ("occurred_at",) in refused_at(_set(created(), "occurred_at", value))
    assert ("start_time",) in refused_at(_set(created(), "start_time", value))
