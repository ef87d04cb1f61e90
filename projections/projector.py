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
from typing import Any, Iterable

from sqlalchemy import delete, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from customers.events import BookingCreated
from customers.facts import PaymentObserved, StripeEventIgnored
from customers.ids import customer_id as derive_customer_id
from customers.ids import email_hash
from projections import claims
from projections import tables as t
from projections.commands import CustomerErased, NoteAdded, NoteDeleted
from projections.db import in_tuples, upsert
from projections.forgetting import Forgetting, payment_refs, ref_of
from projections.linking import Linking
from projections.meetings import BOOKING_TYPES, MEETING_FIELDS, Meeting, apply_booking, meeting_from_row
from projections import payments as money
from projections.payments import merge, observe
from projections.summary import summarise
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


def _meeting_row(m: Meeting, version: int, secret: str) -> dict[str, Any]:
    row = {name: getattr(m, name) for name in MEETING_FIELDS}  # shallow: asdict deep-copies
    row.update(version=version, start_time=m.start_time, end_time=m.end_time, timezone=m.timezone,
               email_hash=email_hash(secret, m.customer_email) if m.customer_email else None)
    return row


class Statistics:
    """Keeps PostgreSQL's planner statistics in step with a fast-growing read model.

    A fresh database, or a replay filling a new version, grows faster than autovacuum analyses
    it; with stale statistics the planner scans whole tables for one-row look-ups. After every
    5,000 records, or a fifth of what the tables held at the last analysis, whichever is more,
    the read-model tables are analysed (a sampled, read-only pass). The analysis runs beside
    the batches, on its own connection, so no batch waits for it; one runs at a time.
    """

    TABLES = ("meetings", "payments", "customers", "stripe_events_applied")

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine, self.since, self.baseline = engine, 0, 0
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
                await conn.execute(text("ANALYZE " + ", ".join(self.TABLES)))
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

    def __init__(self, engine: AsyncEngine, *, version: int, id_secret: str, follow_live: bool = False) -> None:
        self.engine = engine
        self.version = version
        self.id_secret = id_secret
        self.follow_live = follow_live
        self.statistics = Statistics(engine)

    async def stored_offsets(self) -> dict[tuple[str, int], int]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(t.projection_offsets.c.topic, t.projection_offsets.c.partition,
                       t.projection_offsets.c.offset).where(t.projection_offsets.c.version == self.version)
            )
            return {(r.topic, r.partition): r.offset for r in rows}

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
            work = _Work(conn, self.version, self.id_secret, result)
            await work.run([item for _, item in fresh])
            needed = claims.read_by(self.version, work)
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
            return await sweep_version(conn, self.version, self.id_secret, now)

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


