"""The intake: Stripe webhooks and booking events, verified, then published to Kafka.

Nothing is acknowledged to a sender before Kafka has acknowledged it (acks=all), and nothing
of a rejected request is published.
"""

from __future__ import annotations

import asyncio
import json
import logging
from contextlib import asynccontextmanager
from typing import Any

import stripe
from aiokafka.errors import KafkaError, MessageSizeTooLargeError
from fastapi import FastAPI, Header, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry, Counter, generate_latest, CONTENT_TYPE_LATEST
from pydantic import ValidationError

from customers import kafka as names
from customers.kafka import ClusterRefusal
from customers.bodies import BodyLimit
from customers.events import parse_booking_event
from customers.messages import DELIVERY, email_event_adapter, parse_message_event, provider_type
from customers.settings import Settings
from customers.telemetry import fastapi_options
from customers.stripe_facts import NotAStripeEvent, check_event, object_key, to_fact
from webhooks.guards import TooDeep, bearer_matches, check_record_sizes, parse_json, stripe_refusal
from webhooks.openapi import BOOKINGS_DOC, MESSAGES_DOC, RESEND_DOC, STRIPE_DOC, describe
from webhooks.svix import verify_svix

log = logging.getLogger("customers.webhooks")
ENDPOINTS = ("/webhooks/stripe", "/webhooks/resend", "/events/bookings", "/events/messages", "/healthz", "/metrics")


class Intake:
    """The intake's producer (`customers.kafka.LazyProducer`: the process comes up even while Kafka
    is away) and its metrics."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.producer = names.LazyProducer(settings, timeout=settings.kafka_publish_timeout_seconds)
        self.registry = CollectorRegistry()
        self.outcomes = Counter("customers_webhook_requests", "Intake requests by endpoint and status",
                                ["endpoint", "status"], registry=self.registry)
        self.refused = Counter("customers_stripe_events_refused", "Verified Stripe events refused, by reason",
                               ["reason"], registry=self.registry)

    async def publish(self, topic: str, items: list[tuple[str, bytes]]) -> None:
        """Publish and wait for Kafka's acknowledgement; a record too large is a 413, any other failure a 503."""
        check_record_sizes(items)
        try:
            await self.producer.publish(self.settings.topic(topic), items)
        except MessageSizeTooLargeError as exc:  # retrying cannot help: not a 503
            raise HTTPException(413, "the event is larger than the event store takes") from exc
        except ClusterRefusal as exc:  # the topics or the cluster disagree with the settings: say which
            log.error("refusing to publish: %s", exc)
            raise HTTPException(503, "event store unavailable, retry later", headers={"Retry-After": "5"})
        except (KafkaError, asyncio.TimeoutError, OSError) as exc:
            log.warning("kafka unavailable: %s", type(exc).__name__)
            raise HTTPException(503, "event store unavailable, retry later", headers={"Retry-After": "5"})

    async def close(self) -> None:
        await self.producer.close()


def verify_stripe(payload: bytes, signature: str | None, secrets: list[str]) -> dict:
    """The verified event as a dict, or HTTPException(400). Any configured secret may match."""
    if not signature:
        raise HTTPException(400, "missing Stripe-Signature header")
    last: Exception | None = None
    for secret in secrets:
        try:
            # the signature alone; the body is parsed once, below
            stripe.WebhookSignature.verify_header(payload, signature, secret,
                                                  tolerance=stripe.Webhook.DEFAULT_TOLERANCE)
            break
        except stripe.SignatureVerificationError as exc:
            last = exc
        except ValueError as exc:
            raise HTTPException(400, "body is not JSON") from exc
    else:
        raise HTTPException(400, f"signature verification failed: {last}" if last else "no webhook secret")
    try:
        event = parse_json(payload)
        check_event(event)
    except (ValueError, NotAStripeEvent) as exc:  # TooDeep included
        raise HTTPException(400, f"not a Stripe event: {exc}") from exc
    refusal = stripe_refusal(event, to_fact)
    if refusal:
        raise HTTPException(400, f"the event cannot be stored: {refusal}")
    return event


def foreign_event(event: dict, settings: Settings) -> tuple[str, str] | None:
    """(reason, detail) when a verified event is not for this deployment: another Stripe mode or none
    (`livemode` must be exactly this deployment's boolean), or a connected account's event on an endpoint that is not a Connect endpoint."""
    livemode = event.get("livemode")
    if livemode is not settings.livemode:  # only the expected boolean: missing, text or numbers are refused
        wanted = f"this service takes {'live' if settings.livemode else 'test'}-mode events (STRIPE_LIVEMODE)"
        if not isinstance(livemode, bool):
            return "livemode", f"the event's livemode field must be true or false; {wanted}"
        return "livemode", f"a {'live' if livemode else 'test'}-mode event; {wanted}"
    if event.get("account") and not settings.stripe_connect_endpoint:
        return "connected_account", ("an event of a connected account; this endpoint is not a Connect endpoint "
                                     "(STRIPE_CONNECT_ENDPOINT)")
    return None


