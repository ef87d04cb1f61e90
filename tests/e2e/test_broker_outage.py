"""Kafka stopped while Stripe is calling: the webhook gets 503 (so Stripe retries), nothing is
lost, and once the broker is back the retried event reaches the read model. A worker started
while the broker is away waits for it and then projects."""

import asyncio
import socket
import subprocess
from datetime import datetime, timedelta, timezone

from testing import samples as s
from testing.harness import ROOT, WorkerProcess, eventually, unique


def kafka(action: str) -> None:
    subprocess.run(["bash", str(ROOT / "scripts" / "kafka-ctl.sh"), action], check=True, capture_output=True)


async def test_webhook_during_outage_is_503_then_applied_on_retry(pg_stack):
    stack = pg_stack
    expert, meeting, pi = unique("ex_"), unique("m_"), unique("pi_")
    booking = s.booking_created(expert, meeting, "ines@example.com", "Ines", datetime.now(timezone.utc) - timedelta(days=1),
                                amount=9900, payment_intent_id=pi)
    assert (await stack.post_bookings(booking)).status_code == 202

    async def booked():  # the worker is consuming before the broker goes away
        return (await stack.api.get("/api/customers", headers=stack.auth(expert))).json()["customers"]

    await eventually(booked, timeout=90)
    event = s.stripe_event("payment_intent.succeeded", s.payment_intent(pi, 9900, "succeeded"))
    kafka("stop")
    try:
        with socket.socket() as probe:  # the outage is real: nothing answers on the broker's port
            assert probe.connect_ex(("127.0.0.1", 9092)) != 0, "the broker is still up (not started by this checkout?)"
        r = await stack.post_stripe(event)
        assert r.status_code == 503
        assert r.headers.get("retry-after")
        assert (await stack.post_bookings(booking)).status_code == 503
    finally:
        kafka("start")

    async def retried():  # Stripe retries until it gets a 2xx
        r = await stack.post_stripe(event)
        return r.status_code == 200

    await eventually(retried, timeout=90, interval=1)

    async def paid():
        listed = (await stack.api.get("/api/customers", headers=stack.auth(expert))).json()["customers"]
        return listed if listed and listed[0]["total_spend"] == [{"currency": "eur", "amount": 9900}] else None

    await eventually(paid, timeout=120, interval=1)
    assert stack.worker.alive(), "the worker survived the outage"


async def test_a_worker_started_during_an_outage_waits_for_the_broker(pg_stack):
    stack = pg_stack
    stack.worker.stop()
    kafka("stop")
    try:
        stack.worker = WorkerProcess(stack.settings, name="worker-started-in-outage").start()
        await asyncio.sleep(8)  # preparation keeps knocking at the closed port meanwhile
        assert stack.worker.alive(), "the worker gave up while the broker was away"
    finally:
        kafka("start")
    expert = unique("ex_")
    booking = s.booking_created(expert, unique("m_"), "olga@example.com", "Olga", datetime.now(timezone.utc))

    async def accepted():
        return (await stack.post_bookings(booking)).status_code == 202

    await eventually(accepted, timeout=90, interval=1)

    async def listed():
        return (await stack.api.get("/api/customers", headers=stack.auth(expert))).json()["customers"]

    await eventually(listed, timeout=120, interval=1)
    assert stack.worker.alive()
