"""A generated history of 1,000+ bookings with payments, refunds and disputes, every event delivered
one to three times in shuffled order through the public intake and the real broker, must end with
every customer's figures equal to the scenario's own computation."""

import asyncio
import os
import time

import pytest

from tests.harness import ARTIFACTS, eventually, unique
from tests.integration.conftest import open_stack
from tests.scenario import amounts, deliveries, generate, stripe_templates

STRIPE_BASE = os.environ.get("STRIPE_API_BASE", "http://127.0.0.1:12111")
BOOKINGS = int(os.environ.get("SCENARIO_BOOKINGS", "1000"))


@pytest.fixture(scope="module")
async def pg_stack():
    async with open_stack("postgresql") as opened:
        yield opened


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

    async def api_customers(expert):
        out, cursor = [], None
        while True:
            params = {"limit": 500, **({"cursor": cursor} if cursor else {})}
            body = (await stack.api.get("/api/customers", params=params, headers=stack.auth(expert))).json()
            out += body["customers"]
            cursor = body["next_cursor"]
            if not cursor:
                return out

    async def settled():
        for expert in scenario.experts:
            listed = await api_customers(expert)
            want = {e.email: e for (ex, _), e in scenario.expected.items() if ex == expert}
            got = {c["email"]: c for c in listed}
            if set(got) != set(want):
                return None
            for email, exp in want.items():
                if got[email]["total_spend"] != amounts(exp.spend):
                    return None
                if got[email]["appointments"]["total"] != exp.appointments:
                    return None
                if got[email]["appointments"]["cancelled"] != exp.cancelled:
                    return None
        return True

    await eventually(settled, timeout=240, interval=2)
    checked = 0
    for expert in scenario.experts:
        for c in await api_customers(expert):
            exp = scenario.expected[(expert, c["email"])]
            d = (await stack.api.get(f"/api/customers/{c['id']}", headers=stack.auth(expert))).json()
            assert d["total_spend"] == amounts(exp.spend)
            assert d["stats"]["expert_revenue"] == amounts(exp.revenue)
            assert d["stats"]["refunded"] == amounts(exp.refunded)
            got = {p["id"]: {"status": p["status"], "amount_refunded": p["amount_refunded"]} for p in d["payments"]}
            assert got == exp.payments, c["email"]
            checked += 1
    totals = {
        "bookings": BOOKINGS, "booking_events": len(scenario.bookings), "stripe_events": len(scenario.stripe_events),
        "deliveries": len(sends), "customers_checked": checked, "delivery_seconds": round(sent_in, 1),
        "spend": {cur: sum(e.spend.get(cur, 0) for e in scenario.expected.values()) for cur in ("eur", "usd")},
        "refunded": {cur: sum(e.refunded.get(cur, 0) for e in scenario.expected.values()) for cur in ("eur", "usd")},
    }
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "payment-scenario.json").write_text(__import__("json").dumps(totals, indent=2))
    assert checked == len(scenario.expected)
