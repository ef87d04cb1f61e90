"""The database owns the checkpoints: a crash between the database commit and Kafka's commit
loses nothing and counts nothing twice, and a database behind Kafka is trusted over Kafka."""

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import delete

from testing import samples as s
from customers.kafka import BOOKINGS
from projections import tables as t
from projections.db import make_engine
from projections.versions import group_for
from streams.rebalance import committed_offsets
from testing.harness import WorkerProcess, eventually, free_port, unique
from tests.integration.conftest import open_stack

NOW = datetime.now(timezone.utc).replace(microsecond=0)


@pytest.fixture(scope="module")
async def pg_stack():
    async with open_stack("postgresql") as opened:
        opened.worker.stop()  # each test runs the workers it needs
        yield opened


async def listed(stack, expert):
    out, cursor = [], None
    while True:
        body = (await stack.api.get("/api/customers", params={"limit": 500, **({"cursor": cursor} if cursor else {})},
                                    headers=stack.auth(expert))).json()
        out += body["customers"]
        if not (cursor := body["next_cursor"]):
            return {c["email"]: c["appointments"]["total"] for c in out}


async def test_crash_between_database_and_kafka_commits_changes_no_figure(pg_stack):
    stack = pg_stack
    expert = unique("ex_")
    expected: dict[str, int] = {}
    settings = stack.settings
    for round_ in range(3):
        events = []
        for i in range(40):
            email = f"p{i % 13}@example.com"
            events.append(s.booking_created(expert, f"m{round_}_{i}", email, f"P {i % 13}",
                                            NOW - timedelta(days=i + 1)))
            expected[email] = expected.get(email, 0) + 1
        assert (await stack.post_bookings(events)).status_code == 202
        doomed = WorkerProcess(settings, name=f"worker-doomed-{round_}", kill_after_batches=1).start()
        await eventually(lambda: not doomed.alive(), timeout=60)
        assert doomed.proc.returncode == -9

        group = group_for(settings.consumer_group, 1)
        stored = await _stored_offsets(settings)
        kafka = await committed_offsets(settings, group)
        ahead = [tp for tp, off in stored.items() if tp[0] == settings.topic(BOOKINGS) and off + 1 > kafka.get(tp, 0)]
        assert ahead, "the worker died after the database commit, before Kafka's"

    port = free_port()
    worker = WorkerProcess(settings, name="worker-after-crashes", metrics_port=port).start()
    try:
        await eventually(lambda: _equal(stack, expert, expected), timeout=90)

        async def kafka_caught_up() -> bool:
            # the records the database had applied are not applied again: after its assignment the
            # worker resumes at the database's offsets (and commits them), or skips them if redelivered
            kafka = await committed_offsets(settings, group)
            return all(kafka.get(tp, 0) >= off + 1 for tp, off in stored.items() if tp[0] == settings.topic(BOOKINGS))

        assert await eventually(kafka_caught_up, timeout=60)
        assert await _equal(stack, expert, expected)
        # redelivery never moves the stored position back
        after = await _stored_offsets(settings)
        assert all(after[tp] >= off for tp, off in stored.items())
    finally:
        worker.stop()

    # a database restored to empty is trusted over Kafka's committed offsets: all is re-applied
    engine = make_engine(settings.database_url)
    async with engine.begin() as conn:
        for table in (t.customers, t.meetings, t.payments, t.projection_offsets, t.stripe_events_applied):
            await conn.execute(delete(table))
    await engine.dispose()
    assert await listed(stack, expert) == {}
    worker = WorkerProcess(settings, name="worker-restored").start()
    try:
        await eventually(lambda: _equal(stack, expert, expected), timeout=90)
    finally:
        worker.stop()


async def _equal(stack, expert, expected):
    seen = await listed(stack, expert)
    assert seen == expected, {k: (seen.get(k), expected.get(k)) for k in expected.keys() | seen.keys()
                              if seen.get(k) != expected.get(k)}
    return True


async def _stored_offsets(settings):
    from projections.projector import Projector

    engine = make_engine(settings.database_url)
    try:
        return await Projector(engine, version=1, id_secret=settings.customer_id_secret).stored_offsets()
    finally:
        await engine.dispose()
