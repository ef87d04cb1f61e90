"""The fault suite: 20,000+ events (bookings, signed Stripe webhooks with refunds and disputes),
duplicated and reordered, sent through the public intake while the worker is killed with
SIGKILL at random points, the broker is restarted and PostgreSQL is restarted. At the end the
API must equal the scenario's independent figures exactly: nothing lost, nothing counted twice.

Webhooks are retried on 5xx exactly as Stripe would; every event ends up answered 2xx, so a
2xx event missing from the result would show as a difference.
"""

import asyncio
import json
import os
import random
import subprocess
import time

import pytest


from tests.harness import ARTIFACTS, ROOT, WorkerProcess, unique
from tests.checks import assert_matches
from tests.scenario import deliveries, generate, stripe_templates

STRIPE_BASE = os.environ.get("STRIPE_API_BASE", "http://127.0.0.1:12111")
BOOKINGS = int(os.environ.get("FAULT_BOOKINGS", "4000"))
KILLS = 5


def ctl(script: str, action: str) -> None:
    subprocess.run(["bash", str(ROOT / "scripts" / script), action], check=True, capture_output=True, timeout=180)



class Sender:
    """Delivers events through the intake with bounded concurrency, retrying 5xx like Stripe."""

    def __init__(self, stack, concurrency: int = 16) -> None:
        self.stack, self.gate = stack, asyncio.Semaphore(concurrency)
        self.accepted = self.retried = 0

    async def one(self, kind: str, event: dict) -> None:
        async with self.gate:
            delay = 0.2
            while True:
                try:
                    r = await (self.stack.post_bookings([event]) if kind == "booking"
                               else self.stack.post_stripe(event))
                    status = r.status_code
                except Exception:  # noqa: BLE001 - a failed connection is retried like a 5xx
                    status = 599
                if status in (200, 202):
                    self.accepted += 1
                    return
                assert status >= 500, f"{status}: rejected a valid event"
                self.retried += 1
                await asyncio.sleep(delay)
                delay = min(delay * 2, 3.0)


@pytest.mark.timeout(900)
async def test_nothing_lost_nothing_doubled_under_faults(pg_stack):
    stack = pg_stack
    rng = random.Random(2026)
    scenario = generate(BOOKINGS, seed=99, templates=stripe_templates(STRIPE_BASE), prefix=unique("f") + "_",
                        experts=8, customers_per_expert=120)
    events = len(scenario.bookings) + len(scenario.stripe_events)
    assert events >= 20_000, events
    sends = deliveries(scenario, seed=17, max_copies=2)
    sender = Sender(stack)
    faults: list[tuple[float, str]] = []
    started = time.monotonic()
    delivery = asyncio.gather(*(sender.one(kind, e) for kind, e in sends))
    worker = stack.worker

    async def chaos():
        nonlocal worker
        plan = ["kill"] * KILLS + ["broker", "postgres"]
        rng.shuffle(plan)
        for step in plan:
            await asyncio.sleep(rng.uniform(3, 7))
            if step == "kill":
                worker.kill()
                worker = WorkerProcess(stack.settings, name=f"worker-fault-{len(faults)}").start()
            elif step == "broker":
                await asyncio.to_thread(ctl, "kafka-ctl.sh", "restart")
            else:
                await asyncio.to_thread(ctl, "pg-ctl.sh", "restart")
            faults.append((round(time.monotonic() - started, 1), step))

    await asyncio.gather(delivery, chaos())
    delivered_in = time.monotonic() - started
    # a last kill after everything was accepted, then a clean worker to finish
    worker.kill()
    worker = WorkerProcess(stack.settings, name="worker-fault-final").start()
    stack.worker = worker

    checked = await assert_matches(stack, scenario, timeout=300)
    assert sorted(step for _, step in faults) == sorted(["kill"] * KILLS + ["broker", "postgres"])
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "fault-suite.json").write_text(json.dumps({
        "events": events, "deliveries": len(sends), "accepted": sender.accepted, "retried_5xx": sender.retried,
        "faults": faults, "delivery_seconds": round(delivered_in, 1), "customers_checked": checked,
        "total_seconds": round(time.monotonic() - started, 1),
    }, indent=2))
