"""The live engine that holds its state in memory (`projections.live`) gives the read model the
engine that reads each batch back gives (`projections.projector`), table for table:

* one engine, in batches of random sizes, some left in flight while the next is folded;
* two engines sharing the partitions, their batches interleaved: payment-first facts on other
  partitions than their bookings, erasures reaching every expert (the fences catch the rows one
  changed under the other, which then reads them again);
* a memory budget so small that experts are forgotten and read again all the time;
* a zombie: a worker that lost its partitions to another and still applies a batch from the
  state it held. It must not write (the fences); the same scenario with the fences disabled
  corrupts the read model, so this test fails without them;
* the ways back from a conflict or an outage: a write tried again after the connection dropped
  half-way, a conflict on every first write, on one of a payment's ids, on an id whose rows are
  gone, and an outage while an expert's rows are read. Each ends equal to the reference, and
  with one engine nothing but the injected conflicts may be stale.

The stream is the mixed one of `test_fold_equals_live` (generated marketplace, payment-first
histories, an erasure and a re-booking after it), read back from Kafka with real positions.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import random
from datetime import datetime, timedelta, timezone
from typing import Iterator

import pytest

from sqlalchemy import text

from customers import kafka as names
from projections import fences
from projections import live as live_module
from projections.db import make_engine, migrate
from projections.fences import Stale
from projections.live import Resident
from projections.versions import ensure_live
from streams.decode import decoder_for
from streams.fold import read_partitions
from streams.poison import Source
from testing.harness import fresh_pg_database, settings_for
from tests.integration.test_catchup import _assert_equal
from tests.integration.test_fold_equals_live import (PARTITIONS, SEED, Mixed, apply_live, check_snapshot,
                                                     differences, produce, time_of)
from tests.integration.test_rebuild_equals_live import SECRET, summaries_recount, tables


@pytest.fixture(scope="module")
def until() -> datetime:
    return (datetime.now(timezone.utc) + timedelta(hours=1)).replace(second=0, microsecond=0)


@pytest.fixture(scope="module")
async def history(until):
    """(settings, mixed, decoded records in the live order, the reference read model)."""
    mixed = Mixed(SEED, until)
    url = await fresh_pg_database()
    await migrate(url)
    settings = settings_for(url, topic_partitions=PARTITIONS, customer_id_secret=SECRET)
    await names.ensure_topics(settings)
    await produce(settings, mixed.records, (names.COMMANDS, mixed.erasure.model_dump_json().encode()), mixed.again)
    ends = await names.end_offsets(settings, [settings.topic(n) for n in names.PROJECTED])
    read = await read_partitions(settings, sorted(ends), ends)
    streams = [read[tp] for tp in sorted(read)]
    random.Random(SEED).shuffle(streams)
    ordered = list(heapq.merge(*streams, key=time_of))
    records = [(Source(r.topic, r.partition, r.offset, r.key, r.value, time_of(r)),
                decoder_for(r.topic, settings.topic_prefix)(r.value)) for r in ordered]
    engine = make_engine(url)
    try:
        reference = await apply_live(engine, settings, [(src.position, item) for src, item in records],
                                     random.Random(SEED))
        await reference.sweep(until)
        want = await tables(engine, reference.version)
        check_snapshot(want, mixed, "reference")
    finally:
        await engine.dispose()
    return settings, mixed, records, want


class Fresh:
    """A fresh database with the live version, and engines on it."""

    def __init__(self, url: str, engine, version: int) -> None:
        self.url, self.engine, self.version = url, engine, version
        self.dead: list = []
        self.residents: list[Resident] = []

    @classmethod
    async def make(cls) -> "Fresh":
        url = await fresh_pg_database()
        await migrate(url)
        engine = make_engine(url)
        return cls(url, engine, await ensure_live(engine, "g"))

    def resident(self, **kw) -> Resident:
        async def to_dlq(src, exc):
            self.dead.append((src, exc))
        r = Resident(self.engine, version=self.version, id_secret=SECRET, to_dlq=to_dlq, **kw)
        self.residents.append(r)
        return r

    async def result(self, until: datetime) -> dict:
        for r in self.residents:
            await r.close()
        from projections.projector import Projector
        await Projector(self.engine, version=self.version, id_secret=SECRET).sweep(until)
        return await tables(self.engine, self.version)

    async def close(self) -> None:
        await self.engine.dispose()


async def in_batches(resident: Resident, records: list, rng: random.Random) -> None:
    i = 0
    while i < len(records):
        size = rng.randint(1, 300)
        await resident.apply(records[i:i + size], wait=rng.random() < 0.3)
        i += size


def conflicts(monkeypatch, inject) -> list[list[str]]:
    """Writes meet the conflicts `inject(scopes)` names (another writer, as the fences see it: the
    scopes' generations changed); returns the real conflicts the fences found besides, which one
    engine alone must never meet."""
    checked, real = live_module.bump_generations, []

    async def fenced(conn, version, expected, scopes):
        if expected is not None and scopes and (stale := inject(scopes)):
            raise Stale(set(stale))
        try:
            return await checked(conn, version, expected, scopes)
        except Stale as found:
            real.append(sorted(found.scopes))
            raise
    monkeypatch.setattr(live_module, "bump_generations", fenced)
    return real


async def alone(records: list, until: datetime, seed: int, **kw) -> tuple[Resident, dict]:
    """One engine on a fresh database, `records` in random batches: (the engine, the read model).
    Nothing may have gone to a dead-letter topic."""
    db = await Fresh.make()
    try:
        resident = db.resident(**kw)
        await in_batches(resident, records, random.Random(seed))
        got = await db.result(until)
        assert not db.dead
        return resident, got
    finally:
        await db.close()


async def test_one_engine_in_random_batches_equals_the_reference(history, until):
    settings, mixed, records, want = history
    db = await Fresh.make()
    try:
        await in_batches(db.resident(), records, random.Random(SEED + 1))
        got = await db.result(until)
        assert not db.dead
        _assert_equal(want, got, "one engine")
        check_snapshot(got, mixed, "one engine")
        await summaries_recount(db.engine, db.version)
    finally:
        await db.close()


@pytest.mark.parametrize("max_redo", [Resident.MAX_REDO, 0], ids=["retries", "every-stale-past-the-retries"])
async def test_two_engines_sharing_the_partitions_equal_the_reference(history, until, max_redo, monkeypatch):
    """With `max_redo` 0, every stale write is past the engine's quick retries: contention must
    still cost time only, never a record (nothing dead-lettered, nothing missing)."""
    settings, mixed, records, want = history
    monkeypatch.setattr(Resident, "MAX_REDO", max_redo)
    db = await Fresh.make()
    try:
        a, b = db.resident(), db.resident()
        rng = random.Random(SEED + 2)
        mine = {0: a, 1: b}
        queues = {a: [], b: []}
        for src, item in records:
            queues[mine[src.partition % 2]].append((src, item))
        # interleaved: each takes a random slice of its own records in turn
        cursors = {a: 0, b: 0}
        while any(cursors[e] < len(queues[e]) for e in (a, b)):
            engine = rng.choice([e for e in (a, b) if cursors[e] < len(queues[e])])
            size = rng.randint(1, 200)
            await engine.apply(queues[engine][cursors[engine]:cursors[engine] + size], wait=rng.random() < 0.5)
            cursors[engine] += size
        got = await db.result(until)
        assert not db.dead
        assert a.stale + b.stale > 0, "the partitions shared nothing: the fences were never tried"
        _assert_equal(want, got, "two engines")
        await summaries_recount(db.engine, db.version)
    finally:
        await db.close()


async def test_an_engine_that_forgets_experts_all_the_time_equals_the_reference(history, until):
    settings, mixed, records, want = history
    resident, got = await alone(records, until, SEED + 3, max_rows=300)
    assert resident.evictions > 10
    # alone, it never meets a conflict: forgetting never drops what the tables lack (the Stripe
    # events of the batch not yet written: a copy of one in the next batch was applied twice)
    assert resident.stale == 0
    _assert_equal(want, got, "forgetting")


def zombie_splits(records: list) -> Iterator[tuple[int, int]]:
    """(third, i): B takes over at a third; the zombie's first record after B's, `i`, is a booking
    of a person both A and B saw book: A's summary of them lacks B's bookings."""
    third = len(records) // 3

    def person(item):
        return (item.expert_id, item.customer.email.lower())
    booked = [i for i, (_, item) in enumerate(records) if item is not None and item.type == "booking.created"]
    early = {person(records[i][1]) for i in booked if i < third}
    found = False
    for i in booked:
        if i >= 2 * third and person(records[i][1]) in early and any(
                person(records[k][1]) == person(records[i][1]) for k in booked if third <= k < i):
            found = True
            yield third, i
    assert found, "no person booked in every third"


async def _zombie(records: list, until: datetime, *, rest: bool = True,
                  split: tuple[int, int] | None = None) -> tuple[dict, int]:
    """A holds every partition and applies the first third; B takes them over and applies up to
    `i`; A, a zombie that never learnt it lost them, applies record `i` alone from the state it
    kept (which lacks B's records), then the rest."""
    third, i = split or next(zombie_splits(records))
    db = await Fresh.make()
    try:
        a, b = db.resident(), db.resident()
        await in_batches(a, records[:third], random.Random(1))
        await a.flush()  # A's last write committed; then its partitions go to B
        await in_batches(b, records[third:i], random.Random(2))
        await b.flush()
        await a.apply(records[i:i + 1])
        if not rest:  # the tables as the zombie's write left them
            for r in (a, b):
                await r.close()
            return await tables(db.engine, db.version), a.stale
        await in_batches(a, records[i + 1:], random.Random(3))
        return await db.result(until), a.stale
    finally:
        await db.close()


async def test_a_zombie_cannot_write_from_the_state_it_held(history, until, monkeypatch):
    settings, mixed, records, want = history
    got, stale = await _zombie(records, until)
    assert stale >= 1
    _assert_equal(want, got, "zombie")
    # the unfenced zombie below must corrupt something for the test to prove anything: a record
    # whose write the database refuses on its own (a row B made first) would not, so a few
    # zombies of different records are tried
    splits = list(itertools.islice(zombie_splits(records), 4))
    rights = [(await _zombie(records, until, rest=False, split=split))[0] for split in splits]

    # the same zombie with the fences disabled (offsets and generations written unchecked)
    checked_offsets, checked_generations = fences.move_offsets, fences.bump_generations

    async def unchecked_offsets(conn, version, expected, new):
        raw = await fences._driver(conn)
        stored = {(r[0], r[1]): r[2] for r in await raw.fetch(
            'SELECT topic, "partition", "offset" FROM projection_offsets WHERE version = $1', version)}
        await checked_offsets(conn, version, stored, new)

    async def unchecked_generations(conn, version, expected, scopes):
        return await checked_generations(conn, version, None, scopes)

    monkeypatch.setattr(live_module, "move_offsets", unchecked_offsets)
    async def unchecked_epoch(*args):
        pass

    monkeypatch.setattr(live_module, "bump_generations", unchecked_generations)
    monkeypatch.setattr(live_module, "check_epoch", unchecked_epoch)
    corrupted = [(await _zombie(records, until, rest=False, split=split))[0] for split in splits]
    assert any(differences(right, bad) for right, bad in zip(rights, corrupted)), \
        "the unfenced zombies left the read model intact: the test proves nothing"


@pytest.fixture(scope="module")
async def without_erasure(history, until):
    """(records without the erasure, the read model one engine makes of them in order).

    Two workers may apply the erasure and the person's later booking (another partition) in
    either order, and the erasure takes every booking of the person it finds (README, "Known
    limits"): the rebalancing test below compares everything else."""
    settings, mixed, records, want = history
    kept = [r for r in records if r[1] is None or r[1].type != "customer.erased"]
    db = await Fresh.make()
    try:
        one = db.resident()
        for i in range(0, len(kept), 150):
            await one.apply(kept[i:i + 150])
        return kept, await db.result(until)
    finally:
        await db.close()


async def rebalanced(records: list, rng: random.Random, a: Resident, b: Resident, moves: int = 6) -> None:
    """`a` and `b` in one consumer group whose partitions move `moves` times, both running at once.

    After each move an engine is told its partitions (as the worker is) and reads a partition new
    to it from a position at or before the database's offset (what the gap guard ensures),
    records of it a former owner may still hold in a batch not yet written (a zombie's)."""
    partitions = sorted({src.partition for src, _ in records})
    tps = sorted({(src.topic, src.partition) for src, _ in records})
    position = {id(r): i for i, r in enumerate(records)}
    cuts = sorted(rng.sample(range(1, len(records)), moves)) + [len(records)]
    start, before = 0, {}
    for cut in cuts:
        owner = {p: rng.choice((a, b)) for p in partitions}
        share: dict[Resident, list] = {a: [], b: []}
        for engine in (a, b):
            mine = {tp for tp in tps if owner[tp[1]] is engine}
            await engine.assigned(mine)
            for tp in mine:
                if before.get(tp[1]) is engine:
                    share[engine] += [r for r in records[start:cut] if (r[0].topic, r[0].partition) == tp]
                else:
                    since = (engine.offsets or {}).get(tp, -1) - rng.randint(0, 40)
                    share[engine] += [r for r in records[:cut]
                                      if (r[0].topic, r[0].partition) == tp and r[0].offset > since]
            share[engine].sort(key=lambda r: position[id(r)])

        async def run(engine: Resident) -> None:
            queue, i = share[engine], 0
            while i < len(queue):
                size = rng.randint(1, 200)
                await engine.apply(queue[i:i + size], wait=rng.random() < 0.4)
                i += size
                await asyncio.sleep(rng.random() * 0.01)
        await asyncio.gather(run(a), run(b))
        before, start = owner, cut


@pytest.mark.parametrize("seed", range(3))
async def test_two_engines_through_rebalances_equal_one_engine(history, without_erasure, until, seed):
    """Partitions moving between two engines running at once, batches of a partition taken away
    still in flight: nothing lost, nothing doubled, nothing written from a copy another changed
    (a message's status from its reports among them)."""
    records, want = without_erasure
    db = await Fresh.make()
    try:
        a, b = db.resident(), db.resident()
        await rebalanced(records, random.Random(100 + seed), a, b)
        got = await db.result(until)
        assert not db.dead
        assert a.stale + b.stale > 0, "nothing was stale: the fences were never tried"
        _assert_equal(want, got, f"rebalanced {seed}")
    finally:
        await db.close()


async def test_a_batch_that_keeps_meeting_the_new_owner_gives_its_partition_up(history, monkeypatch):
    """A worker whose batch keeps finding its partition written by another (the partition's new
    owner) tries again, holding the engine's lock, until it learns the partition is no longer its
    own. It learns that from the new assignment, which must reach it while the batch holds the
    lock: the records are left to the new owner, nothing of them written here. (Times out on the
    code that took the lock first: the assignment waited for the batch, the batch for the
    assignment.)"""
    settings, mixed, records, want = history
    tps = sorted({(src.topic, src.partition) for src, _ in records})
    lost, kept = tps[0], set(tps[1:])
    db = await Fresh.make()
    try:
        a = db.resident()
        await a.assigned(set(tps))
        await a.apply(records[:50])
        checked = live_module.move_offsets

        async def new_owner_always_first(conn, version, expected, new):  # the other worker, ever ahead
            if lost in new:
                raise Stale(partitions={lost})
            await checked(conn, version, expected, new)
        monkeypatch.setattr(live_module, "move_offsets", new_owner_always_first)

        rest = records[50:300]
        assert any((src.topic, src.partition) == lost for src, _ in rest)
        applying = asyncio.ensure_future(a.apply(rest))
        for _ in range(600):  # past the quick attempts, into the ones that wait between them
            if a.stale > Resident.MAX_REDO or applying.done():
                break
            await asyncio.sleep(0.05)
        assert not applying.done(), "the batch was written although its partition's fence always fails"
        assert a.stale > Resident.MAX_REDO
        await asyncio.wait_for(a.assigned(kept), 20)
        await asyncio.wait_for(applying, 20)
        stored = await a.stored_offsets()
        assert stored.get(lost, -1) == max((src.offset for src, _ in records[:50] if (src.topic, src.partition) == lost),
                                           default=-1)
        mine = [src for src, _ in rest if (src.topic, src.partition) in kept]
        for tp in kept:  # what stays this worker's is written
            ends = [src.offset for src in mine if (src.topic, src.partition) == tp]
            if ends:
                assert stored[tp] == max(ends)
        assert not db.dead
        await a.close()
    finally:
        await db.close()


async def test_a_batch_read_again_after_another_writer_finds_the_rows_it_had_removed(history, until, monkeypatch):
    """Every batch's first write finds all its scopes changed by another writer: the engine forgets
    them, reads them again and folds the batch again. The rows the failed write would have removed
    are still in the tables (nothing of it was written), so reading them again must take them: a
    worker that skipped them as removed folded the batch again without them (a charge's payment
    merged into its intent, lost with its money), caught here by the real fences only when the row
    had a scope of its own, and never for an expert's rows. With one engine, nothing but the
    injected conflicts may be stale."""
    settings, mixed, records, want = history
    calls, removing = [0], []

    def every_first_write(scopes):
        """every other write finds its scopes changed: a batch's first write, never its second"""
        calls[0] += 1
        return scopes if calls[0] % 2 else None
    real = conflicts(monkeypatch, every_first_write)
    submit = Resident._submit

    def noting_removals(self, batch):
        removing.extend(k for c in batch.changes for k in c.gone)
        submit(self, batch)
    monkeypatch.setattr(Resident, "_submit", noting_removals)
    resident, got = await alone(records, until, SEED + 4)
    assert resident.stale > 10
    assert removing, "no batch removed a row: the test proves nothing"
    assert not real, f"the engine's own state went stale (rows it read again without): {real}"
    _assert_equal(want, got, "read again after another writer")


async def test_an_outage_half_way_through_reading_an_expert_reads_it_all_again(history, until, monkeypatch):
    """The connection drops while an expert's rows are being read (every few readings, after its
    appointments and before its customers): the engine reads again in a new snapshot, and the
    experts of the failed reading are read in full, not taken as held with half their rows."""
    settings, mixed, records, want = history
    from projections import resident as resident_module
    summaries, calls, drops = resident_module.compact_summary, [0], {3, 20, 40, 60}

    def dropping(summary):
        calls[0] += 1
        if calls[0] in drops:
            raise ConnectionResetError("the server closed the connection")
        return summaries(summary)
    monkeypatch.setattr(resident_module, "compact_summary", dropping)
    resident, got = await alone(records, until, SEED + 5, max_rows=300)  # experts forgotten and read again, often
    assert calls[0] > max(drops), "few readings of customers: the test proves little"
    assert resident.stale == 0, "one engine met a conflict: it wrote from a state that was not the tables'"
    _assert_equal(want, got, "an outage while reading")


async def test_a_write_tried_again_after_an_outage_writes_every_row(history, until, monkeypatch):
    """The connection drops in the middle of a batch's write, after some of its tables were sent
    (PostgreSQL restarted): nothing of it is committed, and the same write is tried again. It must
    send every row again (rows made once, for one reading, came out empty the second time: a
    payment's aliases were written without the payment, its appointments were lost)."""
    settings, mixed, records, want = history
    from projections import resident as resident_module
    copied, sent = resident_module.copy_rows, []

    async def dropping_after_some(conn, table, columns, rows, **kw):
        if table.name == "payments" and len(sent) < 6:
            rows = list(rows)
            if rows:  # the rows went out, then the server went away
                sent.append(len(rows))
                raise ConnectionResetError("the server closed the connection")
        return await copied(conn, table, columns, rows, **kw)
    monkeypatch.setattr(resident_module, "copy_rows", dropping_after_some)
    _resident, got = await alone(records, until, SEED + 7)
    assert len(sent) >= 5, "few writes dropped with payments in them: the test proves little"
    _assert_equal(want, got, "a write tried again")


async def test_another_writer_of_one_of_a_payments_ids_makes_the_payment_read_again(history, until, monkeypatch):
    """A payment is guarded by every id Stripe knows it by. When another writer changed only one of
    those ids (a charge's `p:ch_...`, say, written by a worker that met the charge first), the
    payment held under its intent's id must be forgotten and read again with that id's
    generation; otherwise the engine never learns that generation and meets the same conflict
    again and again (two fresh workers each stuck on their own partitions). With one engine,
    nothing but the injected conflicts may be stale."""
    settings, mixed, records, want = history
    engines: list[Resident] = []
    injected = []

    def aliases_of_owned(scopes):
        held = engines[0].state
        return {s for s in scopes if s.startswith("p:") and (pid := held.aliases.rows.get(s[2:])) is not None
                and pid != s[2:] and (p := held.payments.get(pid)) is not None and (p.expert_id or p.hint_expert)}

    def another_writer_of_an_id(scopes):
        if len(injected) < 20 and (ids := aliases_of_owned(scopes)) and not any(ids <= i for i in injected):
            injected.append(ids)
            return ids
        return None
    real = conflicts(monkeypatch, another_writer_of_an_id)
    db = await Fresh.make()
    try:
        engines.append(db.resident())
        await asyncio.wait_for(in_batches(engines[0], records, random.Random(SEED + 6)), 120)
        assert injected, "no batch changed a payment known by another id: the test proves nothing"
        assert not real, f"generations the engine never read again: {real[:5]}"
        got = await db.result(until)
        assert not db.dead
        _assert_equal(want, got, "another writer of one id")
    finally:
        await db.close()


async def test_an_id_whose_rows_are_gone_but_not_its_generation_is_written_again(history, until):
    """A payment id another writer once wrote and whose rows are gone since (merged away, erased)
    keeps its generation. A later record naming it finds no row: the generation read with that
    finding must be the one checked (checked against none, the batch met a conflict that no
    reading could settle, and the worker stalled)."""
    settings, mixed, records, want = history
    from projections.store import wanted
    half = len(records) // 2
    items = [item for _, item in records if item is not None]
    early = wanted(items[:half], SECRET).names
    ghosts = sorted(wanted(items[half:], SECRET).names - early)[:5]
    assert ghosts
    db = await Fresh.make()
    try:
        resident = db.resident()
        await in_batches(resident, records[:half], random.Random(SEED + 8))
        await resident.flush()
        async with db.engine.begin() as conn:
            await conn.execute(text("INSERT INTO projection_generations (version, scope, generation) "
                                    "SELECT :v, s, 3 FROM unnest(CAST(:ids AS text[])) AS s"),
                               {"v": db.version, "ids": ["p:" + g for g in ghosts]})
        await asyncio.wait_for(in_batches(resident, records[half:], random.Random(SEED + 9)), 120)
        got = await db.result(until)
        assert not db.dead
        _assert_equal(want, got, "ids with a generation and no row")
    finally:
        await db.close()


async def test_replacing_a_row_the_table_lacks_is_refused():
    """The engine replaces rows it holds with one `UPDATE ... FROM`; a row it holds that the table
    lacks would make that update change nothing, silently. It is refused instead (the worker then
    reads its state again)."""
    from projections import tables as t
    from projections.resident import Diverged, _update_from_arrays
    db = await Fresh.make()
    try:
        async with db.engine.begin() as conn:
            await conn.execute(t.payment_aliases.insert(), [{"version": db.version, "alias": "ch_1", "payment_id": "pi_1"}])
            columns, keys = ("version", "alias", "payment_id"), ("version", "alias")
            assert await _update_from_arrays(conn, t.payment_aliases, columns, [(db.version, "ch_1", "pi_2")],
                                             keys, db.version) == 1
            with pytest.raises(Diverged, match="2 rows to replace, 1 found"):
                await _update_from_arrays(conn, t.payment_aliases, columns,
                                          [(db.version, "ch_1", "pi_3"), (db.version, "ch_gone", "pi_3")],
                                          keys, db.version)
    finally:
        await db.close()
