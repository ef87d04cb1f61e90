"""The unit of work that applies a batch of source records to one projection version.

Commit order, for one batch (the agent calls `apply`):

1. records at or below the offset stored for their partition are dropped (already applied);
2. the read-model rows and the new offsets are written in ONE database transaction;
3. only after that transaction commits does the agent acknowledge the records to Kafka,
   whose committed offset therefore trails the database's.

A crash before 2 commits loses nothing (Kafka redelivers); a crash between 2 and 3 makes
Kafka redeliver records that step 1 then drops. Nothing is lost or counted twice.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from projections import claims, physical, rules
from projections import tables as t
from projections.db import in_tuples, upsert
from projections.fences import bump_generations
from projections.rules import insights, linking, profiles, registry, summaries
from projections.rules.model import Changes, View
from projections.rules.status import DEFAULT as DEFAULT_LIFECYCLE
from projections.rules.status import Lifecycle, shifted_windows
from projections.store import Store
from projections.sweep import Swept, advance, due, passed_meetings, watermark
from projections.versions import live_version

log = logging.getLogger(__name__)


@dataclass
class Applied:
    """What one `apply` did, for metrics and tests."""

    by_type: dict[str, int] = field(default_factory=dict)
    skipped_offsets: int = 0
    skipped_erased: int = 0
    newest_event_time: datetime | None = None
    fresh: int = 0  # records past the stored offsets
    retries: int = 0  # attempts run again for another worker's sake (locks, deadlocks)

    def count(self, kind: str) -> None:
        self.by_type[kind] = self.by_type.get(kind, 0) + 1


@dataclass(frozen=True)
class Position:
    topic: str
    partition: int
    offset: int
    timestamp: datetime | None = None


class Statistics:
    """Keeps PostgreSQL's planner statistics in step with a fast-growing read model.

    A fresh database grows faster than autovacuum analyses it; with stale statistics the planner
    scans whole tables for one-row look-ups. After every 5,000 records, or a fifth of what the
    tables held at the last analysis, whichever is more, this version's own tables (its
    partitions, `projections.physical`) are analysed, a sampled read-only pass. It runs beside the
    batches, on its own connection, so no batch waits for it; one runs at a time. A replay's
    version is analysed once, when its indexes are built.
    """

    TABLES = ("meetings", "payments", "customers", "stripe_events_applied")

    def __init__(self, engine: AsyncEngine, version: int = 1) -> None:
        self.engine, self.version, self.since, self.baseline = engine, version, 0, 0
        self.running: asyncio.Task | None = None

    def after(self, records: int) -> None:
        if self.engine.dialect.name != "postgresql":
            return
        self.since += records
        if self.since < max(5_000, self.baseline // 5) or (self.running and not self.running.done()):
            return
        self.baseline += self.since
        self.since = 0
        self.running = asyncio.get_running_loop().create_task(self._analyse())

    async def _analyse(self) -> None:
        try:
            async with self.engine.begin() as conn:
                names = (physical.partition_name(name, self.version) for name in self.TABLES)
                await conn.execute(text("ANALYZE " + ", ".join(f'"{n}"' for n in names)))
        except Exception as exc:  # statistics are an optimisation: the next threshold tries again
            log.warning("ANALYZE failed (%s)", type(exc).__name__)

    async def settle(self) -> None:
        """Wait for an analysis in flight (before the engine is disposed)."""
        if self.running:
            await self.running


class _ClaimTooNarrow(Exception):
    """The batch read-modify-wrote keys it had not locked: run it again holding them too."""

    def __init__(self, needed: "claims.Claim") -> None:
        super().__init__(f"{len(needed.keys)} keys needed")
        self.needed = needed


class VersionChanged(Exception):
    """Readers were switched to another version: this projector must not write its own any more."""

    def __init__(self, live: int | None) -> None:
        super().__init__(f"live version is now {live}")
        self.live = live


class Projector:
    """Applies batches to one version. With `follow_live`, refuses to write once it is not live."""

    def __init__(self, engine: AsyncEngine, *, version: int, id_secret: str, follow_live: bool = False,
                 lifecycle: Lifecycle = DEFAULT_LIFECYCLE) -> None:
        self.engine = engine
        self.lifecycle = lifecycle
        self.version = version
        self.id_secret = id_secret
        self.follow_live = follow_live
        self.statistics = Statistics(engine, version)

    async def stored_offsets(self) -> dict[tuple[str, int], int]:
        async with self.engine.connect() as conn:
            return await stored_offsets(conn, self.version)

    async def apply(self, batch: list[tuple[Position, Any]]) -> Applied:
        """Apply decoded records (booking events, payment facts, commands) and their positions.

        Other workers apply other partitions at the same time: the batch first locks the keys
        its records name, and is run again from the start, in a new transaction, when it turns
        out to read more than it locked or meets a deadlock (`projections.claims`).
        """
        claim = claims.named_by(self.version, [p for p, _ in batch], [item for _, item in batch])
        retries = 0
        while True:
            try:
                result = await self._apply_holding(batch, claim)
            except _ClaimTooNarrow as narrow:
                claim, retries = claim.widened(narrow.needed), retries + 1
                continue
            except DBAPIError as exc:
                if not claims.must_retry(exc):
                    raise
                retries += 1
                claim.exclusive = claim.exclusive or claims.lock_table_full(exc)
                log.info("batch met another writer (%s); running it again", claims.state_of(exc))
                await asyncio.sleep(random.uniform(0.01, 0.05) * min(retries, 20))
                continue
            result.retries = retries
            self.statistics.after(result.fresh)
            return result

    async def _apply_holding(self, batch: list[tuple[Position, Any]], claim: claims.Claim) -> Applied:
        """One attempt, in one transaction, holding `claim` from its first statement."""
        result = Applied()
        async with self.engine.begin() as conn:
            await claims.hold(conn, claim)
            if self.follow_live:
                # held until commit: a replay's switch waits for this batch, or this batch sees it
                live = await live_version(conn, lock=True)
                if live != self.version:
                    raise VersionChanged(live)
            stored = await self._offsets_for(conn, {(p.topic, p.partition) for p, _ in batch})
            fresh = []
            for pos, item in batch:
                if pos.offset <= stored.get((pos.topic, pos.partition), -1):
                    result.skipped_offsets += 1
                    continue
                fresh.append((pos, item))
            store, now, needed = Store(conn, self.version, self.id_secret, self.lifecycle), datetime.now(timezone.utc), None
            for part in in_order([item for _, item in fresh if item is not None]):
                view, changes = await run_batch(store, part, now)
                for kind, n in changes.counts.items():
                    result.by_type[kind] = result.by_type.get(kind, 0) + n
                result.skipped_erased += changes.skipped_erased
                read = claims.read_by(self.version, view, changes)
                needed = read if needed is None else needed.widened(read)
            if claim.missing(needed):  # rolls back: what was read without its lock is not written
                raise _ClaimTooNarrow(needed)
            await self._save_offsets(conn, [pos for pos, _ in fresh])  # never moves an offset back
            times = [p.timestamp for p, _ in fresh if p.timestamp]
            result.newest_event_time = max(times) if times else None
            result.fresh = len(fresh)
        return result

    async def sweep(self, now: datetime) -> Swept | None:
        """Apply the passing of time up to `now` (`projections.sweep`); None when nothing was due."""
        async with self.engine.begin() as conn:
            await claims.hold(conn, claims.Claim(self.version, exclusive=True))  # no batch beside it
            if self.follow_live:
                live = await live_version(conn, lock=True)
                if live != self.version:
                    raise VersionChanged(live)
            return await sweep_version(conn, self.version, self.id_secret, now, self.lifecycle)

    async def _offsets_for(self, conn: AsyncConnection, tps: set[tuple[str, int]]) -> dict:
        if not tps:
            return {}
        o = t.projection_offsets.c
        rows = await conn.execute(
            select(o.topic, o.partition, o.offset).where(
                o.version == self.version, in_tuples(conn.dialect.name, (o.topic, o.partition), sorted(tps))
            )
        )
        return {(r.topic, r.partition): r.offset for r in rows}

    async def _save_offsets(self, conn: AsyncConnection, positions: list[Position]) -> None:
        newest: dict[tuple[str, int], Position] = {}
        for p in positions:
            key = (p.topic, p.partition)
            if key not in newest or p.offset > newest[key].offset:
                newest[key] = p
        if newest:
            await upsert(conn, t.projection_offsets, [
                {"version": self.version, "topic": p.topic, "partition": p.partition,
                 "offset": p.offset, "event_time": p.timestamp}
                for p in newest.values()
            ], ["version", "topic", "partition"])


async def stored_offsets(conn: AsyncConnection, version: int) -> dict[tuple[str, int], int]:
    """The last offset applied to `version`, per (topic, partition), as `conn` sees them."""
    o = t.projection_offsets.c
    rows = await conn.execute(select(o.topic, o.partition, o.offset).where(o.version == version))
    return {(r.topic, r.partition): r.offset for r in rows}


def in_order(items: list[Any]) -> list[list[Any]]:
    """A batch cut around each item applied alone (an erasure, `registry.alone`): the items before
    it, the item alone, the items after.

    A batch's rules run in stages (bookings and payments, then commands), so an erasure in the
    same batch as a booking made after it would be applied after that booking and take it too;
    cut so, the person's next booking is a new relationship in one batch as in many. Every part
    runs in the caller's transaction, the later seeing what the earlier wrote.
    """
    parts: list[list[Any]] = [[]]
    for item in items:
        if registry.alone(item):
            parts += [[item], []]
        else:
            parts[-1].append(item)
    return [part for part in parts if part] or [[]]


async def run_batch(store: Store, items: list[Any], now: datetime) -> tuple[View, Changes]:
    """Load, decide (`projections.rules`, in their stages), write: one batch in the caller's transaction."""
    view = await store.load(items, now)
    changes = Changes()
    first, then = rules.stages(items)
    rules.apply_items(view, changes, first)
    candidates = await store.load_for_linking(view, changes, linking.booked_changed(view, changes))
    linking.link(view, changes, candidates)
    rules.apply_items(view, changes, then)
    await store.load_merges(view, changed_experts(view, changes))  # whose figures the changed rows count in
    await store.load_summaries(view, (summaries.touched_by(view, changes) | summaries.touched_after(view, changes)
                                      | changes.profiles) - changes.summaries_removed)
    summaries.update_summaries(view, changes)
    await store.write(view, changes)
    if changes.recount:  # the few customers the deltas cannot settle: from their history, as now written
        for key, (meetings, states) in (await store.history(changes.recount)).items():
            summaries.recounted(view, changes, key, meetings, states)
    await load_profiles_of(store, view, view.summaries.keys() - changes.profiles_removed)
    profiles.onto_summaries(view, changes)
    await store.write_summaries(view, changes)
    await fold_insights(store, view, changes.summaries | changes.summaries_removed)
    return view, changes


