"""Decoding of records by topic, through one table from topic to decoder."""

from __future__ import annotations

import json
from typing import Any, Callable

from customers import wire
from customers.events import parse_booking_event
from customers.facts import activity_adapter
from customers.kafka import ACTIVITY, BOOKINGS, COMMANDS, COMMUNICATIONS, EMAIL_EVENTS
from customers.messages import email_event, parse_message_event
from customers.cards import mask_card_numbers
from customers.commands import command_adapter

DECODERS: dict[str, Callable[[bytes], Any]] = {
    BOOKINGS: parse_booking_event,
    ACTIVITY: lambda raw: activity_adapter.validate_json(raw),
    COMMANDS: lambda raw: command_adapter.validate_json(raw),
    COMMUNICATIONS: parse_message_event,
    EMAIL_EVENTS: email_event,
}

# the same records accepted and refused, the same values, as msgspec structs (`customers.wire`)
FAST_DECODERS: dict[str, Callable[[bytes], Any]] = {
    BOOKINGS: wire.decode_booking_event,
    ACTIVITY: wire.decode_activity,
    COMMANDS: wire.decode_command,
    COMMUNICATIONS: parse_message_event,  # a few records an appointment: pydantic alone
    EMAIL_EVENTS: email_event,
}


def base_name(topic: str, prefix: str) -> str:
    """A topic's name without the deployment's prefix (`bookings`, `customer-activity`, ...)."""
    return topic[len(prefix):] if prefix and topic.startswith(prefix) else topic


def decoder_for(topic: str, prefix: str, fast: bool = True) -> Callable[[bytes], Any]:
    """The worker's decoder for a topic: msgspec structs (`customers.wire`), or with `fast=False`
    the pydantic models; both accept and refuse the same records."""
    return (FAST_DECODERS if fast else DECODERS)[base_name(topic, prefix)]


def dead_letter(value: bytes | None, error: BaseException, topic: str, partition: int, offset: int) -> bytes:
    """The DLQ record: the original value (card numbers masked) with the error and its origin."""
    text = mask_card_numbers((value or b"").decode("utf-8", "replace"))
    try:
        original: Any = json.loads(text) if value is not None else None
    except ValueError:
        original = text
    return json.dumps({
        "error": mask_card_numbers(f"{type(error).__name__}: {error}"[:2000]),
        "origin": {"topic": topic, "partition": partition, "offset": offset},
        "value": original,
    }).encode()
