"""Benchmark 4: freshness, from the intake's 2xx to the first API read that shows the change.

    python -m bench.freshness [--rate 1000] [--seconds 40] [--low-rate 100] [--low-seconds 15] [--samples 300]

Real processes: `customers webhooks`, `customers worker` and `customers api` (uvicorn), over a
fresh database. An open-loop sender drives booking events (one per request, as the booking
system posts them) and signed Stripe webhooks at a steady rate. A sample of new customers is
tracked: their `booking.created` until `GET /api/customers?email=` lists them, then a signed
`payment_intent.succeeded` for that meeting until their `total_spend` shows it. Polling is every
5 ms for the first half second, then backs off (20 ms to 2 s, then 100 ms) so that a lagging
pipeline is not buried under its own polls.

A low-rate phase runs first (the pipeline's latency when nothing queues), then the goal's rate.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

from api.auth import issue_token
from bench.common import (MachineBusy, Profiler, Result, Row, ServiceProcess, asyncpg_url, bench_database, cpu_seconds,
                          env_float, env_int, run_async, start_worker, stop_worker, summary_ms)
from bench.rawhttp import Pool, request_bytes
from customers import kafka as names
from testing import samples as s
from customers.settings import Settings
from webhooks.signing import signature_header

GOAL_P99_MS = 250
POLL_GIVE_UP = 60.0


def poll_interval(elapsed: float) -> float:
    return 0.005 if elapsed < 0.5 else 0.02 if elapsed < 2 else 0.1


@dataclass
class Phase:
    rate: float
    seconds: float
    track_every: int
    sent: int = 0
    failed: int = 0
    behind_ms: list[float] = field(default_factory=list)  # how late each send started vs its slot
    booking_ms: list[float] = field(default_factory=list)
    payment_ms: list[float] = field(default_factory=list)
    timeouts: int = 0
    polls: int = 0
    dispatch_seconds: float = 0.0  # from the first request's slot to the last one's dispatch


class Driver:
    def __init__(self, settings: Settings, intake: ServiceProcess, api: ServiceProcess, experts: int = 200) -> None:
        self.settings = settings
        self.intake = Pool("127.0.0.1", intake.port, 64)
        self.api = Pool("127.0.0.1", api.port, 16)
        self.host_intake, self.host_api = f"127.0.0.1:{intake.port}", f"127.0.0.1:{api.port}"
        self.experts = [f"ex_{i:04d}" for i in range(experts)]
        self.tokens = {e: issue_token(settings, e, ttl_seconds=3600) for e in self.experts}
        self.rnd = random.Random(11)
        self.meeting_no = 0
        self.customers: dict[str, int] = {e: 0 for e in self.experts}
        self.paid_later: list[tuple[str, str, int]] = []  # (expert, meeting, amount) awaiting their payment
        self.pending: set[asyncio.Task] = set()
        self.in_flight = asyncio.Semaphore(512)

    # --- what is sent ----------------------------------------------------------------------

    def booking(self, expert: str, email: str, name: str, amount: int) -> tuple[bytes, str]:
        self.meeting_no += 1
        meeting = f"m_{self.meeting_no:08d}"
        start = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=self.rnd.randrange(-200, 60))
        body = json.dumps(s.booking_created(expert, meeting, email, name, start, amount=amount,
                                            payment_intent_id=f"pi_{meeting}")).encode()
        return request_bytes("POST", "/events/bookings", self.host_intake, {
            "Content-Type": "application/json", "Authorization": f"Bearer {self.settings.ingest_token}"}, body), meeting

    def payment(self, expert: str, meeting: str, amount: int) -> bytes:
        pi = f"pi_{meeting}"
        event = s.stripe_event("payment_intent.succeeded", s.payment_intent(
            pi, amount, "succeeded", fee=amount // 10, charge=f"ch_{meeting}",
            metadata={"expert_id": expert, "meeting_id": meeting}))
        body = json.dumps(event).encode()
        return request_bytes("POST", "/webhooks/stripe", self.host_intake, {
            "Content-Type": "application/json",
            "Stripe-Signature": signature_header(body, self.settings.webhook_secrets[0])}, body)

    def follow_up(self, expert: str, meeting: str) -> bytes:
        body = json.dumps(s.booking_event("booking.rescheduled", expert, meeting, datetime.now(timezone.utc),
                                          start_time=s.iso(datetime.now(timezone.utc) + timedelta(days=3)),
                                          end_time=s.iso(datetime.now(timezone.utc) + timedelta(days=3, hours=1)))
                          ).encode()
        return request_bytes("POST", "/events/bookings", self.host_intake, {
            "Content-Type": "application/json", "Authorization": f"Bearer {self.settings.ingest_token}"}, body)

    def next_event(self, tracked: bool) -> tuple[bytes, tuple | None]:
        """One request of the steady mix: ~70% new bookings, ~21% payments, ~9% reschedules."""
        roll = self.rnd.random()
        if not tracked and self.paid_later and roll < 0.21:
            expert, meeting, amount = self.paid_later.pop(0)
            return self.payment(expert, meeting, amount), None
        if not tracked and self.paid_later and roll < 0.30:
            expert, meeting, _ = self.paid_later[self.rnd.randrange(len(self.paid_later))]
            return self.follow_up(expert, meeting), None
        expert = self.rnd.choice(self.experts)
        n = self.customers[expert]
        if tracked or not n or self.rnd.random() < 0.4:
            self.customers[expert] = n + 1
            c = n
        else:
            c = self.rnd.randrange(n)
        email = f"c{c:05d}.{expert}@example.com" if not tracked else \
            f"tracked{self.meeting_no:07d}.{expert}@example.com"
        amount = 5000 + 500 * (c % 7)
        raw, meeting = self.booking(expert, email, f"Customer {c}", amount)
        if tracked:
            return raw, (expert, email, meeting, amount)
        if self.rnd.random() < 0.75:
            self.paid_later.append((expert, meeting, amount))
        return raw, None

    # --- sending and tracking --------------------------------------------------------------

    async def send(self, raw: bytes) -> int:
        async with self.in_flight:
            status, _ = await self.intake.send(raw)
            return status

    async def visible(self, expert: str, email: str, want_spend: bool) -> bool:
        raw = request_bytes("GET", f"/api/customers?email={quote(email)}&limit=1", self.host_api,
                            {"Authorization": f"Bearer {self.tokens[expert]}"})
        status, body = await self.api.send(raw)
        if status != 200:
            return False
        found = json.loads(body)["customers"]
        return bool(found) and (not want_spend or bool(found[0]["total_spend"]))

    async def wait_visible(self, phase: Phase, expert: str, email: str, accepted_at: float, want_spend: bool) -> float:
        while True:
            elapsed = time.perf_counter() - accepted_at
            if elapsed > POLL_GIVE_UP:
                phase.timeouts += 1
                return float("inf")
            phase.polls += 1
            if await self.visible(expert, email, want_spend):
                return (time.perf_counter() - accepted_at) * 1000
            await asyncio.sleep(poll_interval(time.perf_counter() - accepted_at))

    async def track(self, phase: Phase, raw: bytes, info: tuple) -> None:
        expert, email, meeting, amount = info
        status = await self.send(raw)
        accepted = time.perf_counter()
        if status >= 300:
            phase.failed += 1
            return
        took = await self.wait_visible(phase, expert, email, accepted, want_spend=False)
        if took == float("inf"):
            return
        phase.booking_ms.append(took)
        status = await self.send(self.payment(expert, meeting, amount))
        accepted = time.perf_counter()
        if status >= 300:
            phase.failed += 1
            return
        took = await self.wait_visible(phase, expert, email, accepted, want_spend=True)
        if took != float("inf"):
            phase.payment_ms.append(took)

    async def fire(self, phase: Phase, raw: bytes) -> None:
        if await self.send(raw) >= 300:
            phase.failed += 1

    async def run(self, phase: Phase) -> None:
        """Open loop: request i is due at start + i / rate, whatever happened to the others."""
        start = time.perf_counter()
        total = int(phase.rate * phase.seconds)
        i = 0
        while i < total:
            now = time.perf_counter()
            due = int((now - start) * phase.rate) + 1
            while i < min(due, total):
                phase.behind_ms.append((now - (start + i / phase.rate)) * 1000)
                tracked = i % phase.track_every == phase.track_every // 2
                raw, info = self.next_event(tracked)
                task = asyncio.create_task(self.track(phase, raw, info) if info else self.fire(phase, raw))
                self.pending.add(task)
                task.add_done_callback(self.pending.discard)
                i += 1
                phase.sent += 1
            await asyncio.sleep(0.001)
        phase.dispatch_seconds = time.perf_counter() - start
        await asyncio.gather(*list(self.pending), return_exceptions=True)


async def lag(settings: Settings, db_name: str) -> int:
    import asyncpg

    ends = await names.end_offsets(settings, [settings.topic(n) for n in names.PROJECTED])
    conn = await asyncpg.connect(asyncpg_url(db_name))
    try:
        rows = await conn.fetch('SELECT topic, partition, "offset" FROM projection_offsets WHERE version = 1')
    finally:
        await conn.close()
    stored = {(r["topic"], r["partition"]): r["offset"] + 1 for r in rows}
    return sum(max(0, end - stored.get(tp, 0)) for tp, end in ends.items())


def phase_summary(phase: Phase) -> dict:
    both = phase.booking_ms + phase.payment_ms
    return {"target_rate": phase.rate, "seconds": phase.seconds, "sent": phase.sent, "failed": phase.failed,
            "achieved_rate": round(phase.sent / phase.dispatch_seconds) if phase.dispatch_seconds else None,
            "send_started_late": summary_ms(phase.behind_ms), "all": summary_ms(both),
            "booking": summary_ms(phase.booking_ms), "stripe_payment": summary_ms(phase.payment_ms),
            "timeouts": phase.timeouts, "polls": phase.polls}


async def run(rate: float, seconds: float, low_rate: float, low_seconds: float, *, samples: int = 300,
              profile: bool = True, overrides: dict | None = None) -> Result:
    """`overrides`: settings of the pipeline (another cluster, its replication: `bench.replicated`)."""
    result = Result("freshness", "Freshness: intake 2xx -> visible in the API")
    result.sizes = {"rate": rate, "seconds": seconds, "low_rate": low_rate, "low_seconds": low_seconds,
                    "mix": "~70% booking.created, ~21% payment_intent.succeeded webhooks, ~9% reschedules; "
                           "one event per request", "experts": 200,
                    "tracked_samples": f"about {samples} at the goal's rate (half bookings, half payments), "
                                       f"{samples // 2} at the low rate"}
    async with bench_database(**(overrides or {})) as (db_name, settings):
        await names.ensure_topics(settings)
        worker = start_worker(settings, "bench-worker-fresh")
        try:
            with ServiceProcess(settings, "webhooks") as intake, ServiceProcess(settings, "api") as api:
                driver = Driver(settings, intake, api)
                warm = Phase(rate=20, seconds=3, track_every=10)  # until the worker has joined its group
                await driver.run(warm)
                await _settle(settings, db_name, 60)
                low = Phase(rate=low_rate, seconds=low_seconds,
                            track_every=max(1, int(low_rate * low_seconds / (samples / 4))))
                await driver.run(low)
                await _settle(settings, db_name, 120)
                high = Phase(rate=rate, seconds=seconds, track_every=max(1, int(rate * seconds / (samples / 2))))
                pids = (("intake", intake.pid), ("api", api.pid), ("worker", worker.proc.pid),
                        ("load generator", os.getpid()))
                cpu = {name: cpu_seconds(pid) for name, pid in pids}
                busy = MachineBusy()
                profiler = Profiler(worker.proc.pid, f"freshness-worker-{settings.topic_prefix.strip('.')}",
                                    seconds).start() if profile else None
                started = time.perf_counter()
                await driver.run(high)
                elapsed = time.perf_counter() - started
                cpu = {name: round((cpu_seconds(pid) - cpu[name]) / elapsed, 2) for name, pid in pids}
                cpu["whole machine busy (of all CPUs)"] = busy.share()
                backlog = await lag(settings, db_name)
                result.details = {"low_rate": phase_summary(low), "goal_rate": phase_summary(high),
                                  "goal_rate_cpu_share": cpu, "backlog_after_goal_rate": backlog,
                                  "achieved_rate": round(high.sent / high.dispatch_seconds),
                                  "worker_profile": profiler.finish() if profiler else None}
        finally:
            stop_worker(worker)
    hi, lo = result.details["goal_rate"], result.details["low_rate"]
    p99 = hi["all"]["p99_ms"]
    result.rows += [
        Row("freshness", f"freshness p99 at {rate:,.0f} events/s", p99, "ms", baseline=lo["all"]["p99_ms"],
            baseline_label=f"same pipeline at {low_rate:,.0f} events/s",
            ratio=round(lo["all"]["p99_ms"] / p99, 3) if p99 else None, goal=f"p99 < {GOAL_P99_MS} ms",
            met=p99 < GOAL_P99_MS and hi["timeouts"] == 0, attainment=round(GOAL_P99_MS / p99, 4) if p99 else None,
            note=f"p50 {hi['all']['p50_ms']} ms; booking p99 {hi['booking']['p99_ms']} ms, Stripe p99 "
                 f"{hi['stripe_payment']['p99_ms']} ms; sent {result.details['achieved_rate']:,}/s; "
                 f"backlog at the end {backlog:,} records; CPUs busy "
                 f"{result.details['goal_rate_cpu_share']['whole machine busy (of all CPUs)']:.0%}"),
        Row("freshness", f"freshness p50 at {low_rate:,.0f} events/s", lo["all"]["p50_ms"], "ms",
            note=f"p99 {lo['all']['p99_ms']} ms; booking p50 {lo['booking']['p50_ms']} ms, Stripe p50 "
                 f"{lo['stripe_payment']['p50_ms']} ms (two Kafka hops)"),
    ]
    return result


async def _settle(settings: Settings, db_name: str, timeout: float) -> None:
    deadline = time.perf_counter() + timeout
    while await lag(settings, db_name) > 0 and time.perf_counter() < deadline:
        await asyncio.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=env_float("BENCH_FRESHNESS_RATE", 1000))
    parser.add_argument("--seconds", type=float, default=env_float("BENCH_FRESHNESS_SECONDS", 40))
    parser.add_argument("--low-rate", type=float, default=env_float("BENCH_FRESHNESS_LOW_RATE", 100))
    parser.add_argument("--low-seconds", type=float, default=env_float("BENCH_FRESHNESS_LOW_SECONDS", 15))
    parser.add_argument("--samples", type=int, default=env_int("BENCH_FRESHNESS_SAMPLES", 300))
    args = parser.parse_args()
    result = run_async(run(args.rate, args.seconds, args.low_rate, args.low_seconds, samples=args.samples))
    result.details.pop("worker_profile", None)
    print(json.dumps({"rows": [r.__dict__ for r in result.rows], "details": result.details}, indent=1))


if __name__ == "__main__":
    main()
