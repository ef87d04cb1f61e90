"""The live engine: the state held in the worker, the database a write-only sink.

A worker keeps in memory (`projections.memory.FoldState`, the shape a replay folds) the rows of
the experts its records reach. Each batch:

1. drops the records at or below the offsets it has applied (kept in memory, read from the
   database once, and again after every assignment);
2. loads what it does not hold yet (`projections.resident.load_for`: all the rows of an expert
   reached for the first time, the payments, reports and ledger entries named), in one
   REPEATABLE READ transaction that also reads the *generations* of what it loaded;
3. folds the records through the worker's rules (`projections.projector.run_batch`) over the
   in-memory store, each table logging the first previous row of every key it changes (a
   journal); a record that fails alone goes to its dead-letter topic, the others flow;
4. hands what the journal says changed to a writer thread, which writes it in one transaction
   (COPY of new rows, one `UPDATE ... FROM` per table for replaced ones, deletes by key, the
   insight sums' differences, the ledger, the offsets), while the engine goes on to read, load
   and fold the next batch. The next batch's write waits for this one.

**Never written from stale state.** Every transaction is fenced twice, before it writes:

* the partition: the stored offset of each partition in the batch must be the one this engine
  last wrote or read (a compare-and-set on `projection_offsets`, rows locked). Another worker
  that applied this partition since (a rebalance, a zombie still holding a batch) makes it fail;
* the scopes: every row belongs to a scope (its expert; a payment that names no expert yet, its
  own `p:<id>`; a provider's message, `r:<id>`; `projections.memory.SCOPES`), and each scope has
  a generation in `projection_generations`. The batch's changes name their scopes (the row
  before and after); their generations, locked, must be those this engine loaded or last wrote,
  and are bumped. Any writer of those rows (another worker's batch, the sweep) bumps them too.

A fenced write that fails raises `Stale`: the engine restores the state from the journals of the
batches not yet written (newest first), forgets the stale scopes (a stale partition: the whole
state), and applies those batches again, loading afresh. Nothing is written twice or from a
state another writer changed since.

Memory is bounded by `WORKER_STATE_MAX_ROWS`: past it, the experts least recently touched are
forgotten (a quarter of them, in one pass), and loaded again from their rows when next reached.

PostgreSQL only (key lists travel as array parameters); on SQLite the worker applies batches
through `projections.projector.Projector`, which reads what each batch needs.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from projections import claims
from projections.db import TRANSIENT, make_engine, reachable
from projections.fences import Stale, bump_generations, check_epoch, move_offsets, read_generations
from projections.memory import (Changed, FoldState, Journal, MemoryStore, changed_in, close_journal, evict,
                                open_journal, restore, rows_held, scopes_in)
from projections.projector import Applied, Statistics, VersionChanged, in_order, run_batch, stored_offsets
from projections.resident import Held, load_for, write_changed
from projections.rules import registry
from projections.rules.status import DEFAULT as DEFAULT_LIFECYCLE
from projections.rules.status import Lifecycle
from projections.sweep import watermark
from projections.versions import live_version

log = logging.getLogger("customers.live")

Tp = tuple[str, int]
FULL_COLLECTION = 900.0  # seconds between two full collections of the worker's garbage
# allocations between two collections of the youngest objects (Python's default, 700, runs one every
# few events of a batch: measured in-process, 10,000 folds 15-50 % faster)
YOUNG_COLLECTION = 10_000
EPOCH = "~erasures"  # the scope every erasure bumps, every batch checks
ToDlq = Callable[[Any, BaseException], Awaitable[None]]


class GaveUp(Exception):
    """A batch could not be written (its write kept failing: `__cause__` says why): nothing of it
    is applied. Never raised for contention alone: another writer costs time, never a record."""


@dataclass
class Batch:
    """One batch on its way: its records, what its fold changed, and where its write stands."""

    records: list[tuple[Any, Any]]  # (source record, decoded item or None: position only)
    result: Applied = field(default_factory=Applied)
    journal: Journal | None = None
    changes: list[Changed] = field(default_factory=list)
    scopes: set[str] = field(default_factory=set)
    experts: set[str] = field(default_factory=set)
    erasures: dict = field(default_factory=dict)
    refs: dict = field(default_factory=dict)
    counts: dict = field(default_factory=dict)
    offsets: dict[Tp, tuple[int, datetime | None]] = field(default_factory=dict)
    write: asyncio.Future | None = None
    started: float = 0.0
    epoch: int = 0  # the erasures' generation when the batch was loaded
    erasing: bool = False


# --- the writer thread ------------------------------------------------------------------------------

class Writer:
    """A thread with its own event loop and connections: PostgreSQL commits batch n there while
    the engine's loop folds batch n+1 (the fold is Python that never yields)."""

    def __init__(self, url: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, name="live-writer", daemon=True)
        self.engine: AsyncEngine | None = None
        self.url = url
        self.thread.start()
        self.ready.wait()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.engine = make_engine(self.url)
        self.ready.set()
        self.loop.run_forever()

    def submit(self, job: Callable[[AsyncEngine], Awaitable[Any]]) -> asyncio.Future:
        return asyncio.wrap_future(asyncio.run_coroutine_threadsafe(job(self.engine), self.loop))

    async def close(self) -> None:
        async def dispose(engine: AsyncEngine) -> None:
            await engine.dispose()
        try:
            await self.submit(dispose)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)


# --- the engine -------------------------------------------------------------------------------------

class Resident:
    """Applies batches to one version from a state kept in memory (see the module's docstring)."""

    MAX_REDO = 8  # quick attempts at a stale batch before waiting between attempts
    MAX_ALONE = 32  # stale scopes read again within one exclusive transaction before starting it anew

    def __init__(self, engine: AsyncEngine, *, version: int, id_secret: str, to_dlq: ToDlq,
                 max_rows: int = 1_600_000, follow_live: bool = True, lifecycle: Lifecycle = DEFAULT_LIFECYCLE) -> None:
        self.engine, self.version, self.secret, self.lifecycle = engine, version, id_secret, lifecycle
        self.to_dlq, self.max_rows, self.follow_live = to_dlq, max_rows, follow_live
        self.writer = Writer(engine.url.render_as_string(hide_password=False))
        self._reset()
        self.offsets: dict[Tp, int] | None = None  # the last offset applied per partition (written or in flight)
        self.written: dict[Tp, int] = {}  # ... as the database holds it, for the fence
        self.inflight: Batch | None = None
        self.evictions = 0
        self.stale = 0
        self.collected = time.monotonic()
        gc.set_threshold(YOUNG_COLLECTION, *gc.get_threshold()[1:])
        self.write_seconds: dict[str, float] = {}  # per table, all batches (the writer thread's)
        self.rows_written: dict[str, int] = {}
        self.statistics = Statistics(engine, version)  # the planner's statistics follow the tables' growth
        self.owned: set[Tp] | None = None  # the partitions assigned (None: never told, all of them)
        # told of every committed batch: (what it applied, seconds from its hand-over to its commit, records)
        self.committed: Callable[[Applied, float, int], None] = lambda *_: None
        self.lock = asyncio.Lock()  # a batch and an assignment's offsets, one at a time

    def _collect(self) -> None:
        """The state is millions of small acyclic objects, freed by their reference counts: the cyclic
        collector scanning them again and again would cost more than the rules. So what lives now is
        frozen out of its reach (cheap), and once every `FULL_COLLECTION` seconds a full collection
        runs on everything (what a cycle kept alive since is freed then)."""
        now = time.monotonic()
        if now - self.collected > FULL_COLLECTION:
            gc.unfreeze()
            gc.collect()
            self.collected = now
        gc.freeze()

    def _reset(self) -> None:
        self.state = FoldState(self.secret)
        self.held = Held()
        self.generations: dict[str, int] = {}
        self.recent: OrderedDict[str, None] = OrderedDict()  # experts, least recently touched first

    # --- offsets -------------------------------------------------------------------------------

    async def stored_offsets(self) -> dict[Tp, int]:
        async with self.engine.connect() as conn:
            return await stored_offsets(conn, self.version)

    async def _read_offsets(self, tps: set[Tp] | None = None) -> None:
        stored = await self.stored_offsets()
        if self.offsets is None or tps is None:
            self.offsets, self.written = dict(stored), dict(stored)
            return
        for tp in tps:
            self.offsets[tp] = self.written[tp] = stored.get(tp, -1)

    async def assigned(self, tps: set[Tp]) -> None:
        """Partitions were assigned: those this engine did not hold just before get their offsets
        as the database holds them now (another worker may have applied them meanwhile; rows it
        changed are caught by the fences).

        The new assignment counts at once, before the lock: a batch that holds the lock while it
        meets another writer again and again may be meeting the new owner of its partition, and
        learns here that those records are no longer its own (waiting for the lock first was a
        deadlock: the batch waited for the assignment, the assignment for the batch)."""
        added, self.owned = tps - (self.owned or set()), set(tps)
        async with self.lock:
            if self.offsets is not None and added:
                await self._read_offsets(added)

    # --- a batch -------------------------------------------------------------------------------

    async def apply(self, records: list[tuple[Any, Any]], *, wait: bool = True) -> Applied:
        """Apply decoded records ((source, item); item None: dead-lettered at decoding, its
        position only). Returns once the batch before it is committed, and this one too with `wait`."""
        async with self.lock:
            return await self._apply(records, wait)

    async def _apply(self, records: list[tuple[Any, Any]], wait: bool) -> Applied:
        if self.offsets is None:
            await self._read_offsets()
        batch = self._fresh(records)
        if not batch.offsets:
            if wait:
                await self._flush()
            return batch.result
        if _erases(batch):
            await self._flush()
            try:
                await self._erase(batch)
            except Stale as stale:
                await self._recover(stale, [batch])
            return batch.result
        await self._prepare(batch)
        previous, self.inflight = self.inflight, None
        if previous is not None:
            try:
                await self._settle(previous)
            except Stale as stale:
                await self._recover(stale, [previous, batch])
                return batch.result
        self._bound(batch.scopes, batch)
        self._submit(batch)
        if wait:
            await self._flush()
        return batch.result

    async def flush(self) -> None:
        """Wait until every batch handed over is committed (recovering as `apply` does)."""
        async with self.lock:
            await self._flush()

    async def _flush(self) -> None:
        while (batch := self.inflight) is not None:
            self.inflight = None
            try:
                await self._settle(batch)
            except Stale as stale:
                await self._recover(stale, [batch])
            self._bound(set())

    def _fresh(self, records: list[tuple[Any, Any]]) -> Batch:
        batch = Batch([])
        offsets = self.offsets
        for src, item in records:
            tp = (src.topic, src.partition)
            if src.offset <= offsets.get(tp, -1):
                batch.result.skipped_offsets += 1
                continue
            batch.records.append((src, item))
            last = batch.offsets.get(tp)
            if last is None or src.offset > last[0]:
                batch.offsets[tp] = (src.offset, src.timestamp)
        for tp, (offset, _) in batch.offsets.items():
            offsets[tp] = offset
        batch.result.fresh = len(batch.records)
        times = [src.timestamp for src, _ in batch.records if src.timestamp]
        batch.result.newest_event_time = max(times) if times else None
        return batch

    async def _prepare(self, batch: Batch, conn: AsyncConnection | None = None) -> None:
        """Load what the batch needs (on `conn`, or in a snapshot of its own), fold it, and take
        what it changed."""
        items = [item for _, item in batch.records if item is not None]
        as_of = await (self._load_on(conn, items, batch) if conn is not None else self._load(items, batch))
        state = self.state
        batch.journal = open_journal(state)
        try:
            await self._fold(batch, MemoryStore(state, self.version, as_of, self.lifecycle))
        finally:
            close_journal(state)
        batch.changes = changed_in(state, batch.journal, self.version)
        batch.scopes = scopes_in(state, batch.journal)
        batch.experts = {s for s in batch.scopes if not s.startswith(("p:", "r:"))}
        batch.counts = dict(state.counts.rows)
        state.counts.rows.clear()
        batch.erasures = {h: state.erasures.rows[h] for h in state.new_erasures}
        batch.refs = {r: state.erased_refs.rows[r] for r in state.new_refs}
        state.new_erasures, state.new_refs = set(), set()
        for expert in batch.experts:
            self.recent[expert] = None
            self.recent.move_to_end(expert)

    async def _load(self, items: list[Any], batch: Batch) -> datetime:
        """In one snapshot: what the items need that the state lacks, the generations of what
        was loaded, the erasures' epoch and the version's sweep watermark."""
        while True:
            try:
                async with self.engine.connect() as conn:
                    await conn.execution_options(isolation_level="REPEATABLE READ")
                    async with conn.begin():
                        return await self._load_on(conn, items, batch)
            except Exception as exc:
                if not await _outage(self.engine, exc):
                    raise
                await asyncio.sleep(0.5)

    async def _load_on(self, conn: AsyncConnection, items: list[Any], batch: Batch) -> datetime:
        before = len(self.held.experts)
        self.held.loaded = set()
        await load_for(conn, self.version, self.secret, items, self.state, self.held)
        found = await read_generations(conn, self.version, self.held.loaded | {EPOCH})
        batch.epoch = found.pop(EPOCH)
        self.generations.update(found)
        as_of = await watermark(conn, self.version)
        if len(self.held.experts) > before:
            self._collect()
        return as_of

    async def _fold(self, batch: Batch, store: MemoryStore) -> None:
        """The batch through the rules; when it fails, its records one at a time, a record that
        fails alone dead-lettered (its position is still written)."""
        state, now, result = self.state, datetime.now(timezone.utc), batch.result
        items = [item for _, item in batch.records if item is not None]
        state.begin()
        try:
            for part in in_order(items):
                _count(result, (await run_batch(store, part, now))[1])
            state.commit()
            return
        except Exception as exc:  # noqa: BLE001 - one bad record must not stop the partition
            state.rollback()
            result.by_type.clear()
            result.skipped_erased = 0
            log.warning("batch failed (%s); applying its records one by one", type(exc).__name__)
        for src, item in batch.records:
            if item is None:
                continue
            state.begin()
            try:
                _count(result, (await run_batch(store, [item], now))[1])
                state.commit()
            except Exception as exc:  # noqa: BLE001
                state.rollback()
                await self.to_dlq(src, exc)

    # --- writing -------------------------------------------------------------------------------

    def _submit(self, batch: Batch) -> None:
        expected_offsets = {tp: self.written.get(tp, -1) for tp in batch.offsets}
        expected = {s: self.generations.get(s, 0) for s in batch.scopes}
        version, follow = self.version, self.follow_live

        async def job(engine: AsyncEngine) -> dict[str, int]:
            async with engine.begin() as conn:
                await self._guard(conn, exclusive=False)
                await check_epoch(conn, version, EPOCH, batch.epoch, set(batch.offsets))
                return await self._write(conn, batch, expected_offsets, expected)

        batch.started = time.perf_counter()
        batch.write = self.writer.submit(job)
        self.inflight = batch
        self.held.gone = {c.sink.name: set(c.gone) for c in batch.changes if c.gone}

    async def _guard(self, conn: AsyncConnection, *, exclusive: bool) -> None:
        """The version's lock (shared by batches, exclusive for an erasure and a bulk catch-up) and,
        following the live version, its row: a replay's switch waits for this batch or is seen."""
        lock = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
        await conn.execute(text(f"SELECT {lock}(:id)"), {"id": claims.lock_id(("version", self.version))})
        if self.follow_live:
            live = await live_version(conn, lock=True)
            if live != self.version:
                raise VersionChanged(live)

    async def _write(self, conn: AsyncConnection, batch: Batch, expected_offsets: dict[Tp, int],
                     expected: dict[str, int]) -> dict[str, int]:
        fenced = time.perf_counter()
        await move_offsets(conn, self.version, expected_offsets, batch.offsets)
        bumped = await bump_generations(conn, self.version, expected, batch.scopes)
        clock = time.perf_counter()
        written = await write_changed(conn, self.version, batch.changes, batch.erasures, batch.refs, batch.counts,
                                      self.write_seconds)
        for name, n in written.items():
            self.rows_written[name] = self.rows_written.get(name, 0) + n
        self.rows_written["insight_counts"] = self.rows_written.get("insight_counts", 0) + len(batch.counts)
        self.write_seconds["fences"] = self.write_seconds.get("fences", 0.0) + clock - fenced
        return bumped

    async def _erase(self, batch: Batch) -> None:
        """A batch with an erasure, alone: in one transaction holding the version exclusively, no
        other batch writes while it reads, folds and writes, and it bumps the erasures' epoch, so
        that every batch loaded before it and written after it is applied again."""
        batch.started = time.perf_counter()
        while True:
            try:
                async with self.engine.begin() as conn:
                    await self._guard(conn, exclusive=True)
                    await self._prepare(batch, conn)
                    expected = {s: self.generations.get(s, 0) for s in batch.scopes}
                    expected_offsets = {tp: self.written.get(tp, -1) for tp in batch.offsets}
                    bumped = await self._write(conn, batch, expected_offsets, expected)
                    bumped.update(await bump_generations(conn, self.version, None, {EPOCH}))
                self._written(batch, bumped)
                return
            except (Stale, VersionChanged):
                self._undo([batch])
                raise
            except Exception as exc:
                self._undo([batch])
                if not await _outage(self.engine, exc) and not claims.must_retry(exc):
                    raise
                await asyncio.sleep(0.5)

    def _undo(self, batches: list[Batch]) -> None:
        """The state as before `batches` (none of them written). What their writes would have
        removed is no longer pending: the rows are still the tables', to be read again if needed."""
        self.held.gone = {}
        for b in reversed(batches):
            if b.journal is not None:
                restore(self.state, b.journal)
                b.journal = None
            b.result.by_type.clear()

    def _written(self, batch: Batch, bumped: dict[str, int]) -> None:
        self.committed(batch.result, time.perf_counter() - batch.started, len(batch.records))
        self.statistics.after(len(batch.records))
        self.generations.update(bumped)
        for tp, (offset, _) in batch.offsets.items():
            self.written[tp] = max(self.written.get(tp, -1), offset)
        self.held.gone = {}
        if batch.journal is not None:  # a Stripe event applied is looked up in the table from now on
            self.state.stripe_events.drop(list(batch.journal.get("stripe_events", ())))
        batch.journal = None
        self._collect()

    async def _settle(self, batch: Batch) -> None:
        """Wait for `batch`'s write; an outage or a deadlock is waited out and the same write is
        submitted again. Raises `Stale` (nothing of it written) or `VersionChanged`."""
        attempts = 0
        while True:
            try:
                bumped = await batch.write
                break
            except (Stale, VersionChanged):
                raise
            except Exception as exc:
                attempts += 1
                if claims.must_retry(exc):
                    log.info("batch met another writer (%s); writing it again", claims.state_of(exc))
                elif await _outage(self.engine, exc):
                    log.warning("database unavailable (%s); writing the batch again", type(exc).__name__)
                    await asyncio.sleep(min(5.0, 0.2 * attempts))
                else:  # not the state's fault, nor the database's: the state is read again
                    log.warning("batch write failed (%s: %s)", type(exc).__name__, exc)
                    raise Stale(partitions=set(batch.offsets)) from exc
                self._submit(batch)
                self.inflight = None
        self._written(batch, bumped)

    async def _recover(self, stale: Stale, batches: list[Batch]) -> None:
        """Undo the batches not written (newest first), forget what is stale, apply them again.

        Contention alone never ends in giving up: past `MAX_REDO` attempts the engine waits a
        little between attempts and leaves out the records of partitions no longer assigned to it
        (their new owner applies them). Only a write that keeps failing on its own (`__cause__`,
        say a value the table refuses) raises `GaveUp`, for the caller to find the record."""
        for attempt in itertools.count():
            if attempt >= self.MAX_REDO:
                if _failed(stale):
                    break
                if attempt == self.MAX_REDO:
                    log.warning("another writer keeps changing what %s records need; trying again",
                                sum(len(b.records) for b in batches))
                await asyncio.sleep(min(2.0, 0.05 * attempt))
            self.stale += 1
            self._undo(batches)
            if self.owned is not None:  # a partition taken away: its new owner applies its records
                left: set[Tp] = set()
                for b in batches:
                    kept = [(src, item) for src, item in b.records if (src.topic, src.partition) in self.owned]
                    left |= {(src.topic, src.partition) for src, _ in b.records} - self.owned
                    b.records = kept
                if left:  # a warning: rare, and what a worker did with records it no longer owns
                    log.warning("left the records of %s partitions no longer assigned here to their new owner: %s",
                                len(left), sorted(left))
            if stale.partitions or attempt >= 2:
                log.info("%s partitions written by another writer or after an erasure; reading the state again",
                         len(stale.partitions) or "some")
                self._reset()
                self.offsets = None
                await self._read_offsets()
            else:
                log.info("%s scopes changed by another writer; reading them again", len(stale.scopes))
                self._forget(stale.scopes)
                for b in batches:
                    for tp in b.offsets:
                        self.offsets[tp] = self.written.get(tp, -1)
            again = self._fresh([r for b in batches for r in b.records])
            batches[-1].result = again.result  # what the caller reads: the records' fate as now applied
            if not again.offsets:
                return
            try:
                if attempt == 0:
                    await self._now(again)
                else:  # another writer keeps changing what this batch needs: no writer beside it now
                    batches[-1].result = (await self._alone(again)).result
                return
            except Stale as more:
                stale, batches = more, [again]
        self._undo(batches)  # nothing of them applied: the caller may take their records one by one
        for b in batches:
            for tp in b.offsets:
                self.offsets[tp] = self.written.get(tp, -1)
        raise GaveUp(f"{self.MAX_REDO} attempts met another writer or failed; the batch is not applied") \
            from stale.__cause__

    async def _alone(self, batch: Batch) -> Batch:
        """Load, fold and write `batch` in one transaction holding the version exclusively, so that
        no other writer's commit can make it stale while it runs. What this engine held from before
        may still be stale: the write is tried under a savepoint, and a stale scope is forgotten,
        loaded again and the batch folded again, in the same transaction, until it writes (or its
        partition turns out to be another's). Returns the batch as written (its records' fate)."""
        if _erases(batch):
            await self._erase(batch)
            return batch
        records = batch.records
        while True:
            batch.started = time.perf_counter()
            try:
                async with self.engine.begin() as conn:
                    await self._guard(conn, exclusive=True)
                    for _ in range(self.MAX_ALONE):
                        await self._prepare(batch, conn)
                        expected = {s: self.generations.get(s, 0) for s in batch.scopes}
                        expected_offsets = {tp: self.written.get(tp, -1) for tp in batch.offsets}
                        try:
                            async with conn.begin_nested():
                                bumped = await self._write(conn, batch, expected_offsets, expected)
                            break
                        except Stale as stale:
                            if stale.partitions:
                                raise
                            unsettled = stale.scopes
                            self._undo([batch])
                            self._forget(stale.scopes)
                            for tp in batch.offsets:
                                self.offsets[tp] = self.written.get(tp, -1)
                            batch = self._fresh(records)
                            if not batch.offsets:
                                return batch
                    else:  # a warning: the scopes that never settle say what the state cannot read
                        log.warning("scopes still stale after %s readings in one exclusive transaction: %s",
                                    self.MAX_ALONE, sorted(unsettled)[:8])
                        raise Stale(partitions=set(batch.offsets))
                self._written(batch, bumped)
                return batch
            except (Stale, VersionChanged):
                self._undo([batch])
                raise
            except Exception as exc:
                self._undo([batch])
                if await _outage(self.engine, exc) or claims.must_retry(exc):
                    for tp in batch.offsets:
                        self.offsets[tp] = self.written.get(tp, -1)
                    batch = self._fresh(records)
                    if not batch.offsets:
                        return batch
                    await asyncio.sleep(0.5)
                    continue
                log.warning("batch write failed (%s: %s)", type(exc).__name__, exc)
                raise Stale(partitions=set(batch.offsets)) from exc

    async def _now(self, batch: Batch) -> None:
        """Load, fold and write `batch`, waiting for its commit (nothing else in flight)."""
        if _erases(batch):
            await self._erase(batch)
            return
        await self._prepare(batch)
        self._submit(batch)
        self.inflight = None
        await self._settle(batch)

    def _forget(self, scopes: set[str], keep: set[str] = frozenset()) -> None:
        """Forget the rows of `scopes`, to be read again with their generations. A payment's scope
        is every id it is known by: the payment held under any of them is forgotten, whatever
        its key (kept, it would never be read again, nor the generation of the id that changed)."""
        experts = {s for s in scopes if not s.startswith(("p:", "r:"))}
        ids = {s[2:] for s in scopes if s.startswith("p:")}
        pids = ids | {self.state.aliases.rows.get(i, i) for i in ids}
        owners = {p.expert_id or p.hint_expert for pid in pids if (p := self.state.payments.get(pid))}
        experts |= {e for e in owners if e}
        forgotten = evict(self.state, experts, keep)
        self.state.payments.drop(pids)
        self.state.aliases.drop([a for a, pid in self.state.aliases.rows.items() if pid in pids])
        self.state.reports.drop([s[2:] for s in scopes if s.startswith("r:")])
        self.held.experts -= experts
        for s in forgotten | scopes:
            self.generations.pop(s, None)
        for e in experts:
            self.recent.pop(e, None)

    def _bound(self, busy: set[str], pending: Batch | None = None) -> None:
        """Past the budget, forget the least recently touched quarter of the experts (never the
        scopes of the batch folded and not yet written, `busy`, nor the Stripe events it applied:
        until it commits, the table does not have them, and a copy of one of them in the next
        batch would be applied again)."""
        if rows_held(self.state) <= self.max_rows or not self.recent:
            return
        events = self.state.stripe_events.rows
        applied = {e: events[e] for e in (pending.journal or {}).get("stripe_events", ()) if e in events} \
            if pending is not None else {}
        out, n = set(), max(1, len(self.recent) // 4)
        for expert in self.recent:
            if len(out) >= n:
                break
            if expert not in busy:
                out.add(expert)
        self._forget(out, keep=busy)
        for event, row in applied.items():
            self.state.stripe_events.put(event, row)
        self.evictions += 1
        # a warning: a budget smaller than the partitions' state makes every batch read experts again
        log.warning("forgot %s experts to stay within %s rows (WORKER_STATE_MAX_ROWS)", len(out), self.max_rows)

    async def close(self) -> None:
        try:
            await self.flush()
            await self.statistics.settle()
        finally:
            await self.writer.close()


def _failed(stale: Stale) -> bool:
    """Whether a write failed on its own (an error that is neither contention nor an outage)."""
    return stale.__cause__ is not None and not isinstance(stale.__cause__, Stale)


def _erases(batch: Batch) -> bool:
    return any(item is not None and registry.alone(item) for _, item in batch.records)


def _count(result: Applied, changes: Any) -> None:
    for kind, n in changes.counts.items():
        result.by_type[kind] = result.by_type.get(kind, 0) + n
    result.skipped_erased += changes.skipped_erased


async def _outage(engine: AsyncEngine, exc: BaseException) -> bool:
    return isinstance(exc, TRANSIENT) or not await reachable(engine)
