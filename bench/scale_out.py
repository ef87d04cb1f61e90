"""Benchmark: two workers in one consumer group against one, on 12 partitions and the same records.

    python -m bench.scale_out [--events 100000]

The same marketplace history is pre-loaded twice (two topic sets of 12 partitions), then
projected into two fresh PostgreSQL databases: the first by one `customers worker`, the second
by two. Each is timed from its first committed batch until `projection_offsets` reach the
ends, and the two read models are compared row by row (they must be equal).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from datetime import datetime, timezone

from bench.common import Result, Row, asyncpg_url, bench_database, env_int, run_async, stop_worker
from bench.projection import applied
from bench.workload import marketplace, preload
from customers import kafka as names
from customers.settings import Settings
from testing.harness import WorkerProcess

PARTITIONS = 12
GOAL_SPEED_UP = 1.3
TABLES = {  # table -> columns compared (no version; no times taken from the clock or from Kafka)
    "meetings": "*",
    "payments": "*",
    "payment_aliases": "alias, payment_id",
    "customers": "expert_id, customer_id, email, name, phone, first_seen_at, appointments, cancelled, "
                 "no_shows, spend, revenue, refunded",
    "projection_offsets": "split_part(topic, '.', 2) AS topic, partition, \"offset\"",  # without the prefix
}


async def follow(settings: Settings, db_name: str, total: int, workers: int, timeout: float) -> dict:
    """Start `workers` workers; follow `projection_offsets` until every record is applied."""
    import asyncpg

    conn = await asyncpg.connect(asyncpg_url(db_name))
    procs: list[WorkerProcess] = []
    try:
        spawned = time.perf_counter()
        procs = [WorkerProcess(settings, name=f"bench-scale-{n}").start() for n in range(workers)]
        first_at = first_count = None
        while True:
            now = time.perf_counter()
            if now - spawned > timeout:
                raise TimeoutError(f"{workers} worker(s) did not finish in {timeout:.0f}s")
            if not all(p.alive() for p in procs):
                raise RuntimeError(f"a worker died; see {[str(p.log_path) for p in procs]}")
            try:
                done = await applied(conn)
            except asyncpg.UndefinedTableError:
                done = 0
            if done and first_at is None:
                first_at, first_count = now, done
            if done >= total:
                break
            await asyncio.sleep(0.25)
        finished = time.perf_counter()
        rows = {}
        for table, columns in TABLES.items():
            found = await conn.fetch(f"SELECT {columns} FROM {table}")
            rows[table] = sorted(tuple((k, str(v)) for k, v in r.items() if k != "version") for r in found)
    finally:
        for p in procs:
            stop_worker(p)
        await conn.close()
    steady = finished - first_at
    return {"workers": workers, "records": total, "steady_seconds": round(steady, 2),
            "rate": round((total - first_count) / steady) if steady > 0 else None, "rows": rows}


async def one_run(events: int, experts: int, workers: int, timeout: float, now: datetime) -> dict:
    # the batches of one and of two workers: no bulk catch-up of the preloaded history (that is 2b)
    async with bench_database(topic_partitions=PARTITIONS, catchup_threshold=0) as (db_name, settings):
        await preload(settings, marketplace(events, experts=experts, now=now), partitions=PARTITIONS)
        ends = await names.end_offsets(settings, [settings.topic(n) for n in names.PROJECTED])
        return await follow(settings, db_name, sum(ends.values()), workers, timeout)


async def run(events: int, experts: int, *, timeout: float = 900.0) -> Result:
    result = Result("scale_out", "Two workers on 12 partitions against one")
    result.sizes = {"events": events, "experts": experts, "partitions": PARTITIONS}
    now = datetime.now(timezone.utc)  # the same records in both runs
    one = await one_run(events, experts, 1, timeout, now)
    two = await one_run(events, experts, 2, timeout, now)
    rows_one, rows_two = one.pop("rows"), two.pop("rows")
    differing = {table: {"one_worker_only": [r for r in rows_one[table] if r not in set(rows_two[table])][:3],
                         "two_workers_only": [r for r in rows_two[table] if r not in set(rows_one[table])][:3]}
                 for table in TABLES if rows_one[table] != rows_two[table]}
    same = not differing
    result.details.update(one_worker=one, two_workers=two, same_read_model=same, differing=differing)
    speed_up = two["rate"] / one["rate"]
    result.rows += [
        Row("scale_out", "two workers, events/s (steady)", two["rate"], "events/s", baseline=one["rate"],
            baseline_label="one worker, same records", ratio=round(speed_up, 3),
            goal=f"same read model; >= {GOAL_SPEED_UP}x where CPU allows", met=same and speed_up >= GOAL_SPEED_UP,
            attainment=round(speed_up / GOAL_SPEED_UP, 4) if same else 0.0,
            note=f"{one['records']:,} records on {PARTITIONS} partitions; read models "
                 f"{'equal' if same else 'DIFFERENT'}"),
    ]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=env_int("BENCH_SCALE_EVENTS", 100_000))
    parser.add_argument("--experts", type=int, default=env_int("BENCH_EXPERTS", 2000))
    args = parser.parse_args()
    result = run_async(run(args.events, args.experts))
    print(json.dumps({"rows": [r.__dict__ for r in result.rows], "details": result.details}, indent=1, default=str))


if __name__ == "__main__":
    main()
