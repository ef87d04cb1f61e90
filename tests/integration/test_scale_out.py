"""Two workers on one PostgreSQL read model give exactly what one worker gives.

Each "worker" is a projector on its own engine (its own connections), applying the partitions
it owns while the other applies the rest: bookings are partitioned by expert, payment facts by
`kafka_key` (the expert when Stripe's metadata names one, else the payment id), as on Kafka. So
one customer's rows are written from two partitions at once, and only the claims
(`projections.claims`) keep the two from overwriting each other.
"""

import asyncio
import contextvars
import random
import zlib
from datetime import timedelta

import pytest
from sqlalchemy import select

from testing import samples as s
from customers.events import parse_booking_event
from projections import claims
from projections import store as store_module
from projections import tables as t
from projections.db import make_engine
from streams.worker import prepare
from projections.projector import Position, Projector
from customers.stripe_facts import to_fact
from tests.integration.test_payment_histories import world
from testing.harness import fresh_pg_database, settings_for
from tests.integration.test_projector_replay import T0, fresh_projector

PARTITIONS = 12


def partitioned(bookings: list[dict], facts: list, seed: int) -> list[tuple[Position, object]]:
    """Every record, duplicated and shuffled, at its position on a 12-partition topic."""
    rng = random.Random(seed)
    items = [("bookings", b["expert_id"], parse_booking_event(b)) for b in bookings]
    items += [("customer-activity", f.kafka_key, f) for f in facts]
    items += rng.sample(items, len(items) // 4)  # redelivered
    rng.shuffle(items)
    offsets: dict[tuple[str, int], int] = {}
    out = []
    for topic, key, item in items:
        partition = zlib.crc32(key.encode()) % PARTITIONS
        offset = offsets[(topic, partition)] = offsets.get((topic, partition), -1) + 1
        out.append((Position(topic, partition, offset, T0), item))
    return out


async def run_worker(projector: Projector, records: list, rng: random.Random) -> None:
    i = 0
    while i < len(records):
        size = rng.choice([1, 3, 12, 40])
        await projector.apply(records[i:i + size])
        i += size
        await asyncio.sleep(0)


async def tables(engine) -> dict:
    """Every read-model row of every table a worker writes, without the version column."""
    out = {}
    async with engine.connect() as conn:
        for table in (t.customers, t.meetings, t.payments, t.payment_aliases, t.projection_offsets):
            names = [c for c in table.columns if c.name != "version"]
            out[table.name] = sorted(tuple(repr(v) for v in r) for r in await conn.execute(select(*names)))
        applied = t.stripe_events_applied.c
        out["stripe_events_applied"] = sorted(r.event_id for r in await conn.execute(select(applied.event_id)))
    return out


@pytest.mark.parametrize("seed", range(6))
async def test_two_workers_on_12_partitions_build_what_one_builds(seed):
    bookings, facts, _ = world(seed=100 + seed, n=90)
    records = partitioned(bookings, facts, seed)

    engine, alone = await fresh_projector("postgresql")
    await run_worker(alone, records, random.Random(seed))
    expected = await tables(engine)
    await engine.dispose()

    engine, first = await fresh_projector("postgresql")
    second = Projector(make_engine(engine.url.render_as_string(hide_password=False)), version=first.version,
                       id_secret="k")
    owned = [[r for r in records if r[0].partition % 2 == w] for w in (0, 1)]
    await asyncio.gather(run_worker(first, owned[0], random.Random(seed)),
                         run_worker(second, owned[1], random.Random(seed + 1)))
    got = await tables(engine)
    await engine.dispose()
    await second.engine.dispose()

    assert got["customers"], "the scenario has customers"
    for name in expected:
        assert got[name] == expected[name], name


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
async def test_workers_started_together_migrate_and_find_one_live_version(backend, tmp_path):
    url = await fresh_pg_database() if backend == "postgresql" else f"sqlite+aiosqlite:///{tmp_path / 'c.db'}"
    settings = settings_for(url)
    versions = await asyncio.gather(*(prepare(settings) for _ in range(3)))
    assert versions == [1, 1, 1]


# --- one interleaving, step by step ------------------------------------------------------------

PAUSED = contextvars.ContextVar("paused", default=False)


class Gate:
    """Holds the batch of the task that set PAUSED just before it writes a customer summary."""

    def __init__(self) -> None:
        self.reached, self.opened = asyncio.Event(), asyncio.Event()

    def install(self, monkeypatch) -> None:
        real = store_module.bulk_upsert

        async def bulk_upsert(conn, table, rows, keys, **kw):
            if table is t.customers and PAUSED.get():
                self.reached.set()
                await self.opened.wait()
            return await real(conn, table, rows, keys, **kw)

        monkeypatch.setattr(store_module, "bulk_upsert", bulk_upsert)


def refund_story():
    """A booking paid through the intent it names (no metadata: its facts are keyed by the payment),
    its payment, then a reschedule (keyed by the expert) and a full refund (keyed by the payment)."""
    start = T0 + timedelta(days=10)
    booked = parse_booking_event(s.booking_created("ex", "m1", "ana@example.com", "Ana", start, amount=9000,
                                                   payment_intent_id="pi_1"))
    paid = to_fact(s.stripe_event("payment_intent.succeeded",
                                  s.payment_intent("pi_1", 9000, "succeeded", charge="ch_1")))
    moved = start + timedelta(days=2)
    rescheduled = parse_booking_event(s.booking_event(
        "booking.rescheduled", "ex", "m1", T0 + timedelta(days=1), start_time=s.iso(moved),
        end_time=s.iso(moved + timedelta(hours=1))))
    refunded = to_fact(s.stripe_event("charge.refunded", s.charge("ch_1", "pi_1", 9000, refunded=9000),
                                      created=1_700_000_500))
    assert paid.expert_id is None and refunded.kafka_key == "pi_1"
    return booked, paid, rescheduled, refunded


async def interleave(monkeypatch) -> tuple[bool, dict]:
    """Worker A reschedules and stops after reading the customer; worker B applies the refund.

    Returns whether B finished while A was stopped, and the customer's stored figures.
    """
    booked, paid, rescheduled, refunded = refund_story()
    engine, a = await fresh_projector("postgresql")
    b = Projector(make_engine(engine.url.render_as_string(hide_password=False)), version=a.version, id_secret="k")
    await a.apply([(Position("bookings", 0, 0, T0), booked), (Position("customer-activity", 5, 0, T0), paid)])
    gate = Gate()
    gate.install(monkeypatch)

    async def worker_a():
        PAUSED.set(True)
        await a.apply([(Position("bookings", 0, 1, T0), rescheduled)])

    task_a = asyncio.create_task(worker_a())
    await asyncio.wait_for(gate.reached.wait(), 30)
    task_b = asyncio.create_task(b.apply([(Position("customer-activity", 5, 1, T0), refunded)]))
    done, _ = await asyncio.wait({task_b}, timeout=2)
    gate.opened.set()
    await asyncio.wait_for(asyncio.gather(task_a, task_b), 30)
    async with engine.connect() as conn:
        row = (await conn.execute(select(t.customers.c.spend, t.customers.c.refunded))).one()
    await engine.dispose()
    await b.engine.dispose()
    return bool(done), {"spend": row.spend, "refunded": row.refunded}


async def test_a_refund_from_another_partition_waits_for_the_batch_that_read_its_customer(monkeypatch):
    finished_early, figures = await interleave(monkeypatch)
    assert not finished_early, "the refund's batch waits for the expert's batch"
    assert figures == {"spend": {"eur": 0}, "refunded": {"eur": 9000}}


async def test_without_the_claims_the_same_interleaving_loses_the_refund(monkeypatch):
    """What the claims prevent: B commits while A holds a stale read, and A writes over it."""

    async def hold_nothing(conn, claim):
        return None

    monkeypatch.setattr(claims, "hold", hold_nothing)
    monkeypatch.setattr(claims.Claim, "missing", lambda self, other: False)
    finished_early, figures = await interleave(monkeypatch)
    assert finished_early
    assert figures["spend"] == {"eur": 9000}, figures
