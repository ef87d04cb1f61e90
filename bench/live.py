"""Benchmark 1c: the live engine on a projected history (`projections.live`).

    python -m bench.live [--histories 200000,600000,1000000] [--events 100000] [--runs 3]

For each history size: a marketplace's history (the projection benchmark's generator, 4
partitions) is produced and projected by `customers replay` (the worker's starting point in
production: a read model already built). Then, `--runs` times: `--events` more records of the same
marketplace are produced while no worker runs, and a real worker process (`customers worker`,
default settings, bulk catch-up off so the batches do the work) is started; its rate is taken
from its first applied record to the moment the database's offsets reach the topics' ends (the
experts are loaded from their rows on first touch: the figure is the rate over the second half of
the run, when the worker holds them; the whole run's rate is reported beside it). The worker's
peak resident memory is read at the end of each run, and the CPU time per record over the second
half (the worker process, PostgreSQL's processes, the broker's JVM): their sum bounds what two
cores can carry, whatever the overlap.

The baseline, in the same command: the per-batch engine that reads every batch back
(`projections.projector.Projector`, in-process, batches of 2,000: `bench.engine`) on
`--baseline` records of the same generator. It runs without Kafka or a process around it, so the
ratio is conservative.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import time

from bench.common import (Profiler, Result, Row, asyncpg_url, bench_database, cores_bound, cpu_per_event, emit,
                          env_int, free_port, mean_batch, peak_rss_mb, run_async, StackCpu, start_worker,
                          stop_worker)
from bench.projection import applied
from bench.workload import Mix, marketplace, preload

GOAL, AIM = 6_000, 10_000
GOAL_RSS_MB, AIM_RSS_MB = 1536, 1024
PROFILE_SECONDS = 20


async def _follow(settings, db_name: str, version: int, total: int, timeout: float) -> dict:
    """Start a worker; follow the stored offsets until `total` records are applied."""
    import asyncpg

    conn = await asyncpg.connect(asyncpg_url(db_name))
    port = free_port()
    worker = start_worker(settings, "bench-live", metrics_port=port)
    try:
        spawned = time.perf_counter()
        start = await applied(conn, version)
        first_at = first = None
        profiler: Profiler | None = None
        tracker: StackCpu | None = None
        samples: list[tuple[float, int]] = []
        while True:
            now = time.perf_counter()
            if now - spawned > timeout:
                raise TimeoutError(f"the worker applied {await applied(conn, version) - start} of "
                                   f"{total - start} in {timeout:.0f} s")
            if not worker.alive():
                raise RuntimeError(f"the worker died; see {worker.log_path}")
            done = await applied(conn, version)
            samples.append((now, done))
            if done > start and first_at is None:
                first_at, first = now, done
            if profiler is None and done >= start + (total - start) // 2:
                # where the steady half's time goes (py-spy, when installed) and the CPU it takes
                profiler = Profiler(worker.proc.pid, f"live-{total}", PROFILE_SECONDS).start()
                tracker, tracked_from = StackCpu(worker.proc.pid), done
            if done >= total:
                break
            await asyncio.sleep(0.1)
        finished = time.perf_counter()
        cpu = cpu_per_event(tracker.stop(), done - tracked_from)
        batch = mean_batch(port)
        peak = peak_rss_mb(worker.proc.pid)
    finally:
        if tracker is not None:  # the polling thread ends when the run failed too
            tracker.stop()
        stop_worker(worker)
        await conn.close()
    profile = profiler.finish() if profiler else None
    steady = finished - first_at
    # the second half of the records: the experts' rows are held by then (the first half loads them)
    half_at, half = next((t, n) for t, n in samples if n >= start + (total - start) // 2)
    return {"records": total - start, "startup_seconds": round(first_at - spawned, 2),
            "steady_seconds": round(steady, 2), "rate_whole_run": round((total - first) / steady),
            "rate": round((total - half) / (finished - half_at)) if finished > half_at else None,
            "peak_rss_mb": peak, "forgetting": _forgot(worker.log_path), "cpu_us_per_event": cpu, "mean_batch": batch,
            "profile": profile}


def _forgot(path) -> int:
    """How many times the worker forgot experts to stay within its budget (its log says so)."""
    with open(path, errors="replace") as f:
        return sum('"forgot ' in line for line in f)


async def one(history: int, events: int, runs: int, experts: int, timeout: float) -> dict:
    from customers import kafka as names
    from projections.db import make_engine
    from projections.projector import stored_offsets
    from projections.versions import live_version
    from streams.catchup import _tell_the_group
    from streams.replay import replay

    async with bench_database(catchup_threshold=0) as (db_name, settings):
        records = marketplace(history + runs * events, experts=experts, mix=Mix(), seed=11)
        started = time.perf_counter()
        counts = await preload(settings, itertools.islice(records, history))
        preloaded = round(time.perf_counter() - started, 1)
        started = time.perf_counter()
        await replay(settings, grace=0)
        replayed = round(time.perf_counter() - started, 1)
        engine = make_engine(settings.database_url)
        out = {"history": sum(counts.values()), "preload_seconds": preloaded, "replay_seconds": replayed, "runs": []}
        try:
            for _ in range(runs):
                await preload(settings, itertools.islice(records, events))
                async with engine.connect() as conn:
                    version = await live_version(conn)
                    stored = await stored_offsets(conn, version)
                await _tell_the_group(settings, version, stored)  # the worker starts at the database's offsets
                ends = await names.end_offsets(settings, [settings.topic(n) for n in names.PROJECTED])
                out["runs"].append(await _follow(settings, db_name, version, sum(ends.values()), timeout))
        finally:
            await engine.dispose()
    return out


async def run(histories: list[int], events: int, runs: int, baseline_events: int, experts: int,
              timeout: float = 900.0) -> Result:
    from bench import engine

    result = Result("live", "Live engine: a worker on a projected history")
    result.sizes = {"histories": histories, "events": events, "runs": runs, "baseline_events": baseline_events,
                    "experts": experts, "partitions": 4, "mix": "as the projection benchmark"}
    base = await engine.run(baseline_events, 2000, False)
    result.details["baseline"] = base
    result.details["histories"] = [await one(h, events, runs, experts, timeout) for h in histories]
    result.rows += rows_of(result.details)
    return result


def rows_of(details: dict) -> list[Row]:
    base = details["baseline"]
    rows = []
    for h in details["histories"]:
        rates = [r["rate"] for r in h["runs"]]
        rate = sorted(rates)[len(rates) // 2]
        peak = max(r["peak_rss_mb"] or 0 for r in h["runs"])
        median = h["runs"][rates.index(rate)]
        cpu = median.get("cpu_us_per_event") or {}
        main = 550_000 <= h["history"] <= 700_000
        rows.append(Row(
            "live", f"live projection, worker process, {h['history']:,} events of history projected "
            f"(median of {len(rates)} runs)", rate, "events/s", baseline=base["apply_rate"],
            baseline_label=f"the per-batch engine on {base['events']:,} of the same records (bench.engine)",
            ratio=round(rate / base["apply_rate"], 1),
            goal=f">= {GOAL:,} events/s (aim >= {AIM:,})" if main else "reported (the growth curve)",
            met=rate >= GOAL if main else None, attainment=round(rate / GOAL, 3) if main else None,
            note=f"runs: {rates} events/s over the second half of {h['runs'][0]['records']:,} records each "
                 f"(whole runs, the experts' first loads included: {[r.get('rate_whole_run') for r in h['runs']]}); "
                 f"worker peak RSS {peak} MiB; experts forgotten {sum(r.get('forgetting', 0) for r in h['runs'])} "
                 f"times; history built by a replay in {h['replay_seconds']} s; CPU per event over the median run's "
                 f"second half (us): {cpu}, so two cores bound the rate near {cores_bound(cpu)} events/s; "
                 f"mean batch {median.get('mean_batch')} records"))
        if h["history"] >= 900_000:
            rows.append(Row("live", f"worker peak resident memory, {h['history']:,} events of history", peak, "MiB",
                            goal=f"<= {GOAL_RSS_MB} MiB (aim <= {AIM_RSS_MB})", met=peak <= GOAL_RSS_MB,
                            attainment=round(GOAL_RSS_MB / peak, 3) if peak else None,
                            note="WORKER_STATE_MAX_ROWS at its default"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--histories", default=os.environ.get("BENCH_LIVE_HISTORIES", "200000,600000,1000000"))
    parser.add_argument("--events", type=int, default=env_int("BENCH_LIVE_EVENTS", 100_000))
    parser.add_argument("--runs", type=int, default=env_int("BENCH_LIVE_RUNS", 3))
    parser.add_argument("--baseline", type=int, default=env_int("BENCH_REPLAY_BASELINE", 50_000))
    parser.add_argument("--experts", type=int, default=env_int("BENCH_EXPERTS", 2000))
    parser.add_argument("--out", default=None, help="also write the result (JSON) to this file")
    args = parser.parse_args()
    histories = [int(x) for x in args.histories.split(",") if x]
    emit(run_async(run(histories, args.events, args.runs, args.baseline, args.experts)), args.out)


if __name__ == "__main__":
    main()
