"""`customers replay`: rebuild the read model from offset zero into a new version, then switch.

The current version keeps serving (and the worker keeps it fresh) while the replay folds the
retained projected topics up to their current ends into version N, in memory, share by share, in
N fold processes, through the worker's own rules (`streams.fold`, `projections.memory`), and
COPYs each table once into N's bare tables; then N gets its primary keys and indexes (built on
several connections at once) and its tables are analysed and attached, and only then are N's
offsets (the ends it folded to) and the erasure-ledger rows the fold added written, in one
transaction. Until that transaction, a rerun starts N clean; after it, a rerun resumes.

The replay then catches up on what arrived meanwhile with the worker's normal batches, and one
transaction sweeps N up to the present (its rows counted appointments as of the replay's start,
see `projections.sweep`) and makes it live; the worker notices on its next batch, restarts itself
on N (whose consumer group the replay has kept at N's positions), catches up the rest and sweeps
N from then on. The old version's tables are dropped after a grace period.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from customers import kafka as names
from customers.settings import Settings
from projections.rules.status import Lifecycle
from projections import tables as t
from projections.db import bulk_upsert, make_engine, migrate
from projections.physical import finish_bare_version
from projections.projector import Projector, sweep_version
from projections.versions import begin_replay, drop_version, ensure_live, group_for, reset_version, switch_to
from streams import fold
from streams.poison import Applier, Source, kafka_time

log = logging.getLogger("customers.replay")
SWITCH_LAG = 500
SHARE_SIZE = 150_000  # most records a fold process holds at once: partitions are sliced to fit (its memory)


@dataclass
class Progress:
    version: int
    resumed: bool
    done: int  # records applied or skipped since offset zero
    total: int  # records in the topics right now
    rate: float  # records per second in this run
    switched: bool = False
    indexed: bool = False  # the version's secondary indexes are built
    fold: dict | None = None  # what the bulk fold did (`fold_history`), when this run folded


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
                 batch_size: int = 2000, grace: float | None = None, switch_lag: int = SWITCH_LAG,
                 processes: int | None = None, fold_batch: int = fold.FOLD_BATCH, share_size: int | None = SHARE_SIZE
                 ) -> Progress:
    """Rebuild into a new version and switch readers to it (see the module's docstring).

    `processes` fold processes (default: the CPUs; 1 on SQLite) fold the history, each holding at
    most `share_size` records at once; `batch_size` is the batch of the catch-up on the live tail,
    `fold_batch` the batch of the fold's rules.
    """
    started, applied_here = time.monotonic(), 0
    await migrate(settings.database_url)
    await names.ensure_topics(settings)
    engine = make_engine(settings.database_url)
    old = await ensure_live(engine, settings.consumer_group)
    version, resumed = await begin_replay(engine, settings.consumer_group, bare=True)
    projector = Projector(engine, version=version, id_secret=settings.customer_id_secret, lifecycle=Lifecycle.of(settings))
    topics = [settings.topic(n) for n in names.PROJECTED]
    progress = Progress(version, resumed, 0, 0, 0.0)
    if not await projector.stored_offsets():  # nothing folded yet, or a fold cut short: start clean
        startup = round(time.monotonic() - started, 2)
        report = await fold_history(settings, engine, version, processes=processes, batch_size=fold_batch,
                                    progress=progress, on_progress=on_progress, clean=resumed, share_size=share_size)
        report["seconds"] = {"startup": startup, **report["seconds"]}
        progress.fold = report
        applied_here = report["records"]
        log.info("version %s folded: %s", version, report)
        progress.indexed = True
    tail_started = time.monotonic()
    consumer = AIOKafkaConsumer(*topics, bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False,
                                group_id=None, auto_offset_reset="earliest", max_partition_fetch_bytes=4 << 20)
    producer = names.LazyProducer(settings, timeout=60.0)  # dead letters
    await consumer.start()
    applier = Applier(projector, lambda topic, key, value: producer.publish(topic, [(key, value)]),
                      prefix=settings.topic_prefix, max_attempts=settings.dlq_max_attempts)
    try:
        tps = await _partitions(consumer, topics)
        consumer.unsubscribe()
        consumer.assign(tps)
        stored = await projector.stored_offsets()
        for tp in tps:
            consumer.seek(tp, stored.get((tp.topic, tp.partition), -1) + 1)
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
                await finish_bare_version(engine, version)  # a resumed version: whatever it lacks
                progress.indexed = True
                continue  # what arrived while the indexes were built
            records = await consumer.getmany(*tps, timeout_ms=500, max_records=batch_size)
            batch = [_source(r) for items in records.values() for r in items]
            if batch:
                # what cannot be decoded or applied goes to its .dlq topic, as in the worker
                await applier.apply(await applier.decode(batch))
                applied_here += len(batch)
        tail = time.monotonic()
        await _hand_over(settings, engine, consumer, tps, version)
        if progress.fold is not None:
            progress.fold["seconds"]["tail"] = round(tail - tail_started, 2)
            progress.fold["seconds"]["hand_over"] = round(time.monotonic() - tail, 2)
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


async def fold_history(settings: Settings, engine, version: int, *, processes: int | None, batch_size: int,
                       progress: Progress, on_progress: Callable[[Progress], None] | None, clean: bool = True,
                       share_size: int | None = SHARE_SIZE) -> dict:
    """Fold the topics' history up to their current ends into `version`'s bare tables
    (`streams.fold`), give them their keys and indexes, then record the ledger rows and the
    positions it reached in one transaction: until that commits, a rerun starts the fold again
    from a clean version. `clean`: empty the version's tables first (they may hold a cut-short fold's rows)."""
    clock = time.monotonic()
    if clean:  # what a fold cut short left
        await reset_version(engine, version)
    topics = [settings.topic(n) for n in names.PROJECTED]
    ends = await names.end_offsets(settings, topics)
    shares = fold.shares_of(ends, settings, share_size)
    n = 1 if engine.dialect.name != "postgresql" else max(1, processes or os.cpu_count() or 1)
    progress.total, progress.done = sum(ends.values()), 0
    seconds: dict[str, float] = {"prepare": round(time.monotonic() - clock, 2)}
    runner = _Runner(n, progress, on_progress)
    clock = time.monotonic()
    plan = fold.Plan()
    if len(shares) > 1:  # the shares of one partition number together; process k takes the k-th, k + n-th, ...
        by_partition: dict[tuple, list] = {}
        for share in shares:
            by_partition.setdefault(share.tps, []).append(share)
        numbers = list(by_partition.values())
        groups = [numbers[k::n] for k in range(min(n, len(numbers)))]
        scans = [scan for found in await runner.map(fold.scan_job, [(settings, g, ends) for g in groups])
                 for scan in found]
        ids = {i for scan in scans for _src, named in scan.unkeyed for i in named}
        providers = {email_id for scan in scans for _src, email_id in scan.reports}
        located = {share: found for answers in await runner.map(
            fold.locate_job, [(settings, g, ends, ids, providers) for g in groups])
            for share, found in answers} if ids or providers else {}
        plan = fold.route(scans, located)
    seconds["route"] = round(time.monotonic() - clock, 2)
    clock = time.monotonic()
    jobs = [(settings, version, share, ends, plan.moved.get(share.index, set()), plan.extra.get(share.index, []),
             plan.copies.get(share.index, []), batch_size)
            for share in sorted(shares, key=lambda share: -sum(ends.get(tp, 0) for tp in share.tps))]
    results = await runner.map(fold.fold_job, jobs, counts=True)
    seconds["fold_and_copy"] = round(time.monotonic() - clock, 2)
    erasures: dict[str, datetime] = {}
    refs: dict[tuple[str, str], datetime] = {}
    last: dict[tuple[str, int], tuple[int, datetime | None]] = {}
    for r in results:
        for h, at in r.erasures.items():
            erasures[h] = max(at, erasures.get(h, at))
        for ref, at in r.erased_refs.items():
            refs[ref] = max(at, refs.get(ref, at))
        last.update(r.last)
    clock = time.monotonic()
    indexes = await finish_bare_version(engine, version, connections=max(4, n))
    seconds["index"] = round(time.monotonic() - clock, 2)
    async with engine.begin() as conn:
        await bulk_upsert(conn, t.erasures, [{"email_hash": h, "erased_at": at} for h, at in sorted(erasures.items())],
                          ["email_hash"])
        await bulk_upsert(conn, t.erased_refs, [{"kind": k, "ref": r, "erased_at": at}
                                                for (k, r), at in sorted(refs.items())], ["kind", "ref"])
        await bulk_upsert(conn, t.projection_offsets, [
            {"version": version, "topic": topic, "partition": partition, "offset": offset, "event_time": at}
            for (topic, partition), (offset, at) in sorted(last.items())], ["version", "topic", "partition"])
    progress.done = progress.total
    rows: dict[str, int] = {}
    for r in results:
        for name, count in r.rows.items():
            rows[name] = rows.get(name, 0) + count
    return {"records": sum(r.records for r in results), "dead_lettered": sum(r.dead for r in results),
            "processes": n, "shares": len(shares), "slices": shares[0].parts if shares else 1, "rows": rows, "seconds": seconds, "indexes": indexes,
            "peak_rss_mb": max((r.peak_rss_mb or 0) for r in results) if results else None,
            "shares_seconds": [r.seconds for r in results]}


class _Runner:
    """Runs jobs in processes of their own, at most `n` at a time, or in this process, one after
    the other, when `n` is 1; reports the
    records folded as they are. A job's process sends its result and exits at once
    (`streams.fold.run_child`): a folded share's tables are garbage by then, and taking a
    gigabyte of objects apart one by one would only cost time."""

    def __init__(self, n: int, progress: Progress, on_progress: Callable[[Progress], None] | None) -> None:
        self.n, self.progress, self.on_progress = n, progress, on_progress
        self.started = time.monotonic()
        # forked from a server process that imported the fold once (a fresh, single-threaded
        # interpreter: no event loop or connection of this process is inherited)
        self.context = multiprocessing.get_context("forkserver")
        self.context.set_forkserver_preload(["streams.fold"])
        self.counter = self.context.Value("q", 0) if n > 1 else None

    async def map(self, job: Callable, args: list, counts: bool = False) -> list:
        if self.n == 1:
            return [await asyncio.to_thread(self._inline, job, a) for a in args]  # a loop of its own
        results: list = [None] * len(args)
        waiting, running = list(enumerate(args)), {}
        try:
            while waiting or running:
                while waiting and len(running) < self.n:
                    i, a = waiting.pop(0)
                    receive, send = self.context.Pipe(duplex=False)
                    child = self.context.Process(target=fold.run_child, args=(job, a, send, self.counter),
                                                 daemon=True, name=f"fold-{i}")
                    child.start()
                    send.close()
                    running[i] = (child, receive)
                await asyncio.sleep(0.05)
                for i, (child, receive) in list(running.items()):
                    if not receive.poll():
                        continue
                    try:
                        ok, value = receive.recv()
                    except EOFError:
                        child.join(1)
                        raise RuntimeError(f"fold process {child.pid} ended without a result "
                                           f"(exit code {child.exitcode})") from None
                    if not ok:
                        raise value
                    results[i] = value
                    child.join()
                    del running[i]
                if counts:
                    self._report(self.counter.value)
        finally:
            for child, _receive in running.values():  # a failure: the others are of no use
                child.kill()
        return results

    def _inline(self, job: Callable, args: tuple):
        seen = [self.progress.done]

        def tick(n: int) -> None:
            seen[0] += n
            self._report(seen[0])
        fold._TICK = tick
        try:
            return job(args)
        finally:
            fold._TICK = None

    def _report(self, done: int) -> None:
        self.progress.done = done
        self.progress.rate = done / max(time.monotonic() - self.started, 1e-6)
        if self.on_progress:
            self.on_progress(self.progress)


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
        await sweep_version(conn, version, settings.customer_id_secret, datetime.now(timezone.utc), Lifecycle.of(settings))
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
