"""The projection engine alone: `Projector.apply` on generated records, in this process.

    python -m bench.engine [--events 20000] [--batch 2000] [--profile]
    python -m bench.engine --live [--history 100000] [--events 40000] [--no-overlap]

`--live` times the engine the worker runs on PostgreSQL (`projections.live.Resident`) instead,
over `--events` records after a `--history` it applied first (its state then held), and reports
the seconds its writer thread spent per table, the rows it wrote, and the CPU time per event of
this process and of PostgreSQL's processes (`cpu_us_per_event`: the engine's cost on the machine,
whatever the overlap); `--no-overlap` waits for each batch's commit before folding the next (the
Python and the SQL apart).

No Kafka and no worker: the records of `bench.workload.marketplace` are decoded with the
worker's decoder and applied in batches of `--batch` to a fresh, migrated PostgreSQL database.
It tells the engine's own rate apart from the consumer's, and runs against any checkout
(`PYTHONPATH=<checkout> python -m bench.engine`) to compare two versions of the engine in one
shell, alternated, on the same records. `sql_seconds` is the time spent waiting on PostgreSQL
(driver execute calls); `sql_only_rate` the rate the engine would reach if its own Python took
no time at all, the bound its SQL sets on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import time

from bench.common import StackCpu, create_database, drop_database, sqlalchemy_url
from bench.workload import marketplace
from projections.db import make_engine, migrate
from projections.projector import Position, Projector
from projections.versions import ensure_live
from streams.decode import decoder_for


async def run(events: int, batch: int, profile: bool) -> dict:
    offsets: dict[str, int] = {}
    records = []
    started = time.perf_counter()
    for topic, _key, value in marketplace(events):
        offsets[topic] = offsets.get(topic, -1) + 1
        records.append((Position(topic, 0, offsets[topic]), decoder_for(topic, "")(value)))
    decode_seconds = time.perf_counter() - started
    name = await create_database()
    try:
        url = sqlalchemy_url(name)
        await migrate(url)
        engine = make_engine(url)
        projector = Projector(engine, version=await ensure_live(engine, "bench"), id_secret="s" * 32)
        sql = _SqlClock(engine)
        profiler = cProfile.Profile() if profile else None
        started = time.perf_counter()
        if profiler:
            profiler.enable()
        for i in range(0, len(records), batch):
            await projector.apply(records[i:i + batch])
        if profiler:
            profiler.disable()
        seconds = time.perf_counter() - started
        await projector.statistics.settle()
        await engine.dispose()
    finally:
        await drop_database(name)
    if profiler:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(40)
    return {"events": len(records), "batch": batch, "decode_rate": round(len(records) / decode_seconds),
            "apply_seconds": round(seconds, 2), "apply_rate": round(len(records) / seconds),
            "sql_seconds": round(sql.seconds, 2), "sql_statements": sql.statements,
            # the rate if everything but the database took no time: the bound of this SQL on this machine
            "sql_only_rate": round(len(records) / sql.seconds) if sql.seconds else None}


class _SqlClock:
    """Wall time spent inside the database driver's execute calls (waiting on PostgreSQL)."""

    def __init__(self, engine) -> None:
        from sqlalchemy import event

        self.seconds, self.statements, self._started = 0.0, 0, 0.0
        event.listen(engine.sync_engine, "before_cursor_execute", self._before)
        event.listen(engine.sync_engine, "after_cursor_execute", self._after)

    def _before(self, *_args) -> None:
        self._started = time.perf_counter()

    def _after(self, *_args) -> None:
        self.seconds += time.perf_counter() - self._started
        self.statements += 1


async def run_live(history: int, events: int, batch: int, overlap: bool, profile: bool) -> dict:
    """The live engine over `events` records after `history` (see the module's docstring)."""
    from datetime import datetime, timezone

    from projections.live import Resident
    from streams.poison import Source

    offsets: dict[str, int] = {}
    records = []
    now = datetime.now(timezone.utc)
    for topic, key, value in marketplace(history + events):
        offsets[topic] = offsets.get(topic, -1) + 1
        records.append((Source(topic, 0, offsets[topic], key, value, now), decoder_for(topic, "")(value)))
    name = await create_database()
    try:
        url = sqlalchemy_url(name)
        await migrate(url)
        engine = make_engine(url)
        dead = []

        async def to_dlq(src, exc) -> None:
            dead.append(type(exc).__name__)
        live = Resident(engine, version=await ensure_live(engine, "bench"), id_secret="s" * 32, to_dlq=to_dlq)
        for i in range(0, history, batch):
            await live.apply(records[i:i + batch], wait=False)
        await live.flush()
        live.write_seconds.clear()
        live.rows_written.clear()
        profiler = cProfile.Profile() if profile else None
        cpu = StackCpu(os.getpid())
        started = time.perf_counter()
        if profiler:
            profiler.enable()
        for i in range(history, len(records), batch):
            await live.apply(records[i:i + batch], wait=not overlap)
        await live.flush()
        if profiler:
            profiler.disable()
        seconds = time.perf_counter() - started
        used = cpu.stop()
        await live.close()
        await engine.dispose()
    finally:
        await drop_database(name)
    if profiler:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(40)
    return {"history": history, "events": events, "batch": batch, "overlap": overlap,
            "apply_seconds": round(seconds, 2), "apply_rate": round(events / seconds),
            "write_seconds": {k: round(v, 2) for k, v in live.write_seconds.items()},
            "rows_written": live.rows_written, "stale": live.stale, "dead_letters": dead,
            # CPU per applied event: this process (fold, writer thread, driver) and every PostgreSQL process
            "cpu_us_per_event": {"python": round(used["worker"] / events * 1e6),
                                 "postgres": round(used["postgres"] / events * 1e6)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=2_000)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--live", action="store_true", help="the live engine (projections.live)")
    parser.add_argument("--history", type=int, default=100_000, help="with --live: records applied first")
    parser.add_argument("--no-overlap", action="store_true", help="with --live: each batch committed before the next")
    args = parser.parse_args()
    if args.live:
        print(asyncio.run(run_live(args.history, args.events, args.batch, not args.no_overlap, args.profile)))
        return
    print(asyncio.run(run(args.events, args.batch, args.profile)))


if __name__ == "__main__":
    main()