class _Work(Linking, Forgetting):
    """The rows one batch reads and writes, inside one transaction."""

    def __init__(self, conn: AsyncConnection, version: int, secret: str, result: Applied) -> None:
        self.conn, self.version, self.secret, self.result = conn, version, secret, result
        self.meetings: dict[tuple[str, str], Meeting] = {}
        self.payments: dict[str, dict[str, Any]] = {}  # payment_id -> row
        self.dirty_meetings: set[tuple[str, str]] = set()
        self.dirty_payments: set[str] = set()
        self.touched: set[tuple[str, str]] = set()  # (expert, customer) to recompute
        self.erased_refs: set[tuple[str, str]] = set()
        self.merged_away: set[str] = set()  # rows parked under a charge or session id, now merged
        self.aliases: dict[str, set[str]] = {}  # charge / checkout session id -> payment ids
        self.as_of: datetime | None = None  # summaries count as of this; unset: the version's watermark

    async def run(self, items: list[Any]) -> None:
        erased = await self._erased_hashes(items)
        self.erased_refs = await self._erased_refs(items)
        bookings = [e for e in items if isinstance(e, BOOKING_TYPES)]
        facts = await self._first_sightings([e for e in items if isinstance(e, (PaymentObserved, StripeEventIgnored))])
        commands = [e for e in items if isinstance(e, (NoteAdded, NoteDeleted, CustomerErased))]

        await self._load_meetings({(e.expert_id, e.meeting_id) for e in bookings})
        for event in bookings:
            self._apply_booking(event, erased)
        await self._load_payments([f for f in facts if isinstance(f, PaymentObserved)])
        for fact in facts:
            if isinstance(fact, StripeEventIgnored):
                self.result.count("stripe.ignored")
            else:
                self._apply_fact(fact, erased)
        await self._link()
        await self._write()
        for cmd in commands:
            await self._apply_command(cmd)
            self.result.count(cmd.type)
        await self._recompute()

    async def _first_sightings(self, facts: list) -> list:
        """Each Stripe event id is applied once, however often it is delivered."""
        if not facts:
            return []
        seen_here: set[str] = set()
        ids = list({f.stripe_event_id for f in facts})
        s = t.stripe_events_applied.c
        known = {r.event_id for r in await self.conn.execute(
            select(s.event_id).where(s.version == self.version, s.event_id.in_(ids)))}
        fresh = []
        for f in facts:
            if f.stripe_event_id in known or f.stripe_event_id in seen_here:
                self.result.count("stripe.duplicate")
                continue
            seen_here.add(f.stripe_event_id)
            fresh.append(f)
        if fresh:
            now = datetime.now(timezone.utc)
            await upsert(self.conn, t.stripe_events_applied, [
                {"version": self.version, "event_id": f.stripe_event_id, "event_type": f.stripe_event_type,
                 "applied_at": now} for f in fresh], ["version", "event_id"])
        return fresh

    # --- meetings ----------------------------------------------------------------------------

    async def _load_meetings(self, keys: set[tuple[str, str]]) -> None:
        keys = keys - self.meetings.keys()
        if not keys:
            return
        m = t.meetings.c
        rows = await self.conn.execute(
            select(t.meetings).where(m.version == self.version, in_tuples(self.conn.dialect.name, (m.expert_id, m.meeting_id), sorted(keys)))
        )
        for row in rows:
            self.meetings[(row.expert_id, row.meeting_id)] = meeting_from_row(row)

    def _apply_booking(self, event, erased: dict[str, datetime]) -> None:
        key = (event.expert_id, event.meeting_id)
        if ("meeting", ref_of(event.expert_id, event.meeting_id)) in self.erased_refs:
            self.result.skipped_erased += 1
            return
        current = self.meetings.get(key)
        cid = None
        if isinstance(event, BookingCreated):
            if self._is_erased(event.customer.email, event.occurred_at, erased):
                self.result.skipped_erased += 1
                return
            cid = derive_customer_id(self.secret, event.expert_id, event.customer.email)
        updated = apply_booking(current, event, cid)
        self.result.count(event.type)
        if updated == current:
            return
        if current is not None and current.customer_id:
            self.touched.add((current.expert_id, current.customer_id))
        if updated.customer_id:
            self.touched.add((updated.expert_id, updated.customer_id))
        self.meetings[key] = updated
        self.dirty_meetings.add(key)

    # --- payments ----------------------------------------------------------------------------

    async def _load_payments(self, facts: list[PaymentObserved]) -> None:
        """Every payment row any of the facts names, by any of its ids (intent, session, charges)."""
        if not facts:
            return
        names = set().union(*(_named(f) for f in facts))
        a, p = t.payment_aliases.c, t.payments.c
        ids = set(names)
        for chunk in _chunks(sorted(names), 1000):
            ids |= {r.payment_id for r in await self.conn.execute(
                select(a.payment_id).where(a.version == self.version, a.alias.in_(chunk)))}
        for chunk in _chunks(sorted(ids), 1000):
            for row in await self.conn.execute(select(t.payments).where(p.version == self.version,
                                                                        p.payment_id.in_(chunk))):
                self._keep_payment(dict(row._mapping))

    def _keep_payment(self, row: dict) -> None:
        """Hold a payment row in the batch's view, findable by every id Stripe may name it by."""
        self.payments[row["payment_id"]] = row
        for alias in money.ids(row["state"], row["payment_id"]):
            self.aliases.setdefault(alias, set()).add(row["payment_id"])

    def _known_by(self, names: set[str]) -> list[str]:
        found = set().union(*(self.aliases.get(a, ()) for a in names))
        return sorted(pid for pid in found if pid in self.payments)

    def _apply_fact(self, fact: PaymentObserved, erased: dict[str, datetime]) -> None:
        refs = {("payment", ref) for ref in payment_refs(fact)} | {("meeting", ref_of(fact.expert_id, fact.meeting_id))}
        if self._is_erased(fact.customer_email, fact.occurred_at, erased) or refs & self.erased_refs:
            self.result.skipped_erased += 1
            return
        # the fact and every row it names are one payment: join them under the best id they know;
        # a row of another payment intent is never joined (a charge belongs to one intent)
        known = [pid for pid in self._known_by(_named(fact)) if not _other_intent(self.payments[pid], fact)]
        state = observe(None, fact)
        for pid in known:
            state = merge(state, self.payments[pid]["state"])
        target = state.get("payment_intent_id") or state.get("checkout_session_id") or fact.payment_id
        row = self.payments.get(target) or {"version": self.version, "payment_id": target, "state": {}}
        for pid in known:
            if pid == target:
                continue
            other = self.payments.pop(pid)  # parked under a charge or session id, now joined
            self.merged_away.add(pid)
            self.dirty_payments.discard(pid)
            if other.get("expert_id") and other.get("customer_id"):
                self.touched.add((other["expert_id"], other["customer_id"]))
        row = {**row, "state": state}
        _copy_hints(row, state)
        self._keep_payment(row)
        self.merged_away.discard(target)
        self.dirty_payments.add(target)
        if row.get("expert_id") and row.get("customer_id"):
            self.touched.add((row["expert_id"], row["customer_id"]))
        self.result.count(fact.stripe_event_type)

    # --- writes ------------------------------------------------------------------------------

    async def _write(self) -> None:
        if self.dirty_meetings:
            await upsert(self.conn, t.meetings, [_meeting_row(self.meetings[k], self.version, self.secret)
                                                 for k in sorted(self.dirty_meetings)],
                         ["version", "expert_id", "meeting_id"])
        gone = sorted(self.merged_away)
        if gone:
            await self.conn.execute(delete(t.payments).where(t.payments.c.version == self.version,
                                                             t.payments.c.payment_id.in_(gone)))
        rows = [_payment_row(self.payments[pid], self.secret) for pid in sorted(self.dirty_payments) if pid in self.payments]
        if rows:
            await upsert(self.conn, t.payments, rows, ["version", "payment_id"])
            aliases = {(alias, r["payment_id"]) for r in rows for alias in money.ids(r["state"], r["payment_id"])}
            await upsert(self.conn, t.payment_aliases, [
                {"version": self.version, "alias": alias, "payment_id": pid} for alias, pid in sorted(aliases)],
                ["version", "alias"])

    async def _recompute(self) -> None:
        if not self.touched:
            return
        m, p = t.meetings.c, t.payments.c
        keys = sorted(self.touched)
        meetings: dict[tuple[str, str], list[Meeting]] = {k: [] for k in keys}
        states: dict[tuple[str, str], list[dict]] = {k: [] for k in keys}
        for chunk in _chunks(keys, 500):
            for row in await self.conn.execute(select(t.meetings).where(
                    m.version == self.version, in_tuples(self.conn.dialect.name, (m.expert_id, m.customer_id), chunk))):
                meetings[(row.expert_id, row.customer_id)].append(meeting_from_row(row))
            for row in await self.conn.execute(select(p.expert_id, p.customer_id, p.state).where(
                    p.version == self.version, in_tuples(self.conn.dialect.name, (p.expert_id, p.customer_id), chunk))):
                states[(row.expert_id, row.customer_id)].append(row.state)
        as_of = self.as_of or await watermark(self.conn, self.version)
        upserts, removed = [], []
        for key in keys:
            summary = summarise(meetings[key], states[key], as_of)
            if summary is None:
                removed.append(key)
            else:
                upserts.append({"version": self.version, "expert_id": key[0], "customer_id": key[1],
                                "email_hash": email_hash(self.secret, summary["email"]), **summary})
        if upserts:
            await upsert(self.conn, t.customers, upserts, ["version", "expert_id", "customer_id"])
        c = t.customers.c
        for chunk in _chunks(removed, 500):
            await self.conn.execute(delete(t.customers).where(
                c.version == self.version, in_tuples(self.conn.dialect.name, (c.expert_id, c.customer_id), chunk)))


