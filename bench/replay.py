"""Benchmark 2: `customers replay` (`streams.replay.replay`), wall time and events/s.

    python -m bench.replay [--events 1000000] [--target 1000000]

Pre-loads the topics with a marketplace's history (the same generator as the projection
benchmark), then rebuilds the read model from offset zero into a new version and switches
readers to it, timed from the call to the switch. Old-version clean-up is timed apart (with no
grace period; on a fresh database the old version is empty).

When `--events` is below `--target` (the goal's 1,000,000), the time for the target is an
EXTRAPOLATION from the measured rate, and says so; the rate of the run's second half is used,
since the cost per event grows with the tables.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from bench.common import (Profiler, Result, Row, SqlTimer, bench_database, env_int, peak_rss_mb, reset_peak_rss,
                          run_async)
from bench.workload import Mix, marketplace, preload

GOAL_SECONDS = 60


async def run(events: int, target: int, experts: int, *, batch_size: int = 2000, profile_seconds: float = 20.0) -> Result:
    from streams.replay import replay

    result = Result("replay", "Replay (customers replay)")
    result.sizes = {"events": events, "target": target, "experts": experts, "batch_size": batch_size,
                    "mix": "as the projection benchmark"}
    async with bench_database() as (_db, settings):
        started = time.perf_counter()
        counts = await preload(settings, marketplace(events, experts=experts, mix=Mix(), seed=8))
        result.details["preload"] = {"counts": counts, "seconds": round(time.perf_counter() - started, 1)}
        marks: list[tuple[float, int]] = []
        switched_at = None

        def progress(p) -> None:
            nonlocal switched_at
            marks.append((time.perf_counter(), p.done))
            if p.switched and switched_at is None:
                switched_at = time.perf_counter()

        profiler = Profiler(os.getpid(), f"replay-{settings.topic_prefix.strip('.')}", profile_seconds).start() \
            if profile_seconds else None
        reset_peak_rss()  # the preload's generator is not the replay's
        started = time.perf_counter()
        with SqlTimer() as sql:
            final = await replay(settings, on_progress=progress, grace=0, batch_size=batch_size)
        finished = time.perf_counter()
        peak = peak_rss_mb()
    to_switch = switched_at - started
    total = sum(counts.values())
    half = next(((t, d) for t, d in marks if d >= total / 2), marks[0])
    second_half_rate = (total - half[1]) / max(switched_at - half[0], 1e-6)
    rate = total / to_switch
    result.details.update(
        records=total, seconds_to_switch=round(to_switch, 2), seconds_with_cleanup=round(finished - started, 2),
        rate=round(rate), peak_rss_mb=peak, rate_first_half=round(half[1] / max(half[0] - started, 1e-6)),
        rate_second_half=round(second_half_rate), version=final.version, fold=final.fold,
        profile=profiler.finish() if profiler else None, sql_profile=sql.top())
    rows = [Row("replay", f"replay of {total:,} events: seconds to switch", round(to_switch, 1), "s",
                goal=f"{target:,} in < {GOAL_SECONDS} s" if total < target else f"< {GOAL_SECONDS} s",
                met=(to_switch < GOAL_SECONDS) if total >= target else None,
                attainment=round(GOAL_SECONDS / to_switch, 4) if total >= target else None,
                note=f"{rate:,.0f} events/s (first half {result.details['rate_first_half']:,}/s, second half "
                     f"{result.details['rate_second_half']:,}/s); peak resident memory {peak} MiB")]
    if total < target:
        projected = target / second_half_rate
        rows.append(Row("replay", f"replay of {target:,} events: seconds (EXTRAPOLATED)", round(projected), "s",
                        goal=f"< {GOAL_SECONDS} s", met=projected < GOAL_SECONDS,
                        attainment=round(GOAL_SECONDS / projected, 4),
                        note=f"extrapolated from the second-half rate of a {total:,}-event run; optimistic, "
                             f"since the cost per event grows with the tables"))
    result.rows += rows
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=env_int("BENCH_REPLAY_EVENTS", 1_000_000))
    parser.add_argument("--target", type=int, default=env_int("BENCH_REPLAY_TARGET", 1_000_000))
    parser.add_argument("--experts", type=int, default=env_int("BENCH_EXPERTS", 2000))
    args = parser.parse_args()
    result = run_async(run(args.events, args.target, args.experts))
    result.details.pop("profile", None)
    print(json.dumps({"rows": [r.__dict__ for r in result.rows], "details": result.details}, indent=1))


if __name__ == "__main__":
    main()
