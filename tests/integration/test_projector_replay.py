"""Replaying records the projection already applied changes neither the view nor the position."""

import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import select

from testing import samples as s
from customers.events import parse_booking_event
from projections import tables as t
from projections.db import make_engine, migrate
from projections.projector import Position, Projector
from projections.versions import ensure_live
from testing.harness import fresh_pg_database

T0 = datetime(2026, 6, 1, 9, tzinfo=timezone.utc)


async def snapshot(engine):
    async with engine.connect() as conn:
        out = {}
        for table in (t.customers, t.meetings, t.projection_offsets):
            rows = (await conn.execute(select(table))).all()
            out[table.name] = sorted(tuple(r) for r in rows)
        return out


async def fresh_projector(backend: str) -> tuple:
    """An engine on a new, migrated database and a projector on its live version."""
    url = await fresh_pg_database() if backend == "postgresql" else \
        f"sqlite+aiosqlite:///{Path(tempfile.mkdtemp()) / 'c.db'}"
    await migrate(url)
    engine = make_engine(url)
    return engine, Projector(engine, version=await ensure_live(engine, "g"), id_secret="k")


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
async def test_replaying_applied_records_changes_nothing(backend):
    engine, projector = await fresh_projector(backend)
    events = [parse_booking_event(s.booking_created("ex", f"m{i}", f"p{i % 3}@example.com", "P", T0 + timedelta(days=i)))
              for i in range(6)]
    batch = [(Position("bookings", 0, i, T0), e) for i, e in enumerate(events)]
    await projector.apply(batch)
    before = await snapshot(engine)
    again = await projector.apply(batch[-1:])
    assert again.skipped_offsets == 1
    older = await projector.apply(batch[:3])
    assert older.skipped_offsets == 3
    assert await snapshot(engine) == before
    assert (await projector.stored_offsets()) == {("bookings", 0): 5}
    await engine.dispose()


async def test_note_commands_in_any_order():
    from customers.commands import NoteAdded, NoteDeleted

    engine, projector = await fresh_projector("sqlite")
    add = NoteAdded(command_id="a", occurred_at=T0, note_id="n1", expert_id="ex", customer_id="c1", body="likes mornings",
                    created_at=T0)
    intruder = NoteDeleted(command_id="x", occurred_at=T0, note_id="n1", expert_id="other", customer_id="c1")
    delete = NoteDeleted(command_id="d", occurred_at=T0, note_id="n1", expert_id="ex", customer_id="c1")
    offset = iter(range(100))

    async def note():
        async with engine.connect() as conn:
            return (await conn.execute(select(t.notes.c.expert_id, t.notes.c.body, t.notes.c.deleted))).one()

    async def apply(*cmds):
        await projector.apply([(Position("customer-commands", 0, next(offset), T0), c) for c in cmds])

    await apply(add, intruder)
    assert await note() == ("ex", "likes mornings", False)  # another expert cannot delete it
    await apply(delete, add)
    assert await note() == ("ex", "", True)  # a re-sent add does not revive it
    await engine.dispose()


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
async def test_payment_parked_under_its_charge_joins_its_intent(backend):
    from customers.stripe_facts import to_fact

    engine, projector = await fresh_projector(backend)
    meta = s.meeting_metadata("ex", "ana@example.com", "Ana", T0)
    legacy = s.charge("ch_1", None, 7000, fee=700)  # a charge event that names no payment intent
    legacy["metadata"] = {"expert_id": "ex", "meeting_id": "m1"}
    fee = to_fact(s.stripe_event("charge.succeeded", legacy))
    booking = parse_booking_event(s.booking_created("ex", "m1", "ana@example.com", "Ana", T0, amount=7000))
    paid = to_fact(s.stripe_event("payment_intent.succeeded",
                                  s.payment_intent("pi_1", 7000, "succeeded", metadata=meta, fee=700, charge="ch_1")))
    await projector.apply([(Position("customer-activity", 0, 0, T0), fee)])
    await projector.apply([(Position("bookings", 0, 0, T0), booking), (Position("customer-activity", 0, 1, T0), paid)])
    async with engine.connect() as conn:
        rows = (await conn.execute(select(t.payments.c.payment_id, t.payments.c.meeting_id))).all()
        summary = (await conn.execute(select(t.customers.c.spend, t.customers.c.revenue))).one()
    assert rows == [("pi_1", "m1")]
    assert summary == ({"eur": 7000}, {"eur": 6300})
    await engine.dispose()


async def test_planner_statistics_are_refreshed_beside_the_batches():
    """After 5,000 records the version's own tables are analysed on a connection of their own."""
    from sqlalchemy import text

    engine, projector = await fresh_projector("postgresql")

    async def analysed() -> int:
        async with engine.connect() as conn:
            return (await conn.execute(text(
                "SELECT count(*) FROM pg_stat_user_tables WHERE relname = 'meetings_v1' AND last_analyze IS NOT NULL"
            ))).scalar_one()

    offset = 0
    for round_ in range(3):
        events = [parse_booking_event(s.booking_created(f"ex{i % 40}", f"m{round_}_{i}", f"p{i % 700}@example.com",
                                                         "P", T0 + timedelta(hours=i)))
                  for i in range(2_000)]
        await projector.apply([(Position("bookings", 0, offset + i, T0), e) for i, e in enumerate(events)])
        offset += len(events)
        if round_ < 2:
            assert projector.statistics.running is None  # 4,000 records: under the threshold
    assert projector.statistics.running is not None  # started by the third batch, not awaited by it
    await projector.statistics.settle()
    assert await analysed() == 1
    await engine.dispose()