def changed_experts(view: View, changes: Changes) -> set[str]:
    """The experts of the meetings and payments a batch changed."""
    out = {k[0] for k in changes.meetings_before}
    for pid, before in changes.payments_before.items():
        for p in (before, view.payments.get(pid)):
            if p is not None and p.expert_id:
                out.add(p.expert_id)
    return out


async def load_profiles_of(store: Store, view: View, keys) -> None:
    """The profiles of these customers and of the customers merged into them (their contacts)."""
    keys = set(keys)
    await store.load_merges(view, {k[0] for k in keys})
    if view.merges:
        keys |= {(k[0], m) for k in list(keys) for m in view.members(k)}
    await store.load_profiles(view, keys)


async def fold_insights(store: Store, view: View, keys: set) -> None:
    """The monthly figures of the customers whose summaries changed (`projections.rules.insights`):
    their histories as now written, their contributions recomputed, the differences added."""
    if not keys:
        return
    inputs = await store.insight_inputs(keys)
    stored = await store.contributions(keys)
    rows, gone, deltas, labels = insights.fold(keys, inputs, stored, view.as_of, view.lifecycle.active_days)
    await store.write_insights(rows, gone, deltas, labels)


async def sweep_version(conn: AsyncConnection, version: int, secret: str, now: datetime,
                        lifecycle: Lifecycle = DEFAULT_LIFECYCLE) -> Swept | None:
    """In the caller's transaction, which holds the whole version: recount the customers whose
    appointments started or ended since the watermark, or whose status may have moved with it
    (`projections.rules.status`), as of `now`, and move the watermark there."""
    since = await watermark(conn, version)
    if now <= since:  # another worker swept this far already
        return None
    windows = shifted_windows(since, now, lifecycle)
    keys = due(await passed_meetings(conn, version, since, now, windows), since, now, windows)
    if conn.dialect.name == "postgresql":  # a worker holding these experts reads them again
        await bump_generations(conn, version, None, {key[0] for key in keys})
    store = Store(conn, version, secret, lifecycle)
    view, changes = View(version, secret, now, now, lifecycle=lifecycle), Changes()
    await store.load_merges(view, {key[0] for key in keys})
    keys = sorted({view.owner(key) for key in keys})  # a merged customer's meetings count for its survivor
    for key, (meetings, states) in (await store.history(keys)).items():
        summaries.recounted(view, changes, key, meetings, states)
    await load_profiles_of(store, view, view.summaries.keys())
    profiles.onto_summaries(view, changes)
    await store.write_summaries(view, changes)
    await fold_insights(store, view, set(keys))
    await advance(conn, version, now)
    return Swept(since, now, len(keys))


