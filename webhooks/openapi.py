"""The intake's OpenAPI description: both routes read their bodies themselves (to verify the
signature on the exact bytes, and to answer 422 per event), so their bodies are described here."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, TypeAdapter

from customers.events import BookingEvent
from customers.messages import MessageSent

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
    413: {"model": Detail, "description": "the body (or one event) is larger than the intake or Kafka takes, "
                                          "or it holds more events than one request may (INTAKE_MAX_EVENTS)"},
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

_messages = TypeAdapter(MessageSent | list[MessageSent]).json_schema(ref_template=REF)
BOOKING_SCHEMAS.update(_messages.pop("$defs", {}))

MESSAGES_DOC: dict[str, Any] = {
    "summary": "Publish message events",
    "description": "`message.sent`: what the platform sent a customer (never the body). One event or an "
                   "array; all valid or none published; 202 once Kafka acknowledged every one.",
    "response_model": Accepted,
    "responses": BOOKINGS_DOC["responses"],
    "openapi_extra": {
        "requestBody": {"required": True, "content": {"application/json": {"schema": _messages}}},
        "security": [{"IngestToken": []}],
    },
}


class ReceivedEmailEvent(BaseModel):
    received: bool
    id: str
    published: bool


RESEND_DOC: dict[str, Any] = {
    "summary": "Receive an email provider (Resend) webhook",
    "description": "Verified with its Svix signature (`svix-id`, `svix-timestamp`, `svix-signature`) on the "
                   "exact body, then published to `email-events` when it is a delivery report. 404 when "
                   "RESEND_WEBHOOK_SECRET is not set.",
    "response_model": ReceivedEmailEvent,
    "responses": {**_refusals, 400: {"model": Detail, "description": "bad or old signature, or a delivery "
                                                                      "report the read model cannot store"},
                  404: {"model": Detail, "description": "the endpoint is not enabled"}},
    "openapi_extra": {
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": ["type", "created_at", "data"],
            "properties": {"type": {"type": "string"}, "created_at": {"type": "string"},
                           "data": {"type": "object", "properties": {"email_id": {"type": "string"}}}},
        }}}},
    },
}

STRIPE_DOC: dict[str, Any] = {
    "summary": "Receive a Stripe webhook",
    "description": "Verified with the `Stripe-Signature` header on the exact body, then published.",
    "response_model": Received,
    "responses": {**_refusals, 400: {"model": Detail, "description": "bad or old signature, not a Stripe event, "
                                                                      "or ids the read model cannot store"}},
    "openapi_extra": {
        "parameters": [{"name": "stripe-signature", "in": "header", "required": False,
                        "schema": {"anyOf": [{"type": "string"}, {"type": "null"}], "title": "Stripe-Signature"}}],
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
