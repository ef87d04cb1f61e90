"""The fault suite: 20,000+ events (2,200 bookings, signed Stripe webhooks with refunds and disputes),
duplicated and reordered, sent through the public intake while the worker is killed with
SIGKILL at random points, the broker is restarted and PostgreSQL is restarted. At the end the
API must equal the scenario's independent figures exactly: nothing lost, nothing counted twice.

It runs with one worker, and with two workers in one consumer group on 12 partitions (2,000
bookings, about 19,000 events, so that both fit in `make test`), where each kill takes one of
the two down (its partitions move to the other, then come back when it
is started again) while both write the same customers' rows from different partitions.

Webhooks are retried on 5xx exactly as Stripe would; every event ends up answered 2xx, so a
2xx event missing from the result would show as a difference.
"""

import asyncio
import json
import os
import random
import subprocess
import time
from typing import Iterator

import pytest


from testing.harness import ARTIFACTS, ROOT, WorkerProcess, unique
from tests.checks import assert_matches
from tests.integration.conftest import open_stack
from tests.sender import Sender
from tests.scenario import deliveries, generate, stripe_templates

STRIPE_BASE = os.environ.get("STRIPE_API_BASE", "http://127.0.0.1:12111")
KILLS = 5
# workers -> (bookings, partitions): the two-worker run is smaller so that both fit in `make test`
RUNS = {
    1: (int(os.environ.get("FAULT_BOOKINGS", "2200")), 4),
    2: (int(os.environ.get("FAULT_BOOKINGS_TWO_WORKERS", "2000")), 12),
}


def ctl(script: str, action: str) -> None:
    subprocess.run(["bash", str(ROOT / "scripts" / script), action], check=True, capture_output=True, timeout=180)


@pytest.fixture(params=sorted(RUNS), ids=lambda n: f"{n}-worker" + "s" * (n > 1))
async def workers_stack(request):
    """A stack on a fresh PostgreSQL database with `param` workers in its consumer group."""
    count = request.param
    async with open_stack("postgresql", topic_partitions=RUNS[count][1]) as stack:
        stack.workers = [stack.worker] + [WorkerProcess(stack.settings, name=f"worker-{n}").start()
                                          for n in range(2, count + 1)]
        try:
            yield stack
        finally:
            for worker in stack.workers[1:]:
                worker.stop()
            stack.worker = stack.workers[0]


# what a worker logs about its records when it dead-letters one, cannot write a batch, sees a
# partition jump past its next record (`streams.gaps`), a bulk catch-up stop, or a conflict that
# reading again does not settle
WARNINGS = ("dead-lettered", "not written", "keeps changing", "write failed", "jumped from", "catch-up stopped",
            "still stale")


def worker_logs(stack) -> Iterator[tuple[str, list[str]]]:
    """(file name, lines) of every worker of this run, killed ones too."""
    for path in sorted(ARTIFACTS.glob(f"worker*-{stack.settings.topic_prefix.strip('.')}.log")):
        yield path.name, path.read_text(errors="replace").splitlines()


def worker_warnings(stack, limit: int = 40) -> list[str]:
    """What the workers warned of about their records, from their logs."""
    out = [f"{name}: {line[:300]}" for name, lines in worker_logs(stack)
           for line in lines if any(w in line for w in WARNINGS)]
    return out[:limit]


def last_words(stack, lines: int = 8) -> dict[str, list[str]]:
    """The last warnings and errors of each worker: where a stall shows (the CI keeps no test
    artifacts, only this message)."""
    return {name: [line[:240] for line in said if '"level": "warning"' in line or '"level": "error"' in line][-lines:]
            for name, said in worker_logs(stack)}


@pytest.mark.timeout(900)
async def test_nothing_lost_nothing_doubled_under_faults(workers_stack):
    stack = workers_stack
    count = len(stack.workers)
    bookings, partitions = RUNS[count]
    rng = random.Random(2026)
    scenario = generate(bookings, seed=99, templates=stripe_templates(STRIPE_BASE), prefix=unique("f") + "_",
                        experts=8, customers_per_expert=120)
    events = len(scenario.bookings) + len(scenario.stripe_events)
    assert events >= bookings * 5, events
    sends = deliveries(scenario, seed=17, max_copies=2)
    sender = Sender(stack)
    faults: list[tuple[float, str]] = []
    started = time.monotonic()
    delivery = asyncio.gather(*(sender.one(kind, e) for kind, e in sends))

    async def chaos():
        plan = ["kill"] * KILLS + ["broker", "postgres"]
        rng.shuffle(plan)
        for step in plan:
            await asyncio.sleep(rng.uniform(3, 7))
            if step == "kill":
                slot = rng.randrange(count)  # with two workers, one dies and the other carries on
                stack.workers[slot].kill()
                stack.workers[slot] = WorkerProcess(stack.settings, name=f"worker-fault-{len(faults)}").start()
            elif step == "broker":
                await asyncio.to_thread(ctl, "kafka-ctl.sh", "restart")
            else:
                await asyncio.to_thread(ctl, "pg-ctl.sh", "restart")
            faults.append((round(time.monotonic() - started, 1), step))

    await asyncio.gather(delivery, chaos())
    delivered_in = time.monotonic() - started
    # a last kill after everything was accepted, then clean workers to finish
    for slot in range(count):
        stack.workers[slot].kill()
        stack.workers[slot] = WorkerProcess(stack.settings, name=f"worker-fault-final-{slot}").start()
    stack.worker = stack.workers[0]

    try:
        checked = await assert_matches(stack, scenario, timeout=300)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nworkers' warnings: {worker_warnings(stack)}\n"
                             f"the last words of the workers: {last_words(stack)}") from None
    # nothing in the scenario is poison: a record dead-lettered here would be an event lost
    warnings = worker_warnings(stack)
    assert not [w for w in warnings if "dead-lettered" in w], warnings
    assert sorted(step for _, step in faults) == sorted(["kill"] * KILLS + ["broker", "postgres"])
    assert all(w.alive() for w in stack.workers)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / f"fault-suite-{count}-worker{'s' * (count > 1)}.json").write_text(json.dumps({
        "workers": count, "partitions": partitions, "events": events, "deliveries": len(sends),
        "accepted": sender.accepted, "retried_5xx": sender.retried, "faults": faults,
        "delivery_seconds": round(delivered_in, 1), "customers_checked": checked,
        "total_seconds": round(time.monotonic() - started, 1),
    }, indent=2))
