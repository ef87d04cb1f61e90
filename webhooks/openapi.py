"""The intake's OpenAPI description: both routes read their bodies themselves (to verify the
signature on the exact bytes, and to answer 422 per event), so their bodies are described here."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, TypeAdapter

from customers.events import BookingEvent

REF = "#/components/schemas/{model}"


class Detail(BaseModel):
    detail: str


class Accepted(BaseModel):
    accepted: int
    event_ids: list[str]


class Refused(BaseModel):
    detail: str
    errors: list[dict[str, Any]]


class Received(BaseModel):
    received: bool
    id: str


_bookings = TypeAdapter(BookingEvent | list[BookingEvent]).json_schema(ref_template=REF)
BOOKING_SCHEMAS = _bookings.pop("$defs", {})

_refusals = {
    400: {"model": Detail, "description": "JSON nested too deeply to read"},
    413: {"model": Detail, "description": "the body (or one event) is larger than the intake or Kafka takes"},
    503: {"model": Detail, "description": "Kafka did not acknowledge; retry later (`Retry-After`)"},
}

BOOKINGS_DOC: dict[str, Any] = {
    "summary": "Publish booking events",
    "description": "One event or an array of them. All are validated first: one invalid event and "
                   "nothing is published. 202 once Kafka acknowledged every one.",
    "response_model": Accepted,
    "responses": {**_refusals, 401: {"model": Detail, "description": "not the ingest token"},
                  422: {"model": Refused, "description": "invalid events, each error naming its field"}},
    "openapi_extra": {
        "requestBody": {"required": True, "content": {"application/json": {"schema": _bookings}}},
        "security": [{"IngestToken": []}],
    },
}

STRIPE_DOC: dict[str, Any] = {
    "summary": "Receive a Stripe webhook",
    "description": "Verified with the `Stripe-Signature` header on the exact body, then published.",
    "response_model": Received,
    "responses": {**_refusals, 400: {"model": Detail, "description": "bad or old signature, not a Stripe event, "
                                                                      "or ids the read model cannot store"}},
    "openapi_extra": {
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": ["id", "object", "type", "data"],
            "properties": {"id": {"type": "string"}, "object": {"const": "event"}, "type": {"type": "string"},
                           "data": {"type": "object", "required": ["object"],
                                    "properties": {"object": {"type": "object"}}}},
        }}}},
    },
}


def describe(app: FastAPI) -> None:
    """Add the booking events' schemas and the ingest token's scheme to the generated document."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            components = schema.setdefault("components", {})
            components.setdefault("schemas", {}).update(BOOKING_SCHEMAS)
            components.setdefault("securitySchemes", {})["IngestToken"] = {"type": "http", "scheme": "bearer"}
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi
