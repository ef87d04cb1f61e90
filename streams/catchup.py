"""Bulk catch-up: a worker far behind its partitions folds the backlog at once, then runs as usual.

A worker that starts (after an outage, a deployment, a long stop) more than `CATCHUP_THRESHOLD`
records behind the live version's stored offsets does not crawl through the backlog in batches
of `WORKER_BATCH_SIZE`. Before it joins its consumer group it takes the backlog in *rounds* of at
most `CATCHUP_MAX_RECORDS` records, each round one transaction:

1. the version's own lock, exclusively (`projections.claims`): other workers' batches wait for
   the round and then skip what it applied; the version must still be the live one;
2. the stored offsets, read under that lock, and the records after them up to the topics' ends
   (every projected topic, every partition, merged in timestamp order as a replay merges them);
3. every row those records may read (`projections.resident.load_for`: all the rows of the
   experts they reach), into the replay's in-memory state (`projections.memory`);
4. the records folded through the worker's own unit of work (`projections.projector.run_batch`),
   in batches, a failing record dead-lettered as in the worker (`streams.fold.Applying`);
5. only what changed written back (stale rows deleted by key, new rows COPYed), the erasure
   ledger's new entries, and the offsets: one commit.

Rounds continue while more than the threshold remains; then the worker joins its group, and the
rebalance handler resumes each partition at the database's offsets (`streams.rebalance`). A crash
in a round rolls it back: nothing of it was written, and the next start reads the same records.
PostgreSQL only (key lists travel as array parameters); on SQLite the worker catches up in batches.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from customers import kafka as names
from customers.kafka import end_offsets
from customers.settings import Settings
from projections import claims
from projections import tables as t
from projections.db import make_engine, upsert
from projections.memory import MemoryStore, changed_since, snapshot
from projections.resident import load_for, write_changed
from projections.sweep import watermark
from projections.versions import live_version
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
    rows_loaded: int = 0
    rows_written: dict[str, int] = field(default_factory=dict)
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


async def stored_offsets(conn, version: int) -> dict[Tp, int]:
    o = t.projection_offsets.c
    rows = await conn.execute(select(o.topic, o.partition, o.offset).where(o.version == version))
    return {(r.topic, r.partition): r.offset for r in rows}


async def catch_up(settings: Settings, version: int, *, threshold: int | None = None,
                   max_records: int | None = None, batch_size: int = FOLD_BATCH,
                   on_round: Callable[[Round, int], None] | None = None) -> CatchUp | None:
    """Fold the backlog of `version` in rounds while more than `threshold` records remain
    (None: nothing was far enough behind, or the database is not PostgreSQL)."""
    threshold = settings.catchup_threshold if threshold is None else threshold
    max_records = max_records or settings.catchup_max_records
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
        while True:
            one = await _round(settings, engine, version, topics, max_records, batch_size)
            if one is None:  # readers moved to another version: the worker follows it
                break
            done.rounds.append(one)
            async with engine.connect() as conn:
                done.left = backlog(await stored_offsets(conn, version), await end_offsets(settings, topics))
            if on_round:
                on_round(one, done.left)
            log.info("caught up %s records in %.1f s (%s); %s left", one.records, sum(one.seconds.values()), one.seconds,
                     done.left)
            if done.left <= threshold or not one.records:
                break
        done.seconds = round(time.monotonic() - started, 2)
        return done
    finally:
        await engine.dispose()


async def _round(settings: Settings, engine, version: int, topics: list[str], max_records: int,
                 batch_size: int) -> Round | None:
    result, clock = Round(), time.monotonic()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.monotonic()
        result.seconds[name] = round(now - clock, 2)
        clock = now

    producer = names.LazyProducer(settings, timeout=60.0)
    gc_was = gc.isenabled()
    gc.disable()  # a round's state is a few large acyclic tables, as in a replay's fold
    try:
        async with engine.begin() as conn:
            await claims.hold(conn, claims.Claim(version, exclusive=True))
            if await live_version(conn, lock=True) != version:
                return None
            stored = await stored_offsets(conn, version)
            starts, ends = round_range(stored, await end_offsets(settings, topics), max_records)
            read = await read_partitions(settings, list(ends), ends, starts=starts)
            lap("read")

            prefix, decoders = settings.topic_prefix, {}
            dead_letters = DeadLetters(settings, producer)

            async def to_dlq(src: Any, exc: BaseException) -> None:
                await dead_letters(src, exc)
                result.dead += 1

            decoded: list[tuple[Any, Any]] = []
            for src in merged(read.values()):
                decode = decoders.get(src.topic) or decoders.setdefault(src.topic, decoder_for(src.topic, prefix))
                result.records += 1
                try:
                    decoded.append((src, decode(src.value)))
                except ValueError as exc:
                    await to_dlq(src, exc)
            lap("decode")

            state = await load_for(conn, version, settings.customer_id_secret, [item for _, item in decoded])
            before = snapshot(state)
            result.experts_loaded = len({k[0] for k in state.summaries.rows} | {k[0] for k in state.meetings.rows})
            result.rows_loaded = sum(len(rows) for rows in before.values())
            lap("load")

            apply = Applying(state, MemoryStore(state, version, await watermark(conn, version)), to_dlq)
            for i in range(0, len(decoded), batch_size):
                await apply(decoded[i:i + batch_size])
            lap("fold")

            result.rows_written = await write_changed(conn, version, changed_since(state, before, version), state)
            positions = [{"version": version, "topic": tp[0], "partition": tp[1], "offset": end - 1,
                          "event_time": kafka_time(read[tp][-1].timestamp) if read.get(tp) else None}
                         for tp, end in ends.items() if end > starts[tp]]
            if positions:
                await upsert(conn, t.projection_offsets, positions, ["version", "topic", "partition"])
            lap("write")
        lap("commit")
        return result
    finally:
        await producer.close()
        if gc_was:
            gc.enable()
            gc.collect()