async def sweep_version(conn: AsyncConnection, version: int, secret: str, now: datetime) -> Swept | None:
    """In the caller's transaction, which holds the whole version: recount the customers whose
    appointments started or ended since the watermark, as of `now`, and move the watermark there."""
    since = await watermark(conn, version)
    if now <= since:  # another worker swept this far already
        return None
    keys = due(await passed_meetings(conn, version, since, now), since, now)
    work = _Work(conn, version, secret, Applied())
    work.as_of, work.touched = now, set(keys)
    await work._recompute()
    await advance(conn, version, now)
    return Swept(since, now, len(keys))


def _other_intent(row: dict, fact: PaymentObserved) -> bool:
    theirs = (row.get("state") or {}).get("payment_intent_id") or row.get("payment_intent_id")
    return bool(fact.payment_intent_id and theirs and theirs != fact.payment_intent_id)


def _named(fact: PaymentObserved) -> set[str]:
    """Every id of the payment this fact names."""
    return {fact.payment_id} | fact.charge_ids() | {v for v in (fact.payment_intent_id, fact.checkout_session_id) if v}


def _copy_hints(row: dict, state: dict) -> None:
    """The state's ids and correlation hints into the row's indexed columns."""
    row["payment_intent_id"] = state.get("payment_intent_id")
    row["checkout_session_id"] = state.get("checkout_session_id")
    row["charge_id"] = money.money_charge(state)
    row["hint_expert"] = money.hint(state, "expert_id")
    row["hint_meeting"] = money.hint(state, "meeting_id")
    row["hint_email"] = money.hint(state, "customer_email")
    start = money.hint(state, "booked_start")
    row["hint_start"] = datetime.fromisoformat(start) if start else None
    created = state.get("created_at")
    row["created_at"] = datetime.fromisoformat(created) if created else None
    row["undecided"] = money.undecided(state)


def _payment_row(row: dict, secret: str) -> dict:
    out = {c.name: row.get(c.name) for c in t.payments.columns}
    out["email_hash"] = email_hash(secret, row["hint_email"]) if row.get("hint_email") else None
    return out


def _chunks(items: list, size: int) -> Iterable[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]