class CountOutcomes:
    """Counts responses by endpoint and status (plain ASGI: no task group per request)."""

    def __init__(self, app, counter: Counter) -> None:
        self.app, self.counter = app, counter

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def counted(message) -> None:
            if message["type"] == "http.response.start":
                path = scope["path"] if scope["path"] in ENDPOINTS else "other"  # bounded label values
                self.counter.labels(endpoint=path, status=str(message["status"])).inc()
            await send(message)

        await self.app(scope, receive, counted)


def create_app(settings: Settings) -> FastAPI:
    intake = Intake(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        await intake.close()

    app = FastAPI(title="customers intake", lifespan=lifespan, **fastapi_options(settings))
    app.state.intake = intake

    app.add_middleware(BodyLimit, max_bytes=settings.intake_max_body_bytes)  # every endpoint
    app.add_middleware(CountOutcomes, counter=intake.outcomes)

    @app.post("/webhooks/stripe", **STRIPE_DOC)
    async def stripe_webhook(request: Request) -> dict:  # the header is read as it is: no parameter model
        payload = await request.body()
        event = verify_stripe(payload, request.headers.get("stripe-signature"), settings.webhook_secrets)
        refused = foreign_event(event, settings)
        if refused:
            reason, detail = refused
            intake.refused.labels(reason=reason).inc()
            log.warning("refused Stripe event %s (%s): %s", event["id"], event["type"], detail)
            raise HTTPException(400, detail)
        await intake.publish(names.STRIPE_EVENTS, [(object_key(event), payload)])
        return {"received": True, "id": event["id"]}

    async def platform_events(request: Request, authorization: str | None, parse, topic: str) -> Any:
        """Events of the booking platform (bookings, messages): one object or an array, all valid or
        none published, keyed by expert; 202 once Kafka acknowledged every one."""
        if not bearer_matches(authorization, settings.ingest_token):
            raise HTTPException(401, "a valid ingest token is required", headers={"WWW-Authenticate": "Bearer"})
        try:
            body = parse_json(await request.body())
        except TooDeep as exc:
            raise HTTPException(400, str(exc)) from exc
        except ValueError:
            return JSONResponse({"detail": "body is not JSON", "errors": []}, status_code=422)
        items = body if isinstance(body, list) else [body]
        if len(items) > settings.intake_max_events:
            raise HTTPException(413, f"more than {settings.intake_max_events} events in one request; "
                                     "nothing was published")
        errors, events = [], []
        for index, item in enumerate(items):
            try:
                events.append(parse(item))
            except ValidationError as exc:
                errors.append({"index": index, "errors": json.loads(exc.json(include_url=False, include_input=False))})
        if errors or not events:
            detail = "no events" if not events and not errors else "invalid events; nothing was published"
            return JSONResponse({"detail": detail, "errors": errors}, status_code=422)
        await intake.publish(topic, [(e.expert_id, json.dumps(e.model_dump(mode="json")).encode()) for e in events])
        return {"accepted": len(events), "event_ids": [e.event_id for e in events]}

    @app.post("/events/bookings", status_code=202, **BOOKINGS_DOC)
    async def booking_events(request: Request, authorization: str | None = Header(default=None)) -> Any:
        return await platform_events(request, authorization, parse_booking_event, names.BOOKINGS)

    @app.post("/events/messages", status_code=202, **MESSAGES_DOC)
    async def message_events(request: Request, authorization: str | None = Header(default=None)) -> Any:
        return await platform_events(request, authorization, parse_message_event, names.COMMUNICATIONS)

    @app.post("/webhooks/resend", **RESEND_DOC)
    async def resend_webhook(request: Request) -> dict:
        if not settings.resend_secrets:
            raise HTTPException(404, "the Resend endpoint is not enabled (RESEND_WEBHOOK_SECRET)")
        payload = await request.body()
        message_id = verify_svix(payload, request.headers, settings.resend_secrets)
        kind = provider_type(payload)
        if kind not in DELIVERY:  # another kind of event: nothing the read model keeps
            return {"received": True, "id": message_id, "published": False}
        try:
            event = email_event_adapter.validate_json(payload)
        except ValidationError as exc:
            fields = sorted({".".join(str(p) for p in e["loc"]) for e in exc.errors()})
            raise HTTPException(400, f"the event cannot be stored: {', '.join(fields)}") from exc
        # only what the read model keeps (which email, what, when): not the subject, not the addresses
        await intake.publish(names.EMAIL_EVENTS, [(event.email_id, event.model_dump_json().encode())])
        return {"received": True, "id": message_id, "published": True}

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(intake.registry), media_type=CONTENT_TYPE_LATEST)

    describe(app)
    return app
