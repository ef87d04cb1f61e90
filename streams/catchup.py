"""Bulk catch-up: a worker far behind its partitions folds the backlog at once, then runs as usual.

A worker that starts (after an outage, a deployment, a long stop) more than `CATCHUP_THRESHOLD`
records behind the live version's stored offsets does not crawl through the backlog in batches
of `WORKER_BATCH_SIZE`. Before it joins its consumer group it takes the backlog in *rounds* of at
most `CATCHUP_MAX_RECORDS` records:

1. for the whole catch-up, the version's own lock, exclusively, at session level
   (`projections.claims`), held by the session every round is written in (`_Writer`): other
   workers' batches wait, and then skip what it applied; a session that ends takes the lock
   with it and ends the catch-up, nothing of it written afterwards;
2. each round, the records after the offsets reached so far up to the topics' ends (every
   projected topic, every partition, merged in timestamp order as a replay merges them);
3. every row those records may read that the state does not hold yet
   (`projections.resident.load_for`: all the rows of the experts they reach) into the replay's
   in-memory state (`projections.memory`), kept from round to round;
4. the records folded through the worker's own unit of work (`projections.projector.run_batch`),
   a failing record dead-lettered as in the worker (`streams.fold.Applying`);
5. what the round changed, the erasure ledger's new entries, the insight sums' differences and
   the round's offsets, written in one transaction by a writer thread while the next round is
   read and folded.

Rounds continue while more than the threshold remains; then the database's offsets are committed
to the version's consumer group and the worker joins it, resuming where the rounds stopped. A round
that fails to write rolls back and stops the catch-up: the rounds before it stay, and the batches
(or the next start) read the rest again. PostgreSQL only (key lists travel as array parameters);
on SQLite the worker catches up in batches.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy import text

from customers import kafka as names
from customers.kafka import end_offsets
from customers.settings import Settings
from projections.rules.status import Lifecycle
from projections import claims
from projections import tables as t
from projections.db import make_engine, upsert
from projections.physical import partition_name
from projections.projector import Statistics, VersionChanged, stored_offsets
from projections.fences import bump_generations
from projections.live import EPOCH
from projections.memory import MemoryStore, changed_in, close_journal, open_journal, rows_held, scopes_in
from projections.resident import Held, load_for, write_changed
from projections.sweep import watermark
from projections.versions import group_for, live_version
from streams.decode import decoder_for
from streams.fold import FOLD_BATCH, Applying, DeadLetters, Tp, merged, read_partitions
from streams.poison import kafka_time

log = logging.getLogger("customers.catchup")


@dataclass
class Round:
    """One round of a catch-up: what it read, applied and wrote, and where its time went."""

    records: int = 0
    dead: int = 0
    experts_loaded: int = 0
    rows_held: int = 0  # rows of the state after its load
    rows_written: dict[str, int] = field(default_factory=dict)
    write_seconds: dict[str, float] = field(default_factory=dict)  # per table
    seconds: dict[str, float] = field(default_factory=dict)


@dataclass
class CatchUp:
    """What a catch-up did: the backlog it found, its rounds, and what was left for the batches."""

    behind: int
    rounds: list[Round] = field(default_factory=list)
    left: int = 0
    seconds: float = 0.0

    @property
    def records(self) -> int:
        return sum(r.records for r in self.rounds)


def backlog(stored: dict[Tp, int], ends: dict[Tp, int]) -> int:
    """Records after the stored offsets (an offset is the last record applied; none: -1)."""
    return sum(max(0, end - stored.get(tp, -1) - 1) for tp, end in ends.items())


def round_range(stored: dict[Tp, int], ends: dict[Tp, int], limit: int) -> tuple[dict[Tp, int], dict[Tp, int]]:
    """Pure: where each partition's round starts and ends (exclusive). Over `limit` records, each
    partition takes the same share of its own backlog, so that the round's records span about the
    same stretch of time on every partition."""
    starts = {tp: stored.get(tp, -1) + 1 for tp in ends}
    total = backlog(stored, ends)
    if total <= limit:
        return starts, dict(ends)
    cut = {}
    for tp, end in ends.items():
        behind = max(0, end - starts[tp])
        cut[tp] = starts[tp] + (behind * limit) // total
    return starts, cut


class _Writer:
    """The rounds' writes, on a thread of its own (its own event loop and one connection of its
    own), so that PostgreSQL writes round n while this process folds round n+1; at most one round
    waits.

    Its connection takes the version's lock (`projections.claims`), exclusively, at session level,
    before the catch-up reads anything, and holds it to the end: no other worker's batch and no
    sweep writes the version meanwhile, and every round is written in that same session. A session
    that ends (PostgreSQL restarted, the connection cut) takes the lock with it; its rounds then
    fail, and so does every later one: nothing is written from a state another worker may have
    changed since, and a catch-up that stops leaves no round behind to be written later."""

    def __init__(self, settings: Settings, version: int) -> None:
        self.settings, self.version = settings, version
        self.jobs: queue.Queue = queue.Queue(maxsize=1)
        self.error: BaseException | None = None
        self.locked = threading.Event()  # set once the lock is held (or taking it failed)
        self.thread = threading.Thread(target=lambda: asyncio.run(self._main()), name="catchup-writer", daemon=True)
        self.thread.start()

    async def _main(self) -> None:
        engine = make_engine(self.settings.database_url)
        try:
            async with engine.connect() as conn:
                lock = claims.lock_id(("version", self.version))
                await conn.execute(text("SELECT pg_advisory_lock(:id)"), {"id": lock})  # no batch beside the rounds
                await conn.commit()
                self.locked.set()
                try:
                    await self._serve(conn)
                finally:
                    try:
                        await conn.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": lock})
                        await conn.commit()
                    except Exception:  # noqa: BLE001 - a session that ended let go of it already
                        pass
                if self.error is None:  # the tables changed a lot: the planner's statistics follow
                    await self._analyse(conn)
        except BaseException as exc:  # noqa: BLE001 - raised in the catch-up's own thread
            if self.error is None:
                self.error = exc
        finally:
            self.locked.set()
            await engine.dispose()

    async def _serve(self, conn) -> None:
        while (job := self.jobs.get()) is not None:
            try:
                if self.error is None:
                    await self._write(conn, *job)
            except BaseException as exc:  # noqa: BLE001 - raised in the catch-up's own thread
                self.error = exc
            finally:
                self.jobs.task_done()
        self.jobs.task_done()

    async def _analyse(self, conn) -> None:
        try:
            tables = ", ".join(f'"{partition_name(n, self.version)}"' for n in Statistics.TABLES)
            await conn.execute(text(f"ANALYZE {tables}"))
            await conn.commit()
        except Exception as exc:  # noqa: BLE001 - an optimisation; the worker analyses as it goes
            log.warning("ANALYZE after the catch-up failed (%s)", type(exc).__name__)

    async def _write(self, conn, result: Round, changes: list, scopes: set[str], erasures: dict, refs: dict,
                     counts: dict, positions: list) -> None:
        clock = time.monotonic()
        async with conn.begin():
            if await live_version(conn, lock=True) != self.version:  # readers moved on: written nowhere
                raise VersionChanged(await live_version(conn))
            # the workers holding these rows in memory read them again (`projections.fences`)
            await bump_generations(conn, self.version, None, scopes | ({EPOCH} if erasures else set()))
            result.rows_written = await write_changed(conn, self.version, changes, erasures, refs, counts,
                                                      result.write_seconds)
            if positions:
                await upsert(conn, t.projection_offsets, positions, ["version", "topic", "partition"])
        result.seconds["write"] = round(time.monotonic() - clock, 2)
        log.info("round of %s records written in %s s (%s)", result.records, result.seconds["write"],
                 result.write_seconds)

    async def holding(self) -> None:
        """Once the lock is held; raises what kept the writer from taking it."""
        await asyncio.get_running_loop().run_in_executor(None, self.locked.wait)
        self._raise()

    async def put(self, *job: Any) -> None:
        self._raise()
        await asyncio.get_running_loop().run_in_executor(None, self.jobs.put, job)

    async def drain(self) -> None:
        """Every round handed over is written (or failed)."""
        await asyncio.get_running_loop().run_in_executor(None, self.jobs.join)
        self._raise()

    async def finish(self) -> None:
        """Every round handed over written (or failed), the lock let go, the thread ended; raises
        what failed."""
        loop = asyncio.get_running_loop()
        if self.thread.is_alive():
            await loop.run_in_executor(None, self.jobs.put, None)
        await loop.run_in_executor(None, self.thread.join)
        self._raise()

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error


async def catch_up(settings: Settings, version: int, *, threshold: int | None = None,
                   max_records: int | None = None, max_rows: int | None = None, batch_size: int = FOLD_BATCH,
                   on_round: Callable[[Round, int], None] | None = None) -> CatchUp | None:
    """Fold the backlog of `version` in rounds while more than `threshold` records remain
    (None: nothing was far enough behind, or the database is not PostgreSQL)."""
    threshold = settings.catchup_threshold if threshold is None else threshold
    max_records = max_records or settings.catchup_max_records
    max_rows = max_rows or settings.catchup_max_rows
    topics = [settings.topic(n) for n in names.PROJECTED]
    engine = make_engine(settings.database_url)
    started = time.monotonic()
    try:
        if engine.dialect.name != "postgresql" or threshold <= 0:
            return None
        async with engine.connect() as conn:
            behind = backlog(await stored_offsets(conn, version), await end_offsets(settings, topics))
        if behind <= threshold:
            return None
        log.info("%s records behind (threshold %s): catching up in bulk", behind, threshold)
        done = CatchUp(behind)
        writer = _Writer(settings, version)
        try:
            await writer.holding()
            async with engine.connect() as conn:
                if await live_version(conn) == version:
                    await _rounds(settings, conn, version, topics, done, threshold, max_records, max_rows,
                                  batch_size, on_round, writer)
        except BaseException:
            try:  # what was handed over is written in the locked session or not at all, before the batches start
                await writer.finish()
            except BaseException:  # noqa: BLE001 - the first failure is the one to tell
                pass
            raise
        await writer.finish()
        async with engine.connect() as conn:
            stored = await stored_offsets(conn, version)
        done.left = backlog(stored, await end_offsets(settings, topics))
        await _tell_the_group(settings, version, stored)
        done.seconds = round(time.monotonic() - started, 2)
        log.info("caught up %s records in %s s, %s rounds; %s left", done.records, done.seconds, len(done.rounds),
                 done.left)
        return done
    finally:
        await engine.dispose()


async def _tell_the_group(settings: Settings, version: int, stored: dict[Tp, int]) -> None:
    """Commit the database's offsets to the version's consumer group, before this worker joins it,
    so that the records the catch-up applied are not fetched again only to be skipped. Best effort:
    while other workers are members of the group, Kafka refuses a commit from outside it, and they
    skip those records themselves (the database's offsets decide, `projections.projector`)."""
    if not stored:
        return
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False,
                                group_id=group_for(settings.consumer_group, version))
    try:
        await consumer.start()
        partitions = {TopicPartition(topic, p): offset + 1 for (topic, p), offset in stored.items()}
        consumer.assign(list(partitions))
        await consumer.commit(partitions)
    except Exception as exc:  # noqa: BLE001 - the group resumes from the database's offsets anyway
        log.info("the consumer group keeps its offsets (%s)", type(exc).__name__)
    finally:
        await consumer.stop()


