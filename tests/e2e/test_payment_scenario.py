"""A generated history of 1,000+ bookings with payments, refunds and disputes, every event delivered
one to three times in shuffled order through the public intake and the real broker, must end with
every customer's figures equal to the scenario's own computation."""

import asyncio
import json
import os
import time


from testing.harness import ARTIFACTS, unique
from tests.checks import assert_matches
from tests.scenario import deliveries, generate, stripe_templates

STRIPE_BASE = os.environ.get("STRIPE_API_BASE", "http://127.0.0.1:12111")
BOOKINGS = int(os.environ.get("SCENARIO_BOOKINGS", "1000"))



async def deliver(stack, sends, concurrency: int = 24) -> None:
    gate = asyncio.Semaphore(concurrency)

    async def one(kind, event):
        async with gate:
            for _attempt in range(5):
                r = await (stack.post_bookings([event]) if kind == "booking" else stack.post_stripe(event))
                if r.status_code in (200, 202):
                    return
                assert r.status_code == 503, r.text  # only an outage may be retried, as Stripe would
                await asyncio.sleep(1)
            raise AssertionError("event never accepted")

    await asyncio.gather(*(one(kind, event) for kind, event in sends))


async def test_generated_history_matches_independent_figures(pg_stack):
    stack = pg_stack
    scenario = generate(BOOKINGS, seed=7, templates=stripe_templates(STRIPE_BASE), prefix=unique("s") + "_")
    sends = deliveries(scenario, seed=11)
    started = time.monotonic()
    await deliver(stack, sends)
    sent_in = time.monotonic() - started

    checked = await assert_matches(stack, scenario)
    totals = {
        "bookings": BOOKINGS, "booking_events": len(scenario.bookings), "stripe_events": len(scenario.stripe_events),
        "deliveries": len(sends), "customers_checked": checked, "delivery_seconds": round(sent_in, 1),
        "spend": {cur: sum(e.spend.get(cur, 0) for e in scenario.expected.values()) for cur in ("eur", "usd")},
        "refunded": {cur: sum(e.refunded.get(cur, 0) for e in scenario.expected.values()) for cur in ("eur", "usd")},
    }
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "payment-scenario.json").write_text(json.dumps(totals, indent=2))
