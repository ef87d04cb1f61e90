"""Benchmark 1: projection throughput into PostgreSQL, against a bare consumer of the same topics.

    python -m bench.projection [--events 200000]

Pre-loads the topics with a marketplace's history (booking events, payment facts), reads them
once with a bare aiokafka `getmany` loop (the ceiling of any Python consumer here), then starts
the real worker (`customers worker`) and times it until `projection_offsets` reach the ends.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.common import (PRODUCTION_TIMINGS, Profiler, Result, Row, asyncpg_url, bench_database, cpu_seconds, env_int, run_async,
                          peak_rss_mb, start_worker, stop_worker)
from bench.workload import Mix, marketplace, preload
from customers import kafka as names
from customers.settings import Settings

GOAL_RATE = 20_000
GOAL_RATIO = 0.33  # of the floor


async def _from_the_start(settings: Settings, ends: dict[tuple[str, int], int]) -> tuple[AIOKafkaConsumer, int]:
    """A started consumer at offset zero of every non-empty partition, and how many records they hold."""
    tps = [TopicPartition(t, p) for (t, p), end in ends.items() if end > 0]
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                max_partition_fetch_bytes=4 << 20)
    await consumer.start()
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    return consumer, sum(ends[(tp.topic, tp.partition)] for tp in tps)


async def bare_consume(settings: Settings, ends: dict[tuple[str, int], int], *, decode: bool = False) -> dict:
    """Read every record of the projected topics from offset zero; records/s from the first fetch.

    With `decode`, each record is decoded with pydantic (in the consumer's time), and the same
    records are timed apart through both decoders: `decode_only`, records/s of decoding alone.
    """
    from streams.decode import decoder_for

    consumer, want = await _from_the_start(settings, ends)
    try:
        count = 0
        decoding = {"pydantic": 0.0, "msgspec": 0.0}
        started = time.perf_counter()
        while count < want:
            batch = await consumer.getmany(timeout_ms=1000, max_records=2000)
            for tp, records in batch.items():
                count += len(records)
                if decode:
                    for name, fast in (("pydantic", False), ("msgspec", True)):
                        decoder = decoder_for(tp.topic, settings.topic_prefix, fast)
                        began = time.perf_counter()
                        for r in records:
                            decoder(r.value)
                        decoding[name] += time.perf_counter() - began
        seconds = time.perf_counter() - started - decoding["msgspec"]  # as if pydantic alone decoded
    finally:
        await consumer.stop()
    out = {"records": count, "seconds": round(seconds, 3), "rate": round(count / seconds)}
    if decode:
        out["decode_only"] = {name: round(count / spent) for name, spent in decoding.items()}
    return out


async def floor_consume(settings: Settings, ends: dict[tuple[str, int], int], db_name: str) -> dict:
    """The floor of any projection here: `getmany`, the worker's decoder, and COPY of one row per
    record into an unlogged, unindexed table, in batches of at most 2,000; records/s from the first fetch."""
    import asyncpg

    from streams.decode import decoder_for

    conn = await asyncpg.connect(asyncpg_url(db_name))
    await conn.execute('CREATE UNLOGGED TABLE bench_floor (topic text, "partition" int, "offset" bigint, '
                       'kind text, value bytea)')
    consumer, want = await _from_the_start(settings, ends)
    try:
        count = 0
        started = time.perf_counter()
        while count < want:
            batch = await consumer.getmany(timeout_ms=1000, max_records=2000)
            rows = []
            for tp, records in batch.items():
                decoder = decoder_for(tp.topic, settings.topic_prefix)
                rows += [(tp.topic, tp.partition, r.offset, decoder(r.value).type, r.value) for r in records]
            if rows:
                await conn.copy_records_to_table("bench_floor", records=rows)
                count += len(rows)
        seconds = time.perf_counter() - started
    finally:
        await consumer.stop()
        await conn.execute("DROP TABLE IF EXISTS bench_floor")
        await conn.close()
    return {"records": count, "seconds": round(seconds, 3), "rate": round(count / seconds)}


async def applied(conn, version: int = 1) -> int:
    """Records applied so far: the sum over partitions of (stored offset + 1)."""
    value = await conn.fetchval('SELECT COALESCE(SUM("offset" + 1), 0) FROM projection_offsets WHERE version = $1',
                                version)
    return int(value)


async def project(settings: Settings, db_name: str, total: int, *, timeout: float, profile_seconds: float) -> dict:
    """Start the worker; follow `projection_offsets` until every record is applied."""
    import asyncpg

    conn = await asyncpg.connect(asyncpg_url(db_name))
    worker = None
    profiler = None
    try:
        spawned = time.perf_counter()
        worker = start_worker(settings)
        first_at = first_count = None
        samples = []
        cpu_at_first = 0.0
        deadline = spawned + timeout
        while True:
            now = time.perf_counter()
            if now > deadline:
                raise TimeoutError(f"worker applied {samples[-1][1] if samples else 0} of {total} in {timeout:.0f}s")
            if not worker.alive():
                raise RuntimeError(f"the worker died; see {worker.log_path}")
            try:
                done = await applied(conn)
            except asyncpg.UndefinedTableError:
                done = 0
            if done and first_at is None:
                first_at, first_count = now, done
                cpu_at_first = cpu_seconds(worker.proc.pid)
                if profile_seconds:
                    profiler = Profiler(worker.proc.pid, f"projection-{settings.topic_prefix.strip('.')}",
                                        profile_seconds).start()
            samples.append((round(now - spawned, 2), done))
            if done >= total:
                break
            await asyncio.sleep(0.25)
        finished = time.perf_counter()
        cpu_busy = cpu_seconds(worker.proc.pid) - cpu_at_first
        peak = peak_rss_mb(worker.proc.pid)
    finally:
        if worker is not None:
            stop_worker(worker)
        await conn.close()
    steady = finished - first_at
    return {
        "records": total,
        "startup_seconds": round(first_at - spawned, 2),
        "steady_seconds": round(steady, 2),
        "rate": round((total - first_count) / steady) if steady > 0 else None,
        "rate_with_startup": round(total / (finished - spawned)),
        "peak_rss_mb": peak,
        "worker_cpu_share": round(cpu_busy / steady, 2) if steady > 0 else None,
        "progress": samples[:: max(1, len(samples) // 40)],
        "profile": profiler.finish() if profiler else None,
    }


async def run(events: int, experts: int, *, timeout: float = 900.0, profile_seconds: float = 20.0) -> Result:
    result = Result("projection", "Projection throughput into PostgreSQL")
    mix = Mix()
    result.sizes = {"events": events, "experts": experts,
                    "mix": "booking.created + 10% rescheduled, 5% cancelled, 3% no-show; 30% of meetings paid "
                           "(2 payment facts each)",
                    "batch": f"worker defaults (WORKER_BATCH_SIZE={PRODUCTION_TIMINGS['worker_batch_size']}, "
                             f"WORKER_BATCH_WINDOW={PRODUCTION_TIMINGS['worker_batch_window']})",
                    "events_per_meeting": round(mix.events_per_meeting, 2)}
    # the batches' own rate: a worker started this far behind would fold the backlog in bulk (2b)
    async with bench_database(catchup_threshold=0) as (db_name, settings):
        started = time.perf_counter()
        counts = await preload(settings, marketplace(events, experts=experts, mix=mix))
        result.details["preload"] = {"counts": counts, "seconds": round(time.perf_counter() - started, 1)}
        ends = await names.end_offsets(settings, [settings.topic(n) for n in names.PROJECTED])
        total = sum(ends.values())
        bare = await bare_consume(settings, ends)
        decoded = await bare_consume(settings, ends, decode=True)
        floor = await floor_consume(settings, ends, db_name)
        proj = await project(settings, db_name, total, timeout=timeout, profile_seconds=profile_seconds)
    result.details.update(bare_consumer=bare, bare_consumer_with_decode=decoded, floor=floor, projection=proj)
    rate, ratio = proj["rate"], proj["rate"] / floor["rate"]
    result.rows += [
        Row("projection", "projection events/s (steady, worker process)", rate, "events/s",
            baseline=floor["rate"], baseline_label="floor: getmany + decode + COPY of one row per event into "
                                                    "an unlogged, unindexed table", ratio=round(ratio, 3),
            goal=f">= {GOAL_RATE:,}/s and >= {GOAL_RATIO:.0%} of the floor",
            met=rate >= GOAL_RATE and ratio >= GOAL_RATIO,
            attainment=round(min(rate / GOAL_RATE, ratio / GOAL_RATIO), 4),
            note=f"{total:,} records; worker start-up {proj['startup_seconds']} s not included "
                 f"({proj['rate_with_startup']:,}/s with it); worker peak resident memory {proj['peak_rss_mb']} MiB"),
        Row("projection", "bare consumer + decode (pydantic) events/s", decoded["rate"], "events/s",
            baseline=bare["rate"], baseline_label="bare aiokafka getmany loop",
            ratio=round(decoded["rate"] / bare["rate"], 3), note="where decoding alone lands"),
        Row("projection", "decode only (msgspec, customers.wire) records/s", decoded["decode_only"]["msgspec"],
            "records/s", baseline=decoded["decode_only"]["pydantic"], baseline_label="decode only (pydantic)",
            ratio=round(decoded["decode_only"]["msgspec"] / decoded["decode_only"]["pydantic"], 2),
            note="the same records through both decoders; `decoder_for(..., fast=True)`"),
    ]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=env_int("BENCH_PROJECTION_EVENTS", 200_000))
    parser.add_argument("--experts", type=int, default=env_int("BENCH_EXPERTS", 2000))
    args = parser.parse_args()
    result = run_async(run(args.events, args.experts))
    print(json.dumps({"rows": [r.__dict__ for r in result.rows], "details": result.details}, indent=1, default=str))


if __name__ == "__main__":
    main()