async def _rounds(settings: Settings, conn, version: int, topics: list[str], done: CatchUp, threshold: int,
                  max_records: int, max_rows: int, batch_size: int,
                  on_round: Callable[[Round, int], None] | None, writer: _Writer) -> None:
    """The rounds, while `writer` holds the version's lock: each read, loaded and folded here on
    `conn` while the writer commits the one before."""
    positions = await stored_offsets(conn, version)
    await conn.commit()
    producer = names.LazyProducer(settings, timeout=60.0)
    dead_letters = DeadLetters(settings, producer)
    state, held = None, Held()
    gc_was = gc.isenabled()
    gc.disable()  # the state is a few large acyclic tables, as in a replay's fold
    try:
        while True:
            ends_now = await end_offsets(settings, topics)
            left = backlog(positions, ends_now)
            if left <= threshold:  # another worker may have caught up while this one waited for the lock
                break
            result, clock = Round(), time.monotonic()

            def lap(name: str) -> None:
                nonlocal clock
                now = time.monotonic()
                result.seconds[name] = round(now - clock, 2)
                clock = now

            starts, ends = round_range(positions, ends_now, max_records)
            read = await read_partitions(settings, list(ends), ends, starts=starts)
            lap("read")

            async def to_dlq(src: Any, exc: BaseException, result: Round = result) -> None:
                await dead_letters(src, exc)
                result.dead += 1

            decoded, decoders, prefix = [], {}, settings.topic_prefix
            for src in merged(read.values()):
                decode = decoders.get(src.topic) or decoders.setdefault(src.topic, decoder_for(src.topic, prefix))
                result.records += 1
                try:
                    decoded.append((src, decode(src.value)))
                except ValueError as exc:
                    await to_dlq(src, exc)
            lap("decode")

            experts = len(held.experts)
            state = await load_for(conn, version, settings.customer_id_secret, [item for _, item in decoded],
                                   state, held)
            await conn.commit()
            result.experts_loaded = len(held.experts) - experts
            result.rows_held = rows_held(state)
            lap("load")

            apply = Applying(state, MemoryStore(state, version, await watermark(conn, version), Lifecycle.of(settings)), to_dlq)
            await conn.commit()
            journal = open_journal(state)  # insight sums are held as differences to add
            try:
                for i in range(0, len(decoded), batch_size):
                    await apply(decoded[i:i + batch_size])
            finally:
                close_journal(state)
            lap("fold")

            changes = changed_in(state, journal, version)
            scopes = scopes_in(state, journal)
            del journal
            held.forget(changes)
            counts = dict(state.counts.rows)
            state.counts.rows.clear()
            erasures = {h: state.erasures.rows[h] for h in state.new_erasures}
            refs = {r: state.erased_refs.rows[r] for r in state.new_refs}
            state.new_erasures, state.new_refs = set(), set()
            written = [{"version": version, "topic": tp[0], "partition": tp[1], "offset": end - 1,
                        "event_time": kafka_time(read[tp][-1].timestamp) if read.get(tp) else None}
                       for tp, end in ends.items() if end > starts[tp]]
            lap("changes")
            await writer.put(result, changes, scopes, erasures, refs, counts, written)
            lap("handover")
            positions.update({(p["topic"], p["partition"]): p["offset"] for p in written})
            done.rounds.append(result)
            if on_round:
                on_round(result, backlog(positions, ends_now))
            log.info("round of %s records folded (%s)", result.records, result.seconds)
            del read, decoded, changes
            if sum(len(table) for table in state.tables()) > max_rows:  # memory: start again from the tables
                await writer.drain()
                state, held = None, Held()
    finally:
        await producer.close()
        if gc_was:
            gc.enable()


