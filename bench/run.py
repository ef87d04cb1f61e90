"""`make bench`: every benchmark, one after the other, on the local infrastructure.

    python -m bench.run [--only projection,live,scale_out,replay,catchup,api,freshness,intake,replicated] [--merge]

Writes `bench/results/results.json`, `results.md` and `results.png`. Sizes come from the
environment (defaults: the issue's sizes where they fit the time budget):

| variable | default | benchmark |
| --- | --- | --- |
| `BENCH_PROJECTION_EVENTS` | 200000 | 1: events pre-loaded for the worker |
| `BENCH_LIVE_HISTORIES`, `BENCH_LIVE_EVENTS`, `BENCH_LIVE_RUNS` | 200000,600000,1000000, 100000, 3 | 1c: histories projected by a replay before the worker starts, events it then applies, runs per history |
| `BENCH_SCALE_EVENTS` | 100000 | 1b: events projected by one worker, then by two, on 12 partitions |
| `BENCH_REPLAY_EVENTS`, `BENCH_REPLAY_SMALL`, `BENCH_REPLAY_BASELINE` | 1000000, 200000, 50000 | 2: events replayed (the goal's size), the growth curve's smaller run, the per-batch engine's records (the baseline) |
| `BENCH_CATCHUP_HISTORY`, `BENCH_CATCHUP_EVENTS` | 300000, 300000 | 2b: events projected before the worker stops, events produced while it is stopped (the goal's size) |
| `BENCH_EXPERTS` | 2000 | 1, 2, 2b: experts in the generated history |
| `BENCH_API_MEETINGS`, `BENCH_API_CUSTOMERS`, `BENCH_API_BIG_MEETINGS`, `BENCH_API_EXPERTS` | 1000000, 10000, 50000, 2000 | 3 |
| `BENCH_API_REQUESTS` | 200 | 3, 6: requests of each kind |
| `BENCH_INSIGHTS_CUSTOMERS` | 10000 | 6: customers of the big expert of `GET /api/insights` |
| `BENCH_FRESHNESS_RATE`, `BENCH_FRESHNESS_SECONDS` | 1000, 40 | 4: the goal's steady rate and run |
| `BENCH_FRESHNESS_LOW_RATE`, `BENCH_FRESHNESS_LOW_SECONDS` | 100, 15 | 4: the low-rate reference phase |
| `BENCH_FRESHNESS_SAMPLES` | 300 | 4: tracked changes at the goal's rate (half as many at the low rate) |
| `BENCH_INTAKE_CONCURRENCY`, `BENCH_INTAKE_SECONDS` | 64, 8 | 5, 7 |
| `BENCH_KILLS` | 5 | 7: partition leaders killed on the three-broker cluster |
| `BENCH_PROFILE` | 1 | 0: no py-spy sampling |
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
import traceback
from dataclasses import asdict
from datetime import datetime, timezone

from bench.common import (RESULTS, ROOT, Profiler, Result, env_float, env_int, infrastructure_ready, machine,
                          run_async)
from bench.report import markdown, plot

ORDER = ["projection", "live", "scale_out", "replay", "catchup", "api", "insights", "freshness", "intake", "replicated"]


async def one(name: str) -> Result:
    if name == "projection":
        from bench import projection

        return await projection.run(env_int("BENCH_PROJECTION_EVENTS", 200_000), env_int("BENCH_EXPERTS", 2000),
                                    profile_seconds=20 if Profiler.available() else 0)
    if name == "live":
        from bench import live

        return await live.run([int(x) for x in os.environ.get("BENCH_LIVE_HISTORIES", "200000,600000,1000000").split(",")],
                              env_int("BENCH_LIVE_EVENTS", 100_000), env_int("BENCH_LIVE_RUNS", 3),
                              env_int("BENCH_REPLAY_BASELINE", 50_000), env_int("BENCH_EXPERTS", 2000))
    if name == "scale_out":
        from bench import scale_out

        return await scale_out.run(env_int("BENCH_SCALE_EVENTS", 100_000), env_int("BENCH_EXPERTS", 2000))
    if name == "replay":
        from bench import replay

        return await replay.run(env_int("BENCH_REPLAY_EVENTS", 1_000_000), env_int("BENCH_REPLAY_SMALL", 200_000),
                                env_int("BENCH_REPLAY_BASELINE", 50_000), env_int("BENCH_EXPERTS", 2000),
                                profile_seconds=20 if Profiler.available() else 0)
    if name == "catchup":
        from bench import catchup

        return await catchup.run(env_int("BENCH_CATCHUP_HISTORY", 300_000), env_int("BENCH_CATCHUP_EVENTS", 300_000),
                                 env_int("BENCH_REPLAY_BASELINE", 50_000), env_int("BENCH_EXPERTS", 2000))
    if name == "insights":
        from bench import insights

        return await insights.compare(env_int("BENCH_INSIGHTS_CUSTOMERS", 10_000), env_int("BENCH_API_REQUESTS", 200))
    if name == "api":
        from bench import api_latency

        return await api_latency.compare(env_int("BENCH_API_MEETINGS", 1_000_000), env_int("BENCH_API_CUSTOMERS", 10_000),
                                         env_int("BENCH_API_BIG_MEETINGS", 50_000), env_int("BENCH_API_EXPERTS", 2000),
                                         env_int("BENCH_API_REQUESTS", 200), profile=Profiler.available())
    if name == "freshness":
        from bench import freshness

        return await freshness.run(env_float("BENCH_FRESHNESS_RATE", 1000), env_float("BENCH_FRESHNESS_SECONDS", 40),
                                   env_float("BENCH_FRESHNESS_LOW_RATE", 100),
                                   env_float("BENCH_FRESHNESS_LOW_SECONDS", 15),
                                   samples=env_int("BENCH_FRESHNESS_SAMPLES", 300), profile=Profiler.available())
    if name == "intake":
        from bench import intake

        return await intake.run(env_int("BENCH_INTAKE_CONCURRENCY", 64), env_float("BENCH_INTAKE_SECONDS", 8),
                                profile=Profiler.available())
    if name == "replicated":
        from bench import replicated

        return await replicated.run(env_int("BENCH_INTAKE_CONCURRENCY", 64), env_float("BENCH_INTAKE_SECONDS", 8),
                                    env_int("BENCH_KILLS", 5), env_float("BENCH_FRESHNESS_RATE", 1000),
                                    env_float("BENCH_FRESHNESS_SECONDS", 40))
    raise ValueError(name)


SERVICE = ("customers/", "streams/", "projections/", "api/", "webhooks/", "ops/", "migrations/")


def git_state() -> dict:
    """The commit measured, and the service files that differ from it in the working tree."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout

    changed = [line[3:] for line in git("status", "--porcelain").splitlines() if line[3:].startswith(SERVICE)]
    return {"commit": git("rev-parse", "--short", "HEAD").strip(), "service_files_changed_since_commit": changed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(ORDER), help="comma-separated subset, in this order: "
                                                                 + ",".join(ORDER))
    parser.add_argument("--merge", action="store_true",
                        help="replace only these benchmarks in the existing results, each marked with its own run")
    args = parser.parse_args()
    wanted = [n for n in ORDER if n in args.only.split(",")]
    RESULTS.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    run = {"started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine(),
           "git": git_state()}
    report = {**run, "benchmarks": []}
    for name in wanted:
        print(f"== {name}", flush=True)
        began = time.perf_counter()
        result = None
        for attempt in (1, 2):  # the infrastructure is shared: a restart by someone else costs one retry
            if not run_async(infrastructure_ready()):
                result = Result(name, name, error="Kafka or PostgreSQL not reachable (make infra-up)")
                break
            try:
                result = run_async(one(name))
                result.details["attempt"] = attempt
                break
            except Exception as exc:  # noqa: BLE001 - one failed benchmark must not hide the others
                traceback.print_exc()
                result = Result(name, name, error=f"{type(exc).__name__}: {exc}")
                print(f"   {name} failed (attempt {attempt}); " + ("retrying" if attempt == 1 else "giving up"),
                      flush=True)
        result.seconds = round(time.perf_counter() - began, 1)
        for row in result.rows:
            print(f"   {row.metric}: {row.value:,} {row.unit}" + (f" (baseline {row.baseline:,}, ratio {row.ratio})"
                                                                 if row.baseline is not None else ""), flush=True)
        if args.merge:
            result.details["run"] = run  # its own commit and machine, apart from the report's
        report["benchmarks"].append(asdict(result))
    report["total_seconds"] = round(time.perf_counter() - started, 1)
    if args.merge and (RESULTS / "results.json").exists():
        kept = json.loads((RESULTS / "results.json").read_text())
        fresh = {b["name"]: b for b in report["benchmarks"]}
        kept["benchmarks"] = [fresh.pop(b["name"], b) for b in kept["benchmarks"]] + list(fresh.values())
        report = kept
    (RESULTS / "results.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    (RESULTS / "results.md").write_text(markdown(report))
    png = plot(report, RESULTS / "results.png")
    print(f"\nwrote {RESULTS / 'results.json'}, {RESULTS / 'results.md'}" + (f", {png}" if png else "")
          + f" in {report['total_seconds']:.0f} s")
    failed = [b["name"] for b in report["benchmarks"] if b["error"]]
    if failed:
        raise SystemExit(f"could not run: {', '.join(failed)}")


if __name__ == "__main__":
    main()
