"""The worker's agents: thin loops that decode, hand to the projection, and acknowledge.

* `normalise_stripe`: `stripe-events` -> `customer-activity` (one payment fact per event).
* `project`: `bookings` + `customer-activity` + `customer-commands` -> the read model.

Both take records in small batches. A batch is acknowledged (and so later committed to
Kafka) only after its output is durable: facts acknowledged by Kafka, or read-model rows and
offsets committed to the database (see `projections.projector`). A record that cannot be
decoded or applied goes to its `.dlq` topic (`streams.poison`, shared with `customers replay`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
from datetime import datetime, timezone
from typing import Any

import faust
from aiokafka.admin import AIOKafkaAdminClient

from customers import kafka as names
from customers.facts import PaymentObserved
from customers.settings import Settings
from projections.projector import Applied, Projector, VersionChanged
from customers import stripe_facts
from streams import stripe_api
from streams.app import restart_process
from streams.batching import batches
from streams.metrics import WorkerMetrics
from streams.poison import Applier, Source

log = logging.getLogger("customers.worker")


async def committed_offsets(settings: Settings, group: str) -> dict[tuple[str, int], int]:
    """The offsets Kafka holds for a consumer group."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items() if meta.offset >= 0}


def _source(event: faust.EventT) -> Source:
    msg = event.message
    ts = datetime.fromtimestamp(msg.timestamp, tz=timezone.utc) if msg.timestamp else None
    return Source(msg.topic, msg.partition, msg.offset, msg.key, msg.value, ts)


