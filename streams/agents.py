"""The worker's agents: thin loops that decode, hand to the projection, and acknowledge.

* `normalise_stripe`: `stripe-events` -> `customer-activity` (one payment fact per event).
* `project`: `bookings` + `customer-activity` + `customer-commands` -> the read model.

Both take records in small batches. A batch is acknowledged (and so later committed to
Kafka) only after its output is durable: facts acknowledged by Kafka, or read-model rows and
offsets committed to the database (see `projections.projector`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import datetime, timezone
from typing import Any

import faust
from sqlalchemy.exc import InterfaceError, OperationalError

from customers import kafka as names
from customers.settings import Settings
from projections.projector import Position, Projector
from customers.facts import PaymentObserved
from streams import stripe_api, stripe_facts
from streams.decode import dead_letter, decoder_for
from streams.metrics import WorkerMetrics

log = logging.getLogger("customers.worker")

TRANSIENT = (OperationalError, InterfaceError, ConnectionError, OSError, asyncio.TimeoutError)


def _position(event: faust.EventT) -> Position:
    msg = event.message
    ts = datetime.fromtimestamp(msg.timestamp, tz=timezone.utc) if msg.timestamp else None
    return Position(msg.topic, msg.partition, msg.offset, ts)


class Agents:
    def __init__(self, app: faust.App, settings: Settings, projector: Projector, metrics: WorkerMetrics) -> None:
        self.app, self.settings, self.projector, self.metrics = app, settings, projector, metrics
        self.stripe = stripe_api.client_for(settings)
        t = settings.topic
        self.stripe_topic = app.topic(t(names.STRIPE_EVENTS))
        self.activity_topic = app.topic(t(names.ACTIVITY))
        self.projected = app.topic(*(t(n) for n in names.PROJECTED))
        app.agent(self.stripe_topic, name="normalise_stripe")(self.normalise_stripe)
        app.agent(self.projected, name="project")(self.project)

    async def _to_dlq(self, event: faust.EventT, error: BaseException) -> None:
        msg = event.message
        value = dead_letter(msg.value, error, msg.topic, msg.partition, msg.offset)
        await self.app.producer.send_and_wait(names.dlq(msg.topic), msg.key, value, None, None, None)
        self.metrics.dead_letters.labels(topic=msg.topic).inc()
        log.warning("dead-lettered %s[%s]@%s: %s", msg.topic, msg.partition, msg.offset, type(error).__name__)

    # --- stripe-events -> customer-activity --------------------------------------------------

    async def normalise_stripe(self, stream: faust.StreamT) -> None:
        async for batch in stream.take_events(self.settings.worker_batch_size, self.settings.worker_batch_window):
            pending = []
            for event in batch:
                try:
                    fact = stripe_facts.to_fact(json.loads(event.message.value))
                except (ValueError, KeyError, TypeError) as exc:
                    await self._to_dlq(event, exc)
                    continue
                for out in await self._with_lookup(fact):
                    pending.append(await self.app.producer.send(
                        self.activity_topic.get_topic_name(), out.kafka_key.encode(),
                        out.model_dump_json(exclude_none=True).encode(), None, None, None))
            # acknowledged only once Kafka has every fact of the batch
            await asyncio.gather(*pending)

    async def _with_lookup(self, fact) -> list:
        """The fact, plus what Stripe's API says of the payment when the event lacks something."""
        if self.stripe is None or not isinstance(fact, PaymentObserved) or not stripe_api.needs_lookup(fact):
            return [fact]
        extra = await stripe_api.lookup(self.stripe, fact)
        return [fact] if extra is None else [fact, extra]

    # --- bookings + activity + commands -> read model ----------------------------------------

    async def project(self, stream: faust.StreamT) -> None:
        async for batch in stream.take_events(self.settings.worker_batch_size, self.settings.worker_batch_window):
            decoded: list[tuple[Position, Any, faust.EventT]] = []
            for event in batch:
                msg = event.message
                try:
                    item = decoder_for(msg.topic, self.settings.topic_prefix)(msg.value)
                except ValueError as exc:  # pydantic's ValidationError is a ValueError
                    await self._to_dlq(event, exc)
                    item = None
                decoded.append((_position(event), item, event))
            await self._apply(decoded)

    async def _apply(self, decoded: list[tuple[Position, Any, faust.EventT]]) -> None:
        """Apply a batch; when it fails for a reason other than an outage, one record at a time."""
        try:
            await self._apply_with_retry([(p, i) for p, i, _ in decoded], attempts=1)
            return
        except Exception as exc:
            log.warning("batch failed (%s); applying its records one by one", type(exc).__name__)
        for pos, item, event in decoded:
            try:
                await self._apply_with_retry([(pos, item)], attempts=self.settings.dlq_max_attempts)
            except Exception as exc:  # poison: park it, record its offset, keep the partition flowing
                await self._to_dlq(event, exc)
                await self._apply_with_retry([(pos, None)], attempts=self.settings.dlq_max_attempts)

    async def _apply_with_retry(self, batch: list[tuple[Position, Any]], *, attempts: int) -> None:
        """Outages (database away) are retried until they end; other failures `attempts` times."""
        failures = outages = 0
        while True:
            started = time.perf_counter()
            try:
                result = await self.projector.apply(batch)
            except TRANSIENT as exc:
                outages += 1
                log.warning("database unavailable (%s), retrying", type(exc).__name__)
                await asyncio.sleep(min(5.0, 0.2 * outages))
                continue
            except Exception:
                failures += 1
                if failures >= attempts:
                    raise
                await asyncio.sleep(0.1 * failures)
                continue
            self.metrics.observe(result, time.perf_counter() - started, len(batch))
            return
