"""A worker far behind folds its backlog in bulk (`streams.catchup`) and ends where the batches would.

The mixed stream of `test_fold_equals_live` (payment-first histories whose facts sit on other
partitions than their bookings, an erasure and a re-booking after it on another partition,
messages and their reports, profiles, notes, an appointment passing before T) is produced once.
The reference database applies all of it through the live engine in random batch sizes. A
second database applies only the first records the same way (the worker's past), then catches up
on the rest in bulk, in several rounds; a third catches up on everything from nothing; a fourth
drops its state after every round (the memory bound) and loads it again from the tables. Both are
swept to T and must equal the reference table by table, row by row.
"""

from __future__ import annotations

import asyncio
import heapq
import json
import random
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text

from customers import kafka as names
from projections import claims
from projections.db import make_engine, migrate
from projections.projector import Projector
from projections.versions import group_for
from streams import catchup
from streams.decode import decoder_for
from streams.fold import read_partitions
from streams.rebalance import committed_offsets
from testing import samples as s
from testing.harness import WorkerProcess, eventually, fresh_pg_database, settings_for
from tests.integration.test_fold_equals_live import (PARTITIONS, SEED, Mixed, apply_live, check_snapshot,
                                                     differences, position_of, produce, time_of)
from tests.integration.test_rebuild_equals_live import SECRET, summaries_recount, tables


def _assert_equal(want: dict, got: dict, label: str) -> None:
    diffs = differences(want, got)
    summary = "; ".join(f"{name}: {len(a)} rows only live, {len(b)} only caught up" for name, (a, b) in diffs.items())
    for name in want:
        only_live, only_caught = diffs.get(name, ([], []))
        assert got[name] == want[name], (f"{label}: {name} differs [{summary}]\n"
                                         f"only live: {only_live[:5]}\nonly caught up: {only_caught[:5]}")