class Agents:
    def __init__(self, app: faust.App, settings: Settings, projector: Projector, metrics: WorkerMetrics) -> None:
        self.app, self.settings, self.projector, self.metrics = app, settings, projector, metrics
        self.stripe = stripe_api.client_for(settings)
        self.charges_fetched: dict[str, None] = {}  # charges already asked of Stripe, oldest first
        t = settings.topic
        self.stripe_topic = app.topic(t(names.STRIPE_EVENTS))
        self.activity_topic = app.topic(t(names.ACTIVITY))
        self.projected = app.topic(*(t(n) for n in names.PROJECTED))
        app.agent(self.stripe_topic, name="normalise_stripe")(self.normalise_stripe)
        app.agent(self.projected, name="project")(self.project)
        app.on_partitions_assigned.connect(self.resume_from_database)
        self.applier = Applier(projector, self._send, prefix=settings.topic_prefix,
                               max_attempts=settings.dlq_max_attempts, applied=self._applied,
                               dead_lettered=lambda topic: metrics.dead_letters.labels(topic=topic).inc())
        self._batches_applied = 0
        self._verified: set = set()  # partitions whose position was checked since the assignment
        self._watch: asyncio.Future | None = None

    async def resume_from_database(self, sender: Any = None, assigned: Any = (), **_kw: Any) -> None:
        """After every assignment, the database says where each projected partition resumes.

        Kafka's committed offset trails the database's (records are acknowledged only after
        their transaction commits), so normally nothing needs moving: records at or below the
        stored offset are skipped by the projector. When Kafka's committed offset is AHEAD of the
        database (a restored database, offsets moved by hand), we move it back to the database's.

        Faust seeks every partition to Kafka's committed offset once its recovery finishes, and
        that may happen before or after this handler runs. So the database's offset is first
        committed to Kafka (Faust's own seek then lands on it) and then sought (in case Faust's
        seek came first). Whatever the order, consumption resumes where the database stops.
        """
        self._verified.clear()  # every partition is checked against the database again
        names_projected = {self.settings.topic(n) for n in names.PROJECTED}
        mine = [tp for tp in assigned if tp.topic in names_projected]
        if not mine:
            return
        stored = await self.projector.stored_offsets()
        committed = await committed_offsets(self.settings, self.app.conf.id)
        behind = {}
        for tp in mine:
            resume = stored.get((tp.topic, tp.partition), -1) + 1
            if committed.get((tp.topic, tp.partition), 0) > resume:
                log.warning("kafka is ahead of the database on %s[%s]; resuming at %s",
                            tp.topic, tp.partition, resume)
                await self.app.consumer._commit({tp: resume})
                await self.app.consumer.seek(tp, resume)
                behind[tp] = resume
        if behind:
            self._watch = asyncio.ensure_future(self._keep_back(behind))

    async def _keep_back(self, behind: dict, seconds: float = 60.0) -> None:
        """Until their first records arrive, partitions sought back to the database stay there.

        Faust's own seek after its recovery may read the committed offsets before ours landed and
        move the consumer forward again; with no new records, the first-records guard never sees
        it. So the consumer's position is checked each second and sought back while it is ahead.
        """
        deadline = asyncio.get_running_loop().time() + seconds
        while behind and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(1.0)
            for tp, resume in list(behind.items()):
                if tp in self._verified:
                    del behind[tp]
                    continue
                try:
                    position = await self.app.consumer.position(tp)
                except Exception:  # noqa: BLE001 - reassigned meanwhile: the next assignment checks again
                    del behind[tp]
                    continue
                if position is not None and position > resume:
                    log.warning("%s[%s] moved to %s past the database; back to %s", tp.topic, tp.partition,
                                position, resume)
                    await self.app.consumer._commit({tp: resume})
                    await self.app.consumer.seek(tp, resume)

    async def _send(self, topic: str, key: bytes | None, value: bytes) -> None:
        await self.app.producer.send_and_wait(topic, key, value, None, None, None)

    def _applied(self, result: Applied, seconds: float, records: int) -> None:
        self.metrics.observe(result, seconds, records)
        self._maybe_die_after_commit()

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
                for out in await self._with_lookup(fact):
                    pending.append(await self.app.producer.send(
                        self.activity_topic.get_topic_name(), out.kafka_key.encode(),
                        out.model_dump_json(exclude_none=True).encode(), None, None, None))
            # acknowledged only once Kafka has every fact of the batch
            await asyncio.gather(*pending)

    async def _with_lookup(self, fact) -> list:
        """The fact, plus what Stripe's API says of the payment when the event lacks something."""
        if self.stripe is None or not isinstance(fact, PaymentObserved):
            return [fact]
        found = [fact]
        if stripe_api.needs_lookup(fact):
            found.append(await stripe_api.lookup(self.stripe, fact))
        charge_id = stripe_api.needs_charge(fact)
        if charge_id and charge_id not in self.charges_fetched:  # once per charge: later refunds are itemised
            self.charges_fetched[charge_id] = None
            while len(self.charges_fetched) > 10_000:
                self.charges_fetched.pop(next(iter(self.charges_fetched)))
            found.append(await stripe_api.charge_snapshot(self.stripe, charge_id, source_event=fact.stripe_event_id,
                                                          at=datetime.now(timezone.utc)))
        return [f for f in found if f is not None]

    # --- bookings + activity + commands -> read model ----------------------------------------

    async def project(self, stream: faust.StreamT) -> None:
        async for batch in batches(stream.channel, self.settings.worker_batch_size, self.settings.worker_batch_window):
            batch = await self._without_gaps(batch)
            decoded = await self.applier.decode([_source(event) for event in batch])
            try:
                await self.applier.apply(decoded)
            except VersionChanged as exc:
                await self._follow(exc)

    async def _without_gaps(self, batch: list) -> list:
        """The first records of a partition since an assignment must follow what the database holds.

        If they start past the database's offset (records fetched from Kafka's committed offset,
        ahead of the database, before `resume_from_database` moved the partition back), the
        partition is sought back to the database's offset and its records in this batch are left
        for the re-read.
        """
        firsts: dict[Any, int] = {}
        for event in batch:
            tp = event.message.tp
            if tp not in self._verified:
                firsts[tp] = min(firsts.get(tp, event.message.offset), event.message.offset)
        if not firsts:
            return batch
        stored = await self.projector.stored_offsets()
        earliest = await self.app.consumer.earliest_offsets(*firsts)
        behind = set()
        for tp, first in firsts.items():
            resume = max(stored.get((tp.topic, tp.partition), -1) + 1, earliest.get(tp, 0))
            if first > resume:
                log.warning("%s[%s] starts at %s but the database resumes at %s; seeking back",
                            tp.topic, tp.partition, first, resume)
                await self.app.consumer.seek(tp, resume)
                behind.add(tp)
            else:
                self._verified.add(tp)
        return [e for e in batch if e.message.tp not in behind]

    async def _follow(self, change: VersionChanged) -> None:
        """A replay switched readers to a new version: start again on it, in this same process.

        Nothing of the refused batch was written or acknowledged; the new version's own
        offsets (in the database, and in its consumer group) say where to resume.
        """
        log.warning("readers now see version %s; restarting the worker on it", change.live)
        try:
            await asyncio.wait_for(self.app.consumer.stop(), 5)  # leave the group promptly
        except Exception:  # noqa: BLE001 - restarting anyway
            pass
        restart_process()

    def _maybe_die_after_commit(self) -> None:
        """Fault injection for tests: die by SIGKILL right after a database commit, before the ack."""
        self._batches_applied += 1
        limit = self.settings.fault_kill_after_batches
        if limit and self._batches_applied >= limit:
            log.warning("fault injection: killing the worker after a database commit")
            os.kill(os.getpid(), signal.SIGKILL)
