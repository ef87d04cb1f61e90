"""Erasure edge cases on both databases: a person who books again after being erased starts a new
relationship (notes included), and erased references are unambiguous whatever the ids hold."""

import asyncio
from datetime import datetime, timedelta, timezone

import pytest
from alembic import command
from sqlalchemy import insert, select

from testing import samples as s
from customers.events import parse_booking_event
from customers.ids import customer_id, email_hash
from projections import tables as t
from customers.commands import CustomerErased, NoteAdded
from projections.db import alembic_config, make_engine, migrate
from projections.forgetting import ref_of
from projections.projector import Position
from testing.harness import fresh_pg_database
from tests.integration.test_projector_replay import fresh_projector

T0 = datetime(2026, 6, 1, 9, tzinfo=timezone.utc)
BACKENDS = ["postgresql", "sqlite"]


class Feed:
    """Applies records to a projector at increasing offsets of one partition per topic."""

    def __init__(self, projector) -> None:
        self.projector, self.offsets = projector, {}

    async def __call__(self, topic: str, *items) -> None:
        batch = []
        for item in items:
            self.offsets[topic] = self.offsets.get(topic, -1) + 1
            batch.append((Position(topic, 0, self.offsets[topic], T0), item))
        await self.projector.apply(batch)


def booking(expert: str, meeting: str, email: str, at: datetime, **kw):
    return parse_booking_event(s.booking_created(expert, meeting, email, "Ana", at + timedelta(days=1),
                                                 occurred_at=at, **kw))


def note(note_id: str, expert: str, cid: str, at: datetime) -> NoteAdded:
    return NoteAdded(command_id=note_id, occurred_at=at, note_id=note_id, expert_id=expert, customer_id=cid,
                     body=f"note {note_id}", created_at=at)


def erasure(email: str, at: datetime) -> CustomerErased:
    return CustomerErased(command_id="e", occurred_at=at, email_hash=email_hash("k", email))


async def notes_of(engine, cid: str) -> list[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(select(t.notes.c.note_id).where(t.notes.c.customer_id == cid))
        return sorted(rows.scalars())


@pytest.mark.parametrize("backend", BACKENDS)
async def test_notes_after_the_erasure_belong_to_the_new_relationship(backend):
    engine, projector = await fresh_projector(backend)
    feed = Feed(projector)
    cid = customer_id("k", "ex", "ana@example.com")
    await feed("bookings", booking("ex", "m1", "ana@example.com", T0 - timedelta(days=10)))
    await feed("customer-commands", note("n_before", "ex", cid, T0 - timedelta(days=5)))
    await feed("customer-commands", erasure("ana@example.com", T0))
    assert await notes_of(engine, cid) == []

    # she books again; a note written after the erasure is kept, a late one from before is not
    await feed("bookings", booking("ex", "m2", "ana@example.com", T0 + timedelta(days=1)))
    await feed("customer-commands", note("n_after", "ex", cid, T0 + timedelta(days=2)),
               note("n_late", "ex", cid, T0 - timedelta(days=1)))
    assert await notes_of(engine, cid) == ["n_after"]
    async with engine.connect() as conn:
        c = t.customers.c
        assert (await conn.execute(select(c.appointments).where(c.customer_id == cid))).scalar() == 1
    await engine.dispose()


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_booking_after_the_erasure_in_the_same_batch_is_kept(backend):
    """A batch's rules run in stages (bookings before commands): the batch is cut around the
    erasure, so the booking that came after it is a new relationship, as in a batch of its own."""
    engine, projector = await fresh_projector(backend)
    cid = customer_id("k", "ex", "ana@example.com")
    await projector.apply([
        (Position("bookings", 0, 0, T0), booking("ex", "m1", "ana@example.com", T0 - timedelta(days=10))),
        (Position("customer-commands", 0, 0, T0), erasure("ana@example.com", T0)),
        (Position("bookings", 0, 1, T0), booking("ex", "m2", "ana@example.com", T0 + timedelta(days=1))),
    ])
    async with engine.connect() as conn:
        m = t.meetings.c
        meetings = (await conn.execute(select(m.meeting_id).where(m.customer_id == cid))).scalars().all()
        c = t.customers.c
        appointments = (await conn.execute(select(c.appointments).where(c.customer_id == cid))).scalar()
    assert meetings == ["m2"] and appointments == 1
    await engine.dispose()


@pytest.mark.parametrize("backend", BACKENDS)
async def test_an_erased_meeting_does_not_hide_one_whose_ids_join_the_same_way(backend):
    engine, projector = await fresh_projector(backend)
    feed = Feed(projector)
    # ("a/b", "c") and ("a", "b/c") both read "a/b/c" when joined with a slash
    await feed("bookings", booking("a/b", "c", "ana@example.com", T0 - timedelta(days=3)),
               booking("a", "b/c", "bob@example.com", T0 - timedelta(days=3)))
    await feed("customer-commands", erasure("ana@example.com", T0))
    cancel = parse_booking_event(s.booking_event("booking.cancelled", "a", "b/c", T0 + timedelta(hours=1),
                                                 reason="ill"))
    ghost = booking("a/b", "c", "ana@example.com", T0 + timedelta(hours=2))  # the erased meeting stays out
    await feed("bookings", cancel, ghost)
    async with engine.connect() as conn:
        m = t.meetings.c
        rows = (await conn.execute(select(m.expert_id, m.meeting_id, m.cancel_reason))).all()
        refs = set((await conn.execute(select(t.erased_refs.c.kind, t.erased_refs.c.ref))).all())
    assert [tuple(r) for r in rows] == [("a", "b/c", "ill")]
    assert ("meeting", ref_of("a/b", "c")) in refs and ("meeting", ref_of("a", "b/c")) not in refs
    await engine.dispose()


@pytest.mark.parametrize("backend", BACKENDS)
async def test_refs_written_before_the_migration_still_keep_things_out(backend, tmp_path):
    url = await fresh_pg_database() if backend == "postgresql" else f"sqlite+aiosqlite:///{tmp_path / 'c.db'}"
    await asyncio.to_thread(command.upgrade, alembic_config(url), "0003")
    engine = make_engine(url)
    async with engine.begin() as conn:
        await conn.execute(insert(t.erased_refs), [
            {"kind": "payment", "ref": "pi_1", "erased_at": T0},
            {"kind": "customer", "ref": "a/b/c_0f", "erased_at": T0},
            {"kind": "meeting", "ref": "x/y/z", "erased_at": T0},
        ])
    await engine.dispose()
    await migrate(url)
    engine = make_engine(url)
    async with engine.connect() as conn:
        refs = set((await conn.execute(select(t.erased_refs.c.kind, t.erased_refs.c.ref))).all())
    assert refs == {("payment", ref_of("pi_1")), ("customer", ref_of("a/b", "c_0f")),
                    ("meeting", ref_of("x", "y/z")), ("meeting", ref_of("x/y", "z"))}
    await engine.dispose()
