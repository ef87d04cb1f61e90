"""The worker's agents: thin loops that decode, hand to the projection, and acknowledge.

* `normalise_stripe`: `stripe-events` -> `customer-activity` (one payment fact per event).
* `project`: `bookings` + `customer-activity` + `customer-commands` -> the read model.

Both take records in small batches. A batch is acknowledged (and so later committed to
Kafka) only after its output is durable: facts acknowledged by Kafka, or read-model rows and
offsets committed to the database (see `projections.projector`). A record that cannot be
decoded or applied goes to its `.dlq` topic (`streams.poison`, shared with `customers replay`).

What is not the loop lives in modules of its own: the retry policy (`streams.retry`), dead
letters (`streams.poison`), the gap guard (`streams.gaps`), the seeks after a rebalance
(`streams.rebalance`) and the Stripe look-ups (`streams.stripe_api.Lookups`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime, timezone

import faust

from customers import kafka as names
from customers import stripe_facts
from customers.settings import Settings
from projections.live import GaveUp, Resident
from projections.projector import Projector, VersionChanged
from streams import stripe_api
from streams.app import restart_process
from streams.batching import batches, waiting
from streams.gaps import GapGuard
from streams.metrics import WorkerMetrics
from streams.poison import Applier, Source
from streams.rebalance import ResumeFromDatabase

log = logging.getLogger("customers.worker")


def _source(event: faust.EventT) -> Source:
    msg = event.message
    ts = datetime.fromtimestamp(msg.timestamp, tz=timezone.utc) if msg.timestamp else None
    return Source(msg.topic, msg.partition, msg.offset, msg.key, msg.value, ts)


class Agents:
    def __init__(self, app: faust.App, settings: Settings, projector: Projector, metrics: WorkerMetrics) -> None:
        self.app, self.settings, self.projector, self.metrics = app, settings, projector, metrics
        self.lookups = stripe_api.Lookups(stripe_api.client_for(settings))
        t = settings.topic
        self.stripe_topic = app.topic(t(names.STRIPE_EVENTS))
        self.activity_topic = app.topic(t(names.ACTIVITY))
        self.projected = app.topic(*(t(n) for n in names.PROJECTED))
        app.agent(self.stripe_topic, name="normalise_stripe")(self.normalise_stripe)
        app.agent(self.projected, name="project")(self.project)
        self.gaps = GapGuard(app, projector)
        self.rebalance = ResumeFromDatabase(app, settings, projector, self.gaps.verified)
        self.applier = Applier(projector, self._send, prefix=settings.topic_prefix,
                               max_attempts=settings.dlq_max_attempts, applied=metrics.observe,
                               dead_lettered=lambda topic: metrics.dead_letters.labels(topic=topic).inc())
        # PostgreSQL: the state lives in this worker (`projections.live`); SQLite: read per batch
        self.resident = (Resident(projector.engine, version=projector.version, id_secret=projector.id_secret,
                                  to_dlq=self.applier.to_dlq, max_rows=settings.worker_state_max_rows,
                                  follow_live=projector.follow_live, lifecycle=projector.lifecycle)
                         if projector.engine.dialect.name == "postgresql" else None)
        if self.resident:
            app.on_partitions_assigned.connect(self._assigned)
            self.resident.committed = lambda *told: self.applier.applied(*told)  # (wrapped by tests' fault hooks)

    async def _send(self, topic: str, key: bytes | None, value: bytes) -> None:
        await self.app.producer.send_and_wait(topic, key, value, None, None, None)

    # --- stripe-events -> customer-activity --------------------------------------------------

    async def normalise_stripe(self, stream: faust.StreamT) -> None:
        async for batch in batches(stream.channel, self.settings.worker_batch_size, self.settings.worker_batch_window):
            pending = []
            for event in batch:
                try:
                    fact = stripe_facts.to_fact(json.loads(event.message.value))
                except (ValueError, KeyError, TypeError) as exc:
                    await self.applier.to_dlq(_source(event), exc)
                    continue
                for out in await self.lookups.with_lookup(fact):
                    pending.append(await self.app.producer.send(
                        self.activity_topic.get_topic_name(), out.kafka_key.encode(),
                        out.model_dump_json(exclude_none=True).encode(), None, None, None))
            # acknowledged only once Kafka has every fact of the batch
            await asyncio.gather(*pending)

    # --- bookings + activity + commands -> read model ----------------------------------------

    async def project(self, stream: faust.StreamT) -> None:
        if self.resident:
            return await self._project_resident(stream)
        async for batch in batches(stream.channel, self.settings.worker_batch_size, self.settings.worker_batch_window):
            batch = await self.gaps.without_gaps(batch)
            decoded = await self.applier.decode([_source(event) for event in batch])
            try:
                await self.applier.apply(decoded)
            except VersionChanged as exc:
                await self._follow(exc)

    async def _project_resident(self, stream: faust.StreamT) -> None:
        """Batches through the state held in memory: while one batch commits, the next is folded.
        A batch is acknowledged to Kafka once its transaction committed."""
        unacked: list = []
        async for batch in batches(stream.channel, self.settings.worker_batch_size,
                                   self.settings.worker_batch_window, ack=False):
            kept = await self.gaps.without_gaps(batch)
            decoded = await self.applier.decode([_source(event) for event in kept])
            wait = not waiting(stream.channel)  # nothing queued: commit now rather than with the next batch
            try:
                await self._apply_resident(decoded, wait)
            except VersionChanged as exc:
                await self._follow(exc)
                return
            for event in unacked:  # the batch before this one is committed
                event.ack()
            unacked = [] if wait else batch
            if wait:
                for event in batch:
                    event.ack()

    async def _apply_resident(self, decoded: list, wait: bool) -> None:
        """A batch that cannot be written (`GaveUp`) is applied one record at a time; a record that
        cannot be written alone goes to its dead-letter topic and its position is written."""
        try:
            await self.resident.apply(decoded, wait=wait)
            return
        except GaveUp as exc:
            log.warning("batch not written (%s); applying its records one by one", exc)
        for record, item in decoded:
            try:
                await self.resident.apply([(record, item)])
            except GaveUp as exc:
                await self.applier.to_dlq(record, exc.__cause__ or exc)
                await self.resident.apply([(record, None)])

    async def _assigned(self, sender: object = None, assigned: object = (), **_kw: object) -> None:
        projected = {self.settings.topic(n) for n in names.PROJECTED}
        await self.resident.assigned({(tp.topic, tp.partition) for tp in assigned if tp.topic in projected})

    async def restart(self) -> None:
        """Leave the consumer group promptly and start this worker again in place."""
        try:
            await asyncio.wait_for(self.app.consumer.stop(), 5)
        except Exception:  # noqa: BLE001 - restarting anyway
            pass
        restart_process()

    async def _follow(self, change: VersionChanged) -> None:
        """A replay switched readers to a new version: start again on it, in this same process.

        Nothing of the refused batch was written or acknowledged; the new version's own
        offsets (in the database, and in its consumer group) say where to resume.
        """
        log.warning("readers now see version %s; restarting the worker on it", change.live)
        await self.restart()
