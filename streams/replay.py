"""`customers replay`: rebuild the read model from offset zero into a new version, then switch.

The current version keeps serving (and the worker keeps it fresh) while the replay reads the
retained projected topics (bookings, customer-activity, customer-commands) from their start into
version N. On PostgreSQL N has tables of its own, with only the indexes the projection looks rows
up by to maintain while they fill (`projections.physical`). Positions live in N's own `projection_offsets`, written with N's
rows, so a replay killed at any point resumes where its last transaction ended. Once N is within
`SWITCH_LAG` records of the topics' ends, N's indexes are built and its tables analysed, once;
the replay then catches up on what arrived meanwhile, and one transaction sweeps N up to the
present (its rows counted appointments as of the replay's start, see `projections.sweep`) and
makes it live; the worker notices on its next batch, restarts itself on N (whose consumer group
the replay has kept at N's positions), catches up the rest and sweeps N from then on. The old
version's tables are dropped after a grace period.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from customers import kafka as names
from customers.settings import Settings
from projections.db import make_engine, migrate
from projections.physical import index_version
from projections.projector import Projector, sweep_version
from projections.versions import begin_replay, drop_version, ensure_live, group_for, switch_to
from streams.poison import Applier, Source, kafka_time

log = logging.getLogger("customers.replay")
SWITCH_LAG = 500


@dataclass
class Progress:
    version: int
    resumed: bool
    done: int  # records applied or skipped since offset zero
    total: int  # records in the topics right now
    rate: float  # records per second in this run
    switched: bool = False
    indexed: bool = False  # the version's secondary indexes are built


def _source(record) -> Source:
    return Source(record.topic, record.partition, record.offset, record.key, record.value,
                  kafka_time(record.timestamp))


async def _partitions(consumer: AIOKafkaConsumer, topics: list[str]) -> list[TopicPartition]:
    tps = []
    for topic in topics:
        parts = consumer.partitions_for_topic(topic) or set()
        tps += [TopicPartition(topic, p) for p in sorted(parts)]
    return tps


async def replay(settings: Settings, *, on_progress: Callable[[Progress], None] | None = None,
                 batch_size: int = 2000, grace: float | None = None, switch_lag: int = SWITCH_LAG) -> Progress:
    await migrate(settings.database_url)
    await names.ensure_topics(settings)
    engine = make_engine(settings.database_url)
    old = await ensure_live(engine, settings.consumer_group)
    version, resumed = await begin_replay(engine, settings.consumer_group)
    projector = Projector(engine, version=version, id_secret=settings.customer_id_secret)
    topics = [settings.topic(n) for n in names.PROJECTED]
    consumer = AIOKafkaConsumer(*topics, bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False,
                                group_id=None, auto_offset_reset="earliest", max_partition_fetch_bytes=4 << 20)
    producer = names.LazyProducer(settings, timeout=60.0)  # dead letters
    await consumer.start()
    applier = Applier(projector, lambda topic, key, value: producer.publish(topic, [(key, value)]),
                      prefix=settings.topic_prefix, max_attempts=settings.dlq_max_attempts)
    started, applied_here = time.monotonic(), 0
    try:
        tps = await _partitions(consumer, topics)
        consumer.unsubscribe()
        consumer.assign(tps)
        stored = await projector.stored_offsets()
        for tp in tps:
            consumer.seek(tp, stored.get((tp.topic, tp.partition), -1) + 1)
        progress = Progress(version, resumed, 0, 0, 0.0)
        while True:
            ends = await consumer.end_offsets(tps)
            positions = {tp: await consumer.position(tp) for tp in tps}
            progress.total = sum(ends.values())
            progress.done = sum(positions.values())
            progress.rate = applied_here / max(time.monotonic() - started, 1e-6)
            if on_progress:
                on_progress(progress)
            if sum(ends[tp] - positions[tp] for tp in tps) <= switch_lag:
                if progress.indexed:
                    break
                await _index(engine, version)
                progress.indexed = True
                continue  # what arrived while the indexes were built
            records = await consumer.getmany(*tps, timeout_ms=500, max_records=batch_size)
            batch = [_source(r) for items in records.values() for r in items]
            if batch:
                # what cannot be decoded or applied goes to its .dlq topic, as in the worker
                await applier.apply(await applier.decode(batch))
                applied_here += len(batch)
        await _hand_over(settings, engine, consumer, tps, version)
        progress.switched = True
        progress.rate = applied_here / max(time.monotonic() - started, 1e-6)
        if on_progress:
            on_progress(progress)
    finally:
        await consumer.stop()
        await producer.close()
    await asyncio.sleep(settings.kafka_session_timeout + 5 if grace is None else grace)
    if old != version:
        await drop_version(engine, old)
    await projector.statistics.settle()
    await engine.dispose()
    return progress


async def _index(engine, version: int) -> None:
    started = time.monotonic()
    async with engine.begin() as conn:
        await index_version(conn, version)
    log.info("version %s indexed and analysed in %.1f s", version, time.monotonic() - started)


async def _hand_over(settings: Settings, engine, consumer, tps, version: int) -> None:
    """Switch readers to `version` and leave its consumer group at the version's positions."""
    projector = Projector(engine, version=version, id_secret=settings.customer_id_secret)
    stored = await projector.stored_offsets()
    offsets = {tp: OffsetAndMetadata(stored[(tp.topic, tp.partition)] + 1, "")
               for tp in tps if (tp.topic, tp.partition) in stored}
    committer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers,
                                 group_id=group_for(settings.consumer_group, version), enable_auto_commit=False)
    await committer.start()
    try:
        if offsets:
            committer.assign(list(offsets))
            await committer.commit(offsets)
    finally:
        await committer.stop()
    async with engine.begin() as conn:  # the replay is N's only writer until this commits
        await sweep_version(conn, version, settings.customer_id_secret, datetime.now(timezone.utc))
        await switch_to(conn, version)
    log.info("readers switched to version %s", version)


async def status(settings: Settings) -> dict:
    """Versions, and for each one the records applied against the topics' ends."""
    from projections.versions import versions

    ends = await names.end_offsets(settings, [settings.topic(n) for n in names.PROJECTED])
    total = sum(ends.values())
    engine = make_engine(settings.database_url)
    try:
        async with engine.connect() as conn:
            rows = await versions(conn)
        out = []
        for row in rows:
            stored = await Projector(engine, version=row["version"], id_secret="").stored_offsets()
            done = sum(o + 1 for o in stored.values())
            out.append({"version": row["version"], "state": row["state"], "applied": done, "total": total,
                        "lag": max(total - done, 0)})
        return {"versions": out}
    finally:
        await engine.dispose()
