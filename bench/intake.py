"""Benchmark 5: signed Stripe webhooks per second into one `customers webhooks` process.

    python -m bench.intake [--concurrency 64] [--seconds 8]

Every request is a distinct, signed `payment_intent.succeeded` event; a 200 means Kafka has
acknowledged it (acks=all). Baselines measured in the same run: the same uvicorn serving a
plain ASGI app (and a FastAPI route that only reads the body), and a bare aiokafka producer
doing `send_and_wait` with the intake's producer settings and the same concurrency.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import time

from bench.common import (Profiler, Result, Row, ServiceProcess, bench_settings, cpu_seconds, env_float,
                          env_int, run_async, summary_ms)
from bench.rawhttp import closed_loop, request_bytes
from customers import kafka as names
from testing import samples as s
from customers.settings import Settings
from webhooks.signing import signature_header

GOAL = 2000


def signed_webhooks(settings: Settings, n: int, host: str) -> list[tuple[bytes, bytes, bytes]]:
    """(raw HTTP request, Kafka key, body) for `n` distinct signed Stripe events."""
    out = []
    secret = settings.webhook_secrets[0]
    for i in range(n):
        pi = f"pi_bench{i:07d}"
        event = s.stripe_event("payment_intent.succeeded", s.payment_intent(
            pi, 7000, "succeeded", fee=700, charge=f"ch_bench{i:07d}",
            metadata={"expert_id": f"ex_{i % 500:05d}", "meeting_id": f"m_{i:08d}"}))
        body = json.dumps(event).encode()
        raw = request_bytes("POST", "/webhooks/stripe", host, {
            "Content-Type": "application/json", "Stripe-Signature": signature_header(body, secret)}, body)
        out.append((raw, pi.encode(), body))
    return out


async def http_phase(name: str, process: ServiceProcess, requests: list[bytes], concurrency: int, seconds: float,
                     profile: bool = False) -> dict:
    cpu_before = cpu_seconds(process.pid)
    profiler = Profiler(process.pid, f"{name}-{process.settings.topic_prefix.strip('.')}",
                        seconds).start() if profile else None
    result = await closed_loop("127.0.0.1", process.port, itertools.cycle(requests), concurrency=concurrency,
                               duration=seconds, warmup=1.5)
    cpu = cpu_seconds(process.pid) - cpu_before
    return {"rate": round(result.rate), "ok": result.ok, "failed": result.failed, "statuses": result.statuses,
            "latency": summary_ms(result.latencies_ms), "server_cpu_share": round(cpu / (result.seconds + 1.5), 2),
            "profile": profiler.finish() if profiler else None}


async def producer_phase(settings: Settings, items: list[tuple[bytes, bytes, bytes]], concurrency: int,
                         seconds: float) -> dict:
    """A bare producer: `send_and_wait` loops, the intake's settings (acks=all, idempotent)."""
    producer = names.new_producer(settings)
    await producer.start()
    topic = settings.topic(names.STRIPE_EVENTS)
    source = itertools.cycle(items)
    done = 0
    counting = False
    stop_at = 0.0
    latencies: list[float] = []

    async def loop() -> None:
        nonlocal done
        while not stop_at or time.perf_counter() < stop_at:
            _, key, body = next(source)
            started = time.perf_counter()
            await producer.send_and_wait(topic, body, key=key)
            if counting and time.perf_counter() < stop_at:
                done += 1
                latencies.append((time.perf_counter() - started) * 1000)

    try:
        tasks = [asyncio.create_task(loop()) for _ in range(concurrency)]
        await asyncio.sleep(1.5)
        counting, begun = True, time.perf_counter()
        stop_at = begun + seconds
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - begun
    finally:
        await producer.stop()
    return {"rate": round(done / elapsed), "ok": done, "latency": summary_ms(latencies)}


async def run(concurrency: int, seconds: float, *, profile: bool = True) -> Result:
    result = Result("intake", "Webhook intake throughput, one process")
    result.sizes = {"concurrency": concurrency, "seconds_per_phase": seconds,
                    "request": "signed Stripe payment_intent.succeeded, ~2 KB"}
    settings = bench_settings("postgresql+asyncpg://unused/unused")
    await names.ensure_topics(settings)
    items = signed_webhooks(settings, 40_000, "127.0.0.1")
    raws = [raw for raw, _, _ in items]
    phases = {}
    with ServiceProcess(settings, "hello-asgi", argv=["-m", "bench.hello", "asgi", "{port}"]) as hello:
        phases["uvicorn_asgi_hello"] = await http_phase("hello", hello, raws, concurrency, seconds)
    with ServiceProcess(settings, "hello-fastapi", argv=["-m", "bench.hello", "fastapi", "{port}"]) as hello:
        phases["uvicorn_fastapi_read_body"] = await http_phase("hello-fastapi", hello, raws, concurrency, seconds)
    phases["bare_producer"] = await producer_phase(settings, items, concurrency, seconds)
    with ServiceProcess(settings, "webhooks") as intake:
        phases["intake"] = await http_phase("intake", intake, raws, concurrency, seconds, profile=profile)
    result.details = phases
    rate = phases["intake"]["rate"]
    hello, producer = phases["uvicorn_asgi_hello"]["rate"], phases["bare_producer"]["rate"]
    result.rows += [
        Row("intake", "intake: signed webhooks/s (200 after Kafka ack)", rate, "req/s", baseline=producer,
            baseline_label="bare aiokafka send_and_wait, acks=all", ratio=round(rate / producer, 3),
            goal=f">= {GOAL:,}/s", met=rate >= GOAL, attainment=round(rate / GOAL, 4),
            note=f"p50 {phases['intake']['latency']['p50_ms']} ms, p99 {phases['intake']['latency']['p99_ms']} ms "
                 f"at {concurrency} connections; intake process CPU {phases['intake']['server_cpu_share']:.0%}"),
        Row("intake", "intake vs uvicorn hello-world", rate, "req/s", baseline=hello,
            baseline_label="uvicorn + plain ASGI app", ratio=round(rate / hello, 3),
            note=f"FastAPI route reading the body: {phases['uvicorn_fastapi_read_body']['rate']:,} req/s"),
    ]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=env_int("BENCH_INTAKE_CONCURRENCY", 64))
    parser.add_argument("--seconds", type=float, default=env_float("BENCH_INTAKE_SECONDS", 8))
    args = parser.parse_args()
    result = run_async(run(args.concurrency, args.seconds))
    for phase in result.details.values():
        phase.pop("profile", None)
    print(json.dumps({"rows": [r.__dict__ for r in result.rows], "details": result.details}, indent=1))


if __name__ == "__main__":
    main()
