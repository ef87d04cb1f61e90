"""Operations: dead letters keep partitions flowing, lag is measured against the broker (and rises
when the worker stops), readiness, status, erasure through the admin API, the DLQ commands."""

import json
import os
import signal
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest

from customers import kafka as names
from testing import samples as s
from ops.dlq import letters
from testing.harness import ROOT, env_for, eventually, metric, unique
from tests.integration.conftest import open_stack

NOW = datetime.now(timezone.utc).replace(microsecond=0)


@pytest.fixture(scope="module")
async def pg_stack():
    async with open_stack("postgresql", ready_max_lag=20) as opened:
        yield opened


async def produce_raw(stack, topic: str, items):
    await names.ensure_topics(stack.settings)
    producer = names.new_producer(stack.settings)
    await producer.start()
    try:
        await names.publish(producer, stack.settings.topic(topic), items)
    finally:
        await producer.stop()


async def customers_of(stack, expert):
    return (await stack.api.get("/api/customers", params={"limit": 500}, headers=stack.auth(expert))).json()


async def test_poison_goes_to_the_dlq_and_the_partition_keeps_flowing(pg_stack):
    stack = pg_stack
    expert = unique("ex_")
    good = [s.booking_created(expert, unique("m_"), f"g{i}@example.com", f"G{i}", NOW + timedelta(days=i + 1))
            for i in range(3)]
    too_long = s.stripe_event("payment_intent.succeeded", s.payment_intent("pi_" + "x" * 300, 100, "succeeded",
                                                                         metadata={"expert_id": expert}))
    # same key, so the same partition: a record that is not JSON, one that breaks the schema,
    # then good ones behind them
    await produce_raw(stack, names.BOOKINGS, [(expert, b"{not json"),
                                              (expert, json.dumps({**good[0], "price": "free"}).encode())]
                      + [(expert, json.dumps(g).encode()) for g in good[:2]])
    # a fact the database refuses (a payment id longer than its column) fails processing every time;
    # the intake refuses such an event, so it is one already on the topic or written by another producer
    await produce_raw(stack, names.STRIPE_EVENTS, [(expert, json.dumps(too_long).encode())])
    await produce_raw(stack, names.BOOKINGS, [(expert, json.dumps(good[2]).encode())])

    body = await eventually(lambda: _total(stack, expert, 3), timeout=90)
    assert {c["email"] for c in body["customers"]} == {"g0@example.com", "g1@example.com", "g2@example.com"}

    dead = await eventually(lambda: _dead(stack), timeout=60)
    bookings = dead["bookings"]
    assert [d["origin"]["offset"] for d in bookings][:2] == [0, 1]
    assert "ValidationError" in bookings[0]["error"] and bookings[1]["value"]["price"] == "free"
    activity = dead["customer-activity"]
    assert activity and activity[0]["origin"]["topic"] == stack.settings.topic(names.ACTIVITY)

    listed = subprocess.run([sys.executable, "-m", "ops", "dlq", "list", "--topic", "bookings"],
                            env=env_for(stack.settings), cwd=ROOT, capture_output=True, text=True, check=True)
    assert "bookings.dlq: 2" in listed.stdout and "ValidationError" in listed.stdout
    retried = subprocess.run([sys.executable, "-m", "ops", "dlq", "retry", "--topic", "bookings"],
                             env=env_for(stack.settings), cwd=ROOT, capture_output=True, text=True, check=True)
    assert "bookings=2" in retried.stdout
    # still poison: they come back as new letters; a second retry sends only those
    await eventually(lambda: _dead_count(stack, "bookings", 4), timeout=60)
    again = subprocess.run([sys.executable, "-m", "ops", "dlq", "retry", "--topic", "bookings"],
                           env=env_for(stack.settings), cwd=ROOT, capture_output=True, text=True, check=True)
    assert "bookings=2" in again.stdout


async def _total(stack, expert, n):
    body = await customers_of(stack, expert)
    return body if body["total"] >= n else None


async def _dead(stack):
    found = await letters(stack.settings)
    return found if found["bookings"] and found["customer-activity"] else None


async def _dead_count(stack, topic, n):
    return len((await letters(stack.settings, topic))[topic]) >= n


async def test_lag_rises_when_the_worker_is_paused(pg_stack):
    stack = pg_stack
    expert = unique("ex_")
    admin = stack.auth("ops", roles=["admin"])

    async def lag():
        text = (await stack.api.get("/metrics")).text
        return sum(metric(text, "customers_projection_lag", topic=stack.settings.topic(names.BOOKINGS),
                          partition=str(p)) for p in range(stack.settings.topic_partitions))

    await eventually(lambda: _ready(stack, True), timeout=60)
    os.kill(stack.worker.proc.pid, signal.SIGSTOP)
    try:
        events = [s.booking_created(expert, unique("m_"), f"l{i}@example.com", "L", NOW + timedelta(days=1))
                  for i in range(30)]
        assert (await stack.post_bookings(events)).status_code == 202
        assert await eventually(lambda: _at_least(lag, 30), timeout=30) >= 30
        r = await stack.api.get("/readyz")
        assert r.status_code == 503 and r.json()["checks"]["lag"] is False
        status = (await stack.api.get("/admin/status", headers=admin)).json()
        assert status["lag"]["total"] >= 30 and status["live_version"] == 1
    finally:
        os.kill(stack.worker.proc.pid, signal.SIGCONT)
    await eventually(lambda: _at_most(lag, 0), timeout=60)
    await eventually(lambda: _ready(stack, True), timeout=60)
    assert (await stack.api.get("/admin/status", headers=stack.auth("ops"))).status_code == 403
    text = (await stack.api.get("/metrics")).text
    assert "customers_api_request_seconds_bucket" in text and 'customers_dependency_up{dependency="kafka"} 1.0' in text


async def _at_least(fn, n):
    value = await fn()
    return value if value >= n else None


async def _at_most(fn, n):
    return await fn() <= n


async def _ready(stack, want):
    return ((await stack.api.get("/readyz")).status_code == 200) == want


async def test_admin_erasure_removes_the_person_everywhere(pg_stack):
    stack = pg_stack
    a, b = unique("ex_"), unique("ex_")
    for expert in (a, b):
        assert (await stack.post_bookings(s.booking_created(expert, unique("m_"), "Zoe@Example.com", "Zoe",
                                                             NOW - timedelta(days=2)))).status_code == 202
    for expert in (a, b):
        await eventually(lambda: _total(stack, expert, 1))
    assert (await stack.api.post("/admin/erasures", json={"email": "zoe@example.com"},
                                 headers=stack.auth("ops"))).status_code == 403
    r = await stack.api.post("/admin/erasures", json={"email": " ZOE@example.com"},
                             headers=stack.auth("ops", roles=["admin"]))
    assert r.status_code == 202 and "zoe" not in r.text
    for expert in (a, b):
        await eventually(lambda: _none(stack, expert))
    # an old booking of hers replayed or redelivered stays out
    late = s.booking_created(a, unique("m_"), "zoe@example.com", "Zoe", NOW - timedelta(days=9),
                             occurred_at=NOW - timedelta(days=10))
    marker = s.booking_created(a, unique("m_"), "yara@example.com", "Yara", NOW + timedelta(days=9))
    assert (await stack.post_bookings([late, marker])).status_code == 202
    body = await eventually(lambda: _total(stack, a, 1))
    assert [c["email"] for c in body["customers"]] == ["yara@example.com"]


async def _none(stack, expert):
    return (await customers_of(stack, expert))["total"] == 0