async def test_a_bulk_catch_up_ends_equal_to_the_live_read_model():
    until = (datetime.now(timezone.utc) + timedelta(hours=1)).replace(second=0, microsecond=0)
    mixed = Mixed(SEED, until)
    reference = await fresh_pg_database()
    await migrate(reference)
    settings = settings_for(reference, topic_partitions=PARTITIONS, customer_id_secret=SECRET)
    await names.ensure_topics(settings)
    await produce(settings, mixed.records, (names.COMMANDS, mixed.erasure.model_dump_json().encode()), mixed.again)
    topics = [settings.topic(n) for n in names.PROJECTED]
    ends = await names.end_offsets(settings, topics)
    read = await read_partitions(settings, sorted(ends), ends)
    rng = random.Random(SEED)
    streams = [read[tp] for tp in sorted(read)]
    rng.shuffle(streams)
    ordered = list(heapq.merge(*streams, key=time_of))
    batch = [(position_of(src), decoder_for(src.topic, settings.topic_prefix)(src.value)) for src in ordered]

    engine = make_engine(reference)
    try:
        live = await apply_live(engine, settings, batch, random.Random(SEED))
        await live.sweep(until)
        want = await tables(engine, live.version)
        check_snapshot(want, mixed, "live")
    finally:
        await engine.dispose()

    # the state kept from round to round; from nothing; and the state dropped after every round
    # and a catch-up whose second round fails to write: the first stays, the rest is taken again
    for label, past, max_rows, failing in (("behind", len(batch) * 2 // 5, None, False),
                                           ("from nothing", 0, None, False),
                                           ("reloaded each round", len(batch) // 5, 1, False),
                                           ("after a failed round", len(batch) // 5, None, True)):
        url = await fresh_pg_database()
        await migrate(url)
        mine = settings.model_copy(update={"database_url": url})
        engine = make_engine(url)
        try:
            worker = await apply_live(engine, mine, batch[:past], random.Random(SEED + 1))
            behind = len(batch) - past
            # below the threshold: nothing is done, the batches take it
            assert await catchup.catch_up(mine, worker.version, threshold=behind) is None
            if failing:
                await _fails_in_its_second_round(mine, worker, behind, batch[past:])
                behind = catchup.backlog(await worker.stored_offsets(), ends)
            rounds: list[int] = []
            done = await catchup.catch_up(mine, worker.version, threshold=1, max_records=max(1_000, behind // 3),
                                          max_rows=max_rows, on_round=lambda r, left: rounds.append(r.records))
            assert done is not None and done.behind == behind
            assert done.left == 0 and done.records == behind == sum(rounds)
            assert len(rounds) >= 2 or failing, rounds
            loads = [r.experts_loaded for r in done.rounds]
            assert all(loads) if max_rows else failing or not all(loads[1:]), loads  # kept: later rounds load few
            assert all(r.dead == 0 for r in done.rounds)
            assert await worker.stored_offsets() == {tp: end - 1 for tp, end in ends.items() if end}
            # the consumer group resumes where the catch-up stopped, not at what it applied
            group = group_for(mine.consumer_group, worker.version)
            assert await committed_offsets(mine, group) == {tp: end for tp, end in ends.items() if end}
            await worker.sweep(until)
            got = await tables(engine, worker.version)
            _assert_equal(want, got, label)
            check_snapshot(got, mixed, label)
            await summaries_recount(engine, worker.version)
            # caught up: a second call finds nothing to do
            assert await catchup.catch_up(mine, worker.version, threshold=1) is None
        finally:
            await engine.dispose()


async def _fails_in_its_second_round(settings, worker: Projector, behind: int, rest: list) -> None:
    """Every round is written in the session that holds the version's lock; the second round's
    session ends under it (PostgreSQL restarted, the connection cut): the catch-up stops with the
    error, the first round's rows and offsets are committed, the second's are not, and the lock
    went with the session (the batches can take it)."""
    real, holding = catchup.write_changed, []

    async def cut(conn, *args, **kw):
        holding.append((await conn.execute(text(
            "SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'advisory' "
            "AND mode = 'ExclusiveLock' AND granted"))).scalar())
        if len(holding) == 2:
            await conn.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))
        return await real(conn, *args, **kw)
    catchup.write_changed = cut
    try:
        with pytest.raises(Exception, match="terminat|closed|connection"):
            await catchup.catch_up(settings, worker.version, threshold=1, max_records=max(1_000, behind // 3))
    finally:
        catchup.write_changed = real
    assert holding == [1, 1], holding
    stored = await worker.stored_offsets()
    applied = sum(1 for pos, _ in rest if pos.offset <= stored.get((pos.topic, pos.partition), -1))
    assert 0 < applied < behind, (applied, behind)  # the first round, and nothing of the second
    await asyncio.sleep(1.0)  # and nothing written later by a writer left behind
    assert await worker.stored_offsets() == stored
    async with worker.engine.connect() as conn:
        lock = claims.lock_id(("version", worker.version))
        assert (await conn.execute(text("SELECT pg_try_advisory_lock(:id)"), {"id": lock})).scalar()
        await conn.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": lock})


@pytest.mark.parametrize("stored,ends,limit,want", [
    ({}, {("a", 0): 10, ("a", 1): 0}, 100, ({("a", 0): 0, ("a", 1): 0}, {("a", 0): 10, ("a", 1): 0})),
    ({("a", 0): 9}, {("a", 0): 10}, 100, ({("a", 0): 10}, {("a", 0): 10})),
    ({("a", 0): 99, ("a", 1): 299}, {("a", 0): 200, ("a", 1): 600}, 200,
     ({("a", 0): 100, ("a", 1): 300}, {("a", 0): 150, ("a", 1): 450})),
])
def test_a_round_takes_the_same_share_of_every_partition(stored, ends, limit, want):
    assert catchup.round_range(stored, ends, limit) == want
    starts, cut = catchup.round_range(stored, ends, limit)
    assert sum(cut[tp] - starts[tp] for tp in ends) <= limit
    assert catchup.backlog(stored, ends) == sum(max(0, e - stored.get(tp, -1) - 1) for tp, e in ends.items())


async def _produce_bookings(settings, first: int, count: int, start: datetime) -> None:
    producer = names.new_producer(settings)
    await producer.start()
    try:
        pending = []
        for n in range(first, first + count):
            expert = f"ex{n % 25}"
            booking = s.booking_created(expert, f"m{n}", f"person{n % 700}@example.com", f"Person {n % 700}",
                                        start + timedelta(hours=n))
            pending.append(await producer.send(settings.topic(names.BOOKINGS), key=expert.encode(),
                                               value=json.dumps(booking).encode()))
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def test_a_worker_far_behind_catches_up_in_bulk_when_it_starts_and_when_it_falls_behind():
    url = await fresh_pg_database()
    await migrate(url)
    settings = settings_for(url, catchup_threshold=1_500, catchup_max_records=1_000, catchup_check_seconds=2.0)
    await names.ensure_topics(settings)
    start = datetime.now(timezone.utc) + timedelta(days=30)
    await _produce_bookings(settings, 0, 3_000, start)
    topics = [settings.topic(n) for n in names.PROJECTED]
    engine = make_engine(url)
    worker = WorkerProcess(settings, name="worker-catchup").start()

    def log() -> str:
        return worker.log_path.read_text()

    async def caught_up(total: int) -> bool:
        ends = await names.end_offsets(settings, topics)
        async with engine.connect() as conn:
            booked = (await conn.execute(text("SELECT coalesce(sum(appointments), 0) FROM customers"))).scalar()
            stored = await catchup.stored_offsets(conn, 1)
        return booked == total and catchup.backlog(stored, ends) == 0
    try:
        await eventually(lambda: caught_up(3_000), timeout=90)
        assert log().count("catching up in bulk") == 1  # at its start: 3,000 behind, over the threshold
        assert "round of" in log()
        # a burst the batches cannot take in two checks: the worker starts again and folds it
        await _produce_bookings(settings, 3_000, 30_000, start)
        await eventually(lambda: caught_up(33_000), timeout=180)
        assert "starting again to catch up in bulk" in log(), log()[-3000:]
        assert log().count("catching up in bulk") >= 2
        assert worker.alive()
    finally:
        worker.stop()
        await engine.dispose()


def test_a_running_worker_restarts_when_it_stays_behind_or_makes_no_progress():
    p = catchup.Progress(threshold=100)
    a, b = {("t", 0): 5}, {("t", 0): 9}
    assert p.after(500, a) is None  # once over the threshold: a rebalance may be moving partitions
    assert p.after(50, b) is None and p.after(500, {("t", 0): 10}) is None
    assert p.after(500, {("t", 0): 20}) == "behind"  # twice in a row
    idle = catchup.Progress(threshold=100)
    assert idle.after(3, a) is None and idle.after(3, a) is None  # the first check has nothing to compare
    assert idle.after(3, a) == "stalled"  # records wait, the offsets did not move in two checks
    assert idle.after(3, b) is None  # it moved
    done = catchup.Progress(threshold=100)
    assert all(done.after(0, a) is None for _ in range(5))  # nothing waits: nothing to do
    never = catchup.Progress(threshold=0)  # no bulk catch-up; the liveness guard stays
    assert never.after(10**6, a) is None and never.after(10**6, b) is None
    assert never.after(10**6, b) is None and never.after(10**6, b) == "stalled"
    # two workers: this one's partitions wait and do not move while the other's do
    mine = catchup.Progress(threshold=100)
    assert mine.after(40, a, waiting=3) is None and mine.after(30, a, waiting=3) is None
    assert mine.after(20, a, waiting=3) == "stalled"
    theirs = catchup.Progress(threshold=100)  # nothing waits on this one's partitions: nothing to do
    assert all(theirs.after(40, a, waiting=0) is None for _ in range(4))