class Progress:
    """Pure: what a running worker's checks of its version's backlog call for. Two checks in a row
    over the threshold: a bulk catch-up ("behind"). Two checks in a row with records waiting on
    this worker's partitions and their stored offsets where they were: a restart ("stalled"): a
    worker that holds partitions and fetches nothing leaves the group, and the group is formed
    again (a liveness guard; the batches move the offsets at every commit, a dead-lettered record
    included)."""

    def __init__(self, threshold: int) -> None:
        self.threshold, self.over, self.idle = threshold, 0, 0
        self.last: dict[Tp, int] | None = None

    def after(self, behind: int, stored: dict[Tp, int], waiting: int | None = None) -> str | None:
        """`behind`: the version's backlog; `stored`: the offsets of the partitions watched for
        progress (this worker's), and `waiting` the records after them (None: `behind`)."""
        waiting = behind if waiting is None else waiting
        self.over = self.over + 1 if self.threshold > 0 and behind > self.threshold else 0
        self.idle = self.idle + 1 if waiting > 0 and stored == self.last else 0
        self.last = dict(stored)
        if self.over >= 2:
            return "behind"
        if self.idle >= 2:
            return "stalled"
        return None


class FallenBehind:
    """While the worker runs, every `CATCHUP_CHECK_SECONDS` (`Progress` decides): when the live
    version stays more than `CATCHUP_THRESHOLD` records behind (the database was away for a while,
    a burst the batches cannot keep up with), or makes no progress at all while records wait, the
    worker starts again in place; its start folds a large backlog in bulk (`catch_up`). Never
    within the first check interval after a start."""

    def __init__(self, app: Any, settings: Settings, projector: Any, leave: Callable[[], Any]) -> None:
        self.settings, self.projector, self.leave = settings, projector, leave
        self.assignment = lambda: app.consumer.assignment()
        self.topics = [settings.topic(n) for n in names.PROJECTED]
        self.started, self.progress = time.monotonic(), Progress(settings.catchup_threshold)
        if settings.database_url.startswith("postgresql"):
            app.timer(settings.catchup_check_seconds, name="fallen_behind")(self.check)

    async def check(self) -> None:
        if time.monotonic() - self.started < self.settings.catchup_check_seconds:
            return
        try:
            stored = await self.projector.stored_offsets()
            ends = await end_offsets(self.settings, self.topics)
        except Exception as exc:  # noqa: BLE001 - an outage: the checks start over after it
            log.info("backlog unknown (%s)", type(exc).__name__)
            self.progress.last = None
            return
        behind = backlog(stored, ends)
        # progress is watched on this worker's own partitions: another member of the group moving
        # its own does not hide this one holding partitions and fetching nothing
        mine = {(tp.topic, tp.partition) for tp in self.assignment()} & set(ends)
        own = {tp: stored.get(tp, -1) for tp in sorted(mine)}
        verdict = self.progress.after(behind, own, backlog(own, {tp: ends[tp] for tp in mine}))
        if verdict == "behind":
            log.warning("%s records behind (threshold %s): starting again to catch up in bulk", behind,
                        self.settings.catchup_threshold)
        elif verdict == "stalled":
            log.warning("%s records waiting and no progress in %s s: starting again", behind,
                        round(2 * self.settings.catchup_check_seconds))
        if verdict:
            await self.leave()
