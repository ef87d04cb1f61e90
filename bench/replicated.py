"""Benchmark 7: the service on a three-broker cluster (topics with 3 replicas, 2 in sync, acks=all).

    python -m bench.replicated [--concurrency 64] [--seconds 8] [--kills 5] [--rate 1000] [--freshness-seconds 40]

A local three-node KRaft cluster (`scripts/kafka-cluster.sh`, ports 9492-9494, its own state) is
started for the run and stopped after it. Measured, each against its baseline in the same run:

* the intake (`customers webhooks`, signed Stripe webhooks, 200 after Kafka's acknowledgement)
  on the cluster vs on the single local broker: throughput and p99;
* freshness at `--rate` events/s (intake 2xx -> visible in the API, as `bench.freshness`) with the
  whole pipeline on the cluster;
* a leader's death: `--kills` times, the node leading a partition of `stripe-events` is killed
  with SIGKILL while a sender keeps posting webhooks whose key lands on that partition; the time
  from the kill to the intake's first 2xx for that partition (p50 and p99), the node started
  again and every replica back in sync before the next kill.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import httpx
from aiokafka.partitioner import DefaultPartitioner

from bench.common import (Result, Row, ServiceProcess, bench_settings, emit, env_float, env_int, percentile,
                          run_async)
from bench.intake import http_phase, signed_webhooks
from customers import kafka as names
from testing.cluster import LocalCluster
from webhooks.signing import signature_header

PORT = 9492
REPLICATED = {"topic_replication_factor": 3, "topic_min_insync_replicas": 2}


def _keys_on(partition: int, partitions: int, items: list[tuple[bytes, bytes, bytes]]) -> list[tuple[bytes, bytes, bytes]]:
    """The webhooks whose Kafka key the producer sends to `partition` (its default partitioner)."""
    choose = DefaultPartitioner()
    every = list(range(partitions))
    return [item for item in items if choose(item[1], every, every) == partition]


async def _intake(settings, items, concurrency: int, seconds: float) -> dict:
    await names.ensure_topics(settings)
    with ServiceProcess(settings, "webhooks", name="webhooks-replicated") as intake:
        return await http_phase("intake", intake, [raw for raw, _, _ in items], concurrency, seconds)


async def _leader_deaths(cluster: LocalCluster, settings, items, kills: int) -> list[float]:
    """Seconds from each kill to the first 2xx for a webhook of the dead leader's partition."""
    topic = settings.topic(names.STRIPE_EVENTS)
    out: list[float] = []
    secret = settings.webhook_secrets[0]

    async def post(client: httpx.AsyncClient, body: bytes) -> int:
        headers = {"Content-Type": "application/json", "Stripe-Signature": signature_header(body, secret)}
        try:
            return (await client.post("/webhooks/stripe", content=body, headers=headers)).status_code
        except httpx.HTTPError:
            return 599

    with ServiceProcess(settings, "webhooks", name="webhooks-kills") as intake:
        async with httpx.AsyncClient(base_url=intake.url, timeout=30) as client:
            for k in range(kills):
                partition = k % settings.topic_partitions
                leader = (await cluster.leaders(topic))[partition]
                mine = iter(body for _, _, body in _keys_on(partition, settings.topic_partitions,
                                                            items[k * 2000:(k + 1) * 2000]))
                assert await post(client, next(mine)) == 200  # the partition takes records before the kill
                killed = time.perf_counter()
                await asyncio.to_thread(cluster.kill, leader)
                while await post(client, next(mine)) != 200:
                    await asyncio.sleep(0.05)
                out.append(round(time.perf_counter() - killed, 3))
                await asyncio.to_thread(cluster.start_node, leader)
                deadline = time.perf_counter() + 120
                while not await cluster.in_sync(topic) and time.perf_counter() < deadline:
                    await asyncio.sleep(1)
    return out


async def run(concurrency: int, seconds: float, kills: int, rate: float, freshness_seconds: float) -> Result:
    from bench import freshness

    result = Result("replicated", "Three brokers: intake, freshness and a leader's death")
    result.sizes = {"brokers": 3, "replication_factor": 3, "min_insync_replicas": 2, "concurrency": concurrency,
                    "seconds_per_phase": seconds, "kills": kills, "freshness_rate": rate,
                    "freshness_seconds": freshness_seconds}
    single = bench_settings("postgresql+asyncpg://unused/unused")
    items = signed_webhooks(single, 40_000, "127.0.0.1")
    phases: dict = {"single_broker_intake": await _intake(single, items, concurrency, seconds)}
    cluster = LocalCluster(PORT, "kafka-cluster-bench")
    cluster.start()
    try:
        replicated = bench_settings("postgresql+asyncpg://unused/unused", kafka_bootstrap_servers=cluster.bootstrap,
                                    **REPLICATED)
        phases["three_broker_intake"] = await _intake(replicated, items, concurrency, seconds)
        fresh = await freshness.run(rate, freshness_seconds, rate / 10, 10, samples=300, profile=False,
                                    overrides={"kafka_bootstrap_servers": cluster.bootstrap, **REPLICATED})
        phases["freshness_three_brokers"] = fresh.details
        phases["leader_deaths_s"] = await _leader_deaths(cluster, replicated, items, kills)
    finally:
        cluster.stop()
    result.details = phases
    one, three = phases["single_broker_intake"], phases["three_broker_intake"]
    deaths = phases["leader_deaths_s"]
    hi = phases["freshness_three_brokers"]["goal_rate"]
    result.rows += [
        Row("replicated", "intake on three brokers (acks=all, 2 in sync): signed webhooks/s", three["rate"], "req/s",
            baseline=one["rate"], baseline_label="the same intake on one broker", ratio=round(three["rate"] / one["rate"], 3),
            note=f"p99 {three['latency']['p99_ms']} ms vs {one['latency']['p99_ms']} ms on one broker; "
                 f"p50 {three['latency']['p50_ms']} vs {one['latency']['p50_ms']} ms; {concurrency} connections"),
        Row("replicated", f"freshness p99 at {rate:,.0f} events/s, three brokers", hi["all"]["p99_ms"], "ms",
            goal="< 250 ms (as on one broker)", met=hi["all"]["p99_ms"] < 250,
            note=f"p50 {hi['all']['p50_ms']} ms; booking p99 {hi['booking']['p99_ms']} ms, Stripe p99 "
                 f"{hi['stripe_payment']['p99_ms']} ms; backlog at the end "
                 f"{phases['freshness_three_brokers']['backlog_after_goal_rate']:,} records"),
        Row("replicated", "a partition leader killed (SIGKILL): seconds to the intake's first 2xx for its partition",
            percentile(deaths, 50), "s", note=f"p50 of {len(deaths)} kills; p99 {percentile(deaths, 99)} s; "
                                               f"each: {deaths}"),
    ]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=env_int("BENCH_INTAKE_CONCURRENCY", 64))
    parser.add_argument("--seconds", type=float, default=env_float("BENCH_INTAKE_SECONDS", 8))
    parser.add_argument("--kills", type=int, default=env_int("BENCH_KILLS", 5))
    parser.add_argument("--rate", type=float, default=env_float("BENCH_FRESHNESS_RATE", 1000))
    parser.add_argument("--freshness-seconds", type=float, default=env_float("BENCH_FRESHNESS_SECONDS", 40))
    parser.add_argument("--out", default=None, help="also write the result (JSON) to this file")
    args = parser.parse_args()
    emit(run_async(run(args.concurrency, args.seconds, args.kills, args.rate, args.freshness_seconds)), args.out)

if __name__ == "__main__":
    main()
