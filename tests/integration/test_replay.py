"""Replay of the whole history into a new version while the API is being read: the same answers
before, during and after the switch; killed with SIGKILL and resumed; erased people stay erased."""

import asyncio
import os
import signal
import subprocess
import sys

from sqlalchemy import select

from projections import tables as t
from projections.db import make_engine
from projections.versions import versions
from testing.harness import ARTIFACTS, ROOT, env_for, eventually, unique
from tests.checks import list_matches
from tests.scenario import deliveries, generate, stripe_templates

STRIPE_BASE = os.environ.get("STRIPE_API_BASE", "http://127.0.0.1:12111")



def customers_cmd(stack, *args, log: str) -> subprocess.Popen:
    out = open(ARTIFACTS / f"{log}-{stack.settings.topic_prefix.strip('.')}.log", "ab")
    return subprocess.Popen([sys.executable, "-m", "ops", *args], env=env_for(stack.settings), cwd=ROOT,
                            stdout=out, stderr=subprocess.STDOUT)


async def answers(stack, experts):
    """Every expert's full list and every customer's detail, without the moving `as_of`."""
    out = {}
    for expert in experts:
        body = (await stack.api.get("/api/customers", params={"limit": 500}, headers=stack.auth(expert))).json()
        listed = body["customers"]
        out[expert] = {"list": listed, "details": {}}
        for c in listed:
            d = (await stack.api.get(f"/api/customers/{c['id']}", headers=stack.auth(expert))).json()
            d.pop("as_of")
            out[expert]["details"][c["id"]] = d
    return out


async def rows(stack, version):
    engine = make_engine(stack.settings.database_url)
    try:
        async with engine.connect() as conn:
            out = {}
            for table in (t.customers, t.meetings, t.payments, t.notes):
                cols = [c for c in table.c if c.name != "version"]
                result = await conn.execute(select(*cols).where(table.c.version == version))
                out[table.name] = sorted(repr(tuple(r)) for r in result)
            return out
    finally:
        await engine.dispose()


async def test_replay_while_reading(pg_stack):
    stack = pg_stack
    scenario = generate(300, seed=3, templates=stripe_templates(STRIPE_BASE), prefix=unique("r") + "_", experts=3,
                        customers_per_expert=25)
    for kind, event in deliveries(scenario, seed=5):
        r = await (stack.post_bookings([event]) if kind == "booking" else stack.post_stripe(event))
        assert r.status_code in (200, 202)

    await eventually(lambda: list_matches(stack, scenario), timeout=180, interval=1)

    # erase one person; they must stay erased through the replay
    (gone_expert, gone_email), _ = next(iter(scenario.expected.items()))
    erase = customers_cmd(stack, "erase", gone_email, log="erase")
    assert erase.wait(60) == 0

    async def erased():
        body = (await stack.api.get("/api/customers", params={"email": gone_email},
                                    headers=stack.auth(gone_expert))).json()
        return body["total"] == 0

    await eventually(erased, timeout=60)
    before = await answers(stack, scenario.experts)
    rows_before = await rows(stack, 1)
    assert all(gone_email not in repr(v) for v in rows_before.values())

    mismatches, reads = [], 0
    stop = asyncio.Event()

    async def reader():
        nonlocal reads
        while not stop.is_set():
            now = await answers(stack, scenario.experts[:1])
            reads += 1
            if now[scenario.experts[0]] != before[scenario.experts[0]]:
                mismatches.append(now)
            await asyncio.sleep(0.05)

    reading = asyncio.create_task(reader())
    try:
        first = customers_cmd(stack, "replay", "--batch-size", "40", "--grace", "1", log="replay-killed")

        async def building():
            engine = make_engine(stack.settings.database_url)
            try:
                async with engine.connect() as conn:
                    state = (await conn.execute(select(t.projection_versions.c.state)
                                                .where(t.projection_versions.c.version == 2))).scalar()
                    return state == "building"
            finally:
                await engine.dispose()

        await eventually(building, timeout=60, interval=0.05)
        await asyncio.sleep(1.0)  # into the fold (its processes die with it)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        second = customers_cmd(stack, "replay", "--grace", "1", log="replay-resumed")
        assert await asyncio.to_thread(second.wait, 300) == 0
    finally:
        stop.set()
        await reading
    if mismatches:
        import json
        (ARTIFACTS / "replay-mismatch.json").write_text(json.dumps({"before": before[scenario.experts[0]],
                                                                    "during": mismatches[0][scenario.experts[0]]},
                                                                   indent=1, default=str))
    assert reads > 0 and mismatches == [], f"{len(mismatches)} of {reads} reads differed"

    engine = make_engine(stack.settings.database_url)
    async with engine.connect() as conn:
        states = {v["version"]: v["state"] for v in await versions(conn)}
    await engine.dispose()
    assert states == {1: "removed", 2: "live"}
    rows_after = await rows(stack, 2)
    if rows_after != rows_before:  # name the differing rows before failing
        for name in rows_before:
            print("DIFF", name, "only after:", sorted(set(rows_after[name]) - set(rows_before[name])),
                  "only before:", sorted(set(rows_before[name]) - set(rows_after[name])))
    assert rows_after == rows_before  # row by row, the rebuilt model equals the old one
    assert await rows(stack, 1) == {"customers": [], "meetings": [], "payments": [], "notes": []}
    assert await answers(stack, scenario.experts) == before

    # the worker followed the switch and keeps the new version fresh
    from testing import samples as s
    from datetime import datetime, timezone

    fresh = s.booking_created(scenario.experts[0], unique("m_"), "late@example.com", "Late", datetime.now(timezone.utc))
    assert (await stack.post_bookings(fresh)).status_code == 202

    async def visible():
        body = (await stack.api.get("/api/customers", params={"email": "late@example.com"},
                                    headers=stack.auth(scenario.experts[0]))).json()
        return body["total"] == 1

    await eventually(visible, timeout=90)
    assert stack.worker.alive()
