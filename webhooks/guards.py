"""What the intake refuses before anything is published.

- a body larger than `INTAKE_MAX_BODY_BYTES`, on every endpoint: 413, from its `Content-Length`
  before it is read, or as soon as the bytes received pass the limit (chunked bodies); the rest of
  the body is read and thrown away first, boundedly, so that the sender reads the 413
  (`customers.bodies.BodyLimit`);
- more than `INTAKE_MAX_EVENTS` events in one request of the booking platform: 413;
- JSON nested too deeply to parse: 400;
- an `Authorization` header that is not the ingest token, whatever characters it holds: 401;
- a Stripe event naming ids the read model cannot store (longer than their columns, NUL, lone
  surrogates): 400;
- a record Kafka would refuse for its size: 413 (never a 503 that makes the sender retry).

The limits below are those of `projections/tables.py`; tests/unit/test_intake_guards.py derives
them from the tables.
"""

from __future__ import annotations

import hmac
import json
from typing import Any, Iterable

from aiokafka.record.default_records import DefaultRecordBatchBuilder
from fastapi import HTTPException
from pydantic import ValidationError

from customers.cards import mask_card_numbers
from customers.kafka import MAX_RECORD_BYTES

STRIPE_EVENT_ID, STRIPE_EVENT_TYPE, STRIPE_ID, EMAIL = 255, 100, 200, 320
# what a Stripe event's payment fact puts in a column, by field name; any other `id` or `*_id`
# is a Stripe id, stored in a String(STRIPE_ID) column
FACT_LIMITS = {"stripe_event_id": STRIPE_EVENT_ID, "stripe_event_type": STRIPE_EVENT_TYPE, "customer_email": EMAIL}


class TooDeep(ValueError):
    pass


def parse_json(payload: bytes) -> Any:
    """The body as JSON: ValueError when it is not JSON, `TooDeep` when nested past the parser's depth."""
    try:
        return json.loads(payload)
    except RecursionError as exc:
        raise TooDeep("the JSON body is nested too deeply") from exc


def bearer_matches(header: str | None, token: str) -> bool:
    """`Authorization: Bearer <token>`, compared in constant time as bytes (any character compares)."""
    if not token or not header:
        return False
    return hmac.compare_digest(header.encode("utf-8", "surrogatepass"), f"Bearer {token}".encode())


def _unstorable(value: Any, limit: int) -> str | None:
    if not isinstance(value, str):
        return None
    if len(value) > limit:
        return f"is longer than {limit} characters"
    if "\x00" in value:
        return "contains a NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid Unicode text"
    return None


def _strings(value: Any, path: str = ""):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, f"{path}[{index}]")
    elif isinstance(value, str):
        yield path, value


def _limit(path: str) -> int:
    name = path.rsplit(".", 1)[-1].split("[", 1)[0]
    if name in FACT_LIMITS:
        return FACT_LIMITS[name]
    return STRIPE_ID if name == "id" or name.endswith("_id") else 1 << 20


def stripe_refusal(event: dict, to_fact) -> str | None:
    """Why the read model could not store what `event` says (None: it can).

    `to_fact` is the worker's translation of a verified event; its fields are what the tables
    receive. An event it cannot translate (a status the payment rules do not know, an object
    without the fields its type needs) is refused too: accepted, it would only be dead-lettered.
    """
    obj = (event.get("data") or {}).get("object") or {}
    named = [("id", event.get("id"), STRIPE_EVENT_ID), ("type", event.get("type"), STRIPE_EVENT_TYPE),
             ("data.object.id", obj.get("id"), STRIPE_ID),
             ("data.object.payment_intent", obj.get("payment_intent"), STRIPE_ID)]  # the Kafka key
    try:
        fact = to_fact(event)
    except ValidationError as exc:  # the fields, never the values (which may hold anything)
        where = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_input=False))
        return mask_card_numbers(f"cannot be read as a payment: {where}"[:300])
    except (ValueError, KeyError, TypeError) as exc:
        return mask_card_numbers(f"cannot be read as a payment: {' '.join(str(exc).split())}"[:300])
    named += [(path, value, _limit(path)) for path, value in _strings(fact.model_dump(mode="json"))]
    found = [f"{path} {problem}" for path, value, limit in named if (problem := _unstorable(value, limit))]
    return "; ".join(dict.fromkeys(found)) or None


def check_record_sizes(items: Iterable[tuple[str, bytes]]) -> None:
    """413 when Kafka would refuse one of the records for its size (checked before any is sent)."""
    for key, value in items:
        size = DefaultRecordBatchBuilder.estimate_size_in_bytes(key.encode(), value, [])
        if size > MAX_RECORD_BYTES:
            raise HTTPException(413, f"an event of {size} bytes is larger than the event store takes "
                                     f"({MAX_RECORD_BYTES} bytes)")
