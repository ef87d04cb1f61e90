"""Benchmark 2: `customers replay` (`streams.replay.replay`): the bulk fold, to the switch.

    python -m bench.replay [--events 1000000] [--small 200000] [--baseline 50000] [--processes N]

Pre-loads the topics with a marketplace's history (the same generator as the projection
benchmark, on the default 4 partitions), then rebuilds the read model from offset zero into a new
version of a fresh database and switches readers to it, timed from the call to the switch. Runs
at `--events` (the goal's 1,000,000) and at `--small` (the growth curve: events/s at both sizes),
each a real run, never an extrapolation. Reports the peak resident memory of the fold processes
(each reports its own) and of the replay's own process, and the fold's phases.

The baseline, in the same command: the per-batch engine the worker runs (`Projector.apply` in
batches of 2,000, in-process, on `--baseline` records of the same generator: `bench.engine`),
which is what a replay ran before the fold. Its rate does not depend on Kafka, so the ratio is
conservative.
"""

from __future__ import annotations

import argparse
import os
import time

from bench.common import (Profiler, Result, Row, bench_database, emit, env_int, peak_rss_mb, reset_peak_rss,
                          run_async)
from bench.workload import Mix, marketplace, preload

GOAL_SECONDS, AIM_SECONDS = 60, 35
GOAL_MEMORY_MIB, AIM_MEMORY_MIB = 1536, 1024


async def one(events: int, experts: int, processes: int | None, profile_seconds: float) -> dict:
    """One replay of `events` records on a fresh database: seconds to the switch and the fold's report."""
    from streams.replay import replay

    async with bench_database() as (_db, settings):
        started = time.perf_counter()
        counts = await preload(settings, marketplace(events, experts=experts, mix=Mix(), seed=8))
        preloaded = round(time.perf_counter() - started, 1)
        switched_at = None

        def progress(p) -> None:
            nonlocal switched_at
            if p.switched and switched_at is None:
                switched_at = time.perf_counter()

        profiler = Profiler(os.getpid(), f"replay-{settings.topic_prefix.strip('.')}", profile_seconds).start() \
            if profile_seconds else None
        reset_peak_rss()  # the preload's generator is not the replay's
        started = time.perf_counter()
        final = await replay(settings, on_progress=progress, grace=0, processes=processes)
        finished = time.perf_counter()
    return {"events": sum(counts.values()), "counts": counts, "preload_seconds": preloaded,
            "seconds_to_switch": round(switched_at - started, 2), "seconds_with_cleanup": round(finished - started, 2),
            "replay_process_peak_rss_mb": peak_rss_mb(), "fold": final.fold,
            "profile": profiler.finish() if profiler else None}


async def run(events: int, small: int, baseline_events: int, experts: int, *, processes: int | None = None,
              profile_seconds: float = 0.0) -> Result:
    from bench import engine

    result = Result("replay", "Replay (customers replay): the bulk fold")
    result.sizes = {"events": events, "small": small, "baseline_events": baseline_events, "experts": experts,
                    "processes": processes or os.cpu_count(), "partitions": 4, "mix": "as the projection benchmark"}
    base = await engine.run(baseline_events, 2000, False)
    result.details["baseline"] = base
    runs = {}
    for size in (small, events):
        runs[size] = await one(size, experts, processes, profile_seconds if size == events else 0.0)
        result.details[f"run_{size}"] = {k: v for k, v in runs[size].items() if k != "profile"}
    result.details["profile"] = runs[events]["profile"]
    result.rows += rows_of(result.details, events, small)
    return result


def rows_of(details: dict, events: int, small: int) -> list[Row]:
    """The results table's rows, from a run's details (also to render a stored run again)."""
    base = details["baseline"]
    big, little = details[f"run_{events}"], details[f"run_{small}"]
    rate = big["events"] / big["seconds_to_switch"]
    small_rate = little["events"] / little["seconds_to_switch"]
    fold_peak = big["fold"]["peak_rss_mb"] if big["fold"] else None
    phases = big["fold"]["seconds"] if big["fold"] else {}
    return [
        Row("replay", f"replay of {big['events']:,} events, through Kafka, to the switch", big["seconds_to_switch"],
            "s", goal=f"<= {GOAL_SECONDS} s (aim <= {AIM_SECONDS} s)", met=big["seconds_to_switch"] <= GOAL_SECONDS,
            attainment=round(GOAL_SECONDS / big["seconds_to_switch"], 3), note=f"phases (s): {phases}"),
        Row("replay", "the same replay's rate", round(rate), "events/s", baseline=base["apply_rate"],
            baseline_label=f"the per-batch engine on {base['events']:,} of the same records (bench.engine)",
            ratio=round(rate / base["apply_rate"], 1)),
        Row("replay", f"replay of {little['events']:,} events (growth curve)", little["seconds_to_switch"], "s",
            note=f"{small_rate:,.0f} events/s; the {big['events']:,}-event run's rate is {rate / small_rate:.2f}x "
                 f"this one's (1 or more: linear or better)"),
        Row("replay", "peak resident memory of a fold process at the full size", fold_peak or 0, "MiB",
            goal=f"<= {GOAL_MEMORY_MIB} MiB (aim <= {AIM_MEMORY_MIB} MiB)",
            met=None if fold_peak is None else fold_peak <= GOAL_MEMORY_MIB,
            attainment=round(GOAL_MEMORY_MIB / fold_peak, 3) if fold_peak else None,
            note=f"at most one share of --share-size records; the replay's own process: "
                 f"{big['replay_process_peak_rss_mb']} MiB"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=env_int("BENCH_REPLAY_EVENTS", 1_000_000))
    parser.add_argument("--small", type=int, default=env_int("BENCH_REPLAY_SMALL", 200_000))
    parser.add_argument("--baseline", type=int, default=env_int("BENCH_REPLAY_BASELINE", 50_000))
    parser.add_argument("--experts", type=int, default=env_int("BENCH_EXPERTS", 2000))
    parser.add_argument("--processes", type=int, default=None)
    parser.add_argument("--out", default=None, help="also write the result (JSON) to this file")
    args = parser.parse_args()
    result = run_async(run(args.events, args.small, args.baseline, args.experts, processes=args.processes))
    result.details.pop("profile", None)
    emit(result, args.out)

if __name__ == "__main__":
    main()
