"""Benchmark 2b: a worker restarted far behind (`streams.catchup`): the backlog folded in bulk.

    python -m bench.catchup [--history 300000] [--events 300000] [--baseline 50000]

A marketplace's history (the projection benchmark's generator, 4 partitions) is produced and
projected: `--history` records, by a bulk catch-up from nothing (timed and reported as well).
Then, while no worker runs, `--events` more records of the same history are produced. A real
worker process (`customers worker`, default settings) is started, and the time is taken from its
start to the moment the database's offsets reach the topics' ends: the worker's start-up, its
catch-up in rounds, and its joining the consumer group. A real run at the goal's size. The CPU
time per record over the same span (the worker, PostgreSQL's processes, the broker) says what two
cores can carry at most, whatever the overlap.

The baseline, in the same command: the per-batch engine the worker runs (`Projector.apply` in
batches of 2,000, in-process, on `--baseline` records of the same generator: `bench.engine`),
which is how a worker caught up before. Its rate does not depend on Kafka or on a process
start, so the ratio is conservative.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time

from bench.common import (Result, Row, bench_database, cores_bound, cpu_per_event, emit, env_int, peak_rss_mb,
                          run_async, StackCpu, start_worker, stop_worker, wait_for)
from bench.workload import Mix, marketplace, preload

GOAL, AIM = 10_000, 15_000


async def one(history: int, events: int, experts: int) -> dict:
    from customers import kafka as names
    from projections.db import make_engine
    from streams.catchup import backlog, catch_up, stored_offsets
    from streams.worker import prepare

    async with bench_database() as (_db, settings):
        records = marketplace(history + events, experts=experts, mix=Mix(), seed=9)
        version = await prepare(settings)
        started = time.perf_counter()
        counts = await preload(settings, itertools.islice(records, history))
        preloaded = round(time.perf_counter() - started, 1)
        started = time.perf_counter()
        first = await catch_up(settings, version, threshold=1)
        from_nothing = round(time.perf_counter() - started, 2)
        more = await preload(settings, records)
        topics = [settings.topic(n) for n in names.PROJECTED]
        ends = await names.end_offsets(settings, topics)
        engine = make_engine(settings.database_url)
        try:
            async with engine.connect() as conn:
                behind = backlog(await stored_offsets(conn, version), ends)

            async def caught_up() -> bool:
                async with engine.connect() as conn:
                    return backlog(await stored_offsets(conn, version), ends) == 0

            started = time.perf_counter()
            worker = start_worker(settings, "bench-catchup")
            tracker = StackCpu(worker.proc.pid)
            try:
                await wait_for(caught_up, timeout=900, interval=0.25)
                seconds = round(time.perf_counter() - started, 2)
                cpu = cpu_per_event(tracker.stop(), behind)

                async def reported() -> list[str]:  # the rounds' report, in its log
                    with open(worker.log_path) as f:
                        lines = [json.loads(line)["msg"] for line in f if '"customers.catchup"' in line]
                    return lines if any(line.startswith("caught up") for line in lines) else []
                rounds = await wait_for(reported, timeout=60, interval=0.5)
                peak = peak_rss_mb(worker.proc.pid)
            finally:
                tracker.stop()  # the polling thread ends when the run failed too
                stop_worker(worker)
        finally:
            await engine.dispose()
    return {"history": sum(counts.values()), "behind": behind, "events_produced": sum(more.values()),
            "preload_seconds": preloaded, "seconds_to_head": seconds,
            "history_from_nothing": {"seconds": from_nothing, "rounds": [r.__dict__ for r in first.rounds]},
            "worker_peak_rss_mb": peak, "worker_log": rounds, "cpu_us_per_event": cpu}


async def run(history: int, events: int, baseline_events: int, experts: int) -> Result:
    from bench import engine

    result = Result("catchup", "Catch-up: a worker restarted far behind")
    result.sizes = {"history": history, "events": events, "baseline_events": baseline_events, "experts": experts,
                    "partitions": 4, "mix": "as the projection benchmark"}
    base = await engine.run(baseline_events, 2000, False)
    result.details["baseline"] = base
    result.details["restart"] = await one(history, events, experts)
    result.rows += rows_of(result.details)
    return result


def rows_of(details: dict) -> list[Row]:
    base, run = details["baseline"], details["restart"]
    rate = run["behind"] / run["seconds_to_head"]
    nothing = run["history_from_nothing"]
    return [
        Row("catchup", f"catch-up: a worker restarted {run['behind']:,} records behind ({run['history']:,} projected), "
            "start to head", round(rate), "events/s", baseline=base["apply_rate"],
            baseline_label=f"the per-batch engine on {base['events']:,} of the same records (bench.engine)",
            ratio=round(rate / base["apply_rate"], 1), goal=f">= {GOAL:,} events/s (aim >= {AIM:,})",
            met=rate >= GOAL, attainment=round(rate / GOAL, 3),
            note=f"{run['seconds_to_head']} s from the process's start, start-up and joining the group included; "
                 f"the worker's peak RSS {run.get('worker_peak_rss_mb')} MiB; CPU per record, start to head (us): "
                 f"{run.get('cpu_us_per_event')}, so two cores bound the rate near "
                 f"{cores_bound(run.get('cpu_us_per_event') or {})} events/s"),
        Row("catchup", f"the history's {run['history']:,} records caught up from nothing (set-up)",
            round(run["history"] / nothing["seconds"]), "events/s",
            note=f"{nothing['seconds']} s; phases of its rounds (s): {[r['seconds'] for r in nothing['rounds']]}"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--history", type=int, default=env_int("BENCH_CATCHUP_HISTORY", 300_000))
    parser.add_argument("--events", type=int, default=env_int("BENCH_CATCHUP_EVENTS", 300_000))
    parser.add_argument("--baseline", type=int, default=env_int("BENCH_REPLAY_BASELINE", 50_000))
    parser.add_argument("--experts", type=int, default=env_int("BENCH_EXPERTS", 2000))
    parser.add_argument("--out", default=None, help="also write the result (JSON) to this file")
    args = parser.parse_args()
    emit(run_async(run(args.history, args.events, args.baseline, args.experts)), args.out)

if __name__ == "__main__":
    main()
