"""The store shell: loads what a batch's rules need, writes what they changed.

Every load is a fixed number of statements per batch, whatever its size (one array parameter
per key column on PostgreSQL), and every write is one bulk statement per table
(`projections.db.bulk_upsert`). Everything happens in the caller's transaction; nothing here
decides anything (`projections.rules` does).
"""

from __future__ import annotations

from datetime import datetime
from operator import attrgetter
from typing import Any, Iterable

from sqlalchemy import delete, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from customers.ids import email_hash
from projections import payments as money
from projections import tables as t
from projections.db import add_counts, any_of, bulk_upsert, in_tuples
from projections.meetings import MEETING_FIELDS, Meeting, meeting_from_row
from customers.commands import canonical
from projections.rules.insights import Money, money_of
from projections.rules.status import DEFAULT as DEFAULT_LIFECYCLE
from projections.rules.status import Lifecycle
from projections.rules.model import (COMMUNICATION_FIELDS, MERGE_FIELDS, PAYMENT_FIELDS, SUMMARY_FIELDS, Changes,
                                     Communication, Erasure, Key, Merge, Note, Payment, Profile, Summary, View,
                                     from_row)
from projections.rules.registry import Wanted, wanted  # noqa: F401  (the loads' keys, by item type)
from projections.sweep import watermark


class Store:
    def __init__(self, conn: AsyncConnection, version: int, secret: str, lifecycle: Lifecycle = DEFAULT_LIFECYCLE) -> None:
        self.conn, self.version, self.secret, self.lifecycle = conn, version, secret, lifecycle
        self.dialect = conn.dialect.name

    async def _rows(self, query) -> list:
        return list(await self.conn.execute(query))

    # --- loads -------------------------------------------------------------------------------

    async def load(self, items: list[Any], now: datetime) -> View:
        """The stored state of every key the items name."""
        view = View(self.version, self.secret, await watermark(self.conn, self.version), now, lifecycle=self.lifecycle)
        w = wanted(items, self.secret)
        d, v = self.dialect, self.version
        if w.email_hashes:
            e = t.erasures.c
            view.erased_emails = {r.email_hash: r.erased_at for r in await self._rows(
                select(e.email_hash, e.erased_at).where(any_of(d, e.email_hash, sorted(w.email_hashes))))}
        if w.refs:
            r = t.erased_refs.c
            view.erased_refs = {(row.kind, row.ref): row.erased_at for row in await self._rows(
                select(r.kind, r.ref, r.erased_at).where(in_tuples(d, (r.kind, r.ref), sorted(w.refs))))}
        if w.events:
            s = t.stripe_events_applied.c
            view.stripe_seen = {row.event_id for row in await self._rows(
                select(s.event_id).where(s.version == v, any_of(d, s.event_id, sorted(w.events))))}
        if w.meetings:
            await self.load_meetings(view, w.meetings)
        if w.names:
            a, p = t.payment_aliases.c, t.payments.c
            ids = select(a.payment_id).where(a.version == v, any_of(d, a.alias, sorted(w.names)))
            for row in await self._rows(select(t.payments).where(
                    p.version == v, or_(p.payment_id.in_(ids.scalar_subquery()), any_of(d, p.payment_id, sorted(w.names))))):
                view.keep_payment(from_row(Payment, row))
        if w.notes:
            n = t.notes.c
            for row in await self._rows(select(t.notes).where(n.version == v, any_of(d, n.note_id, sorted(w.notes)))):
                view.notes[row.note_id] = from_row(Note, row)
        for h in sorted(w.erased):
            view.erasures[h] = await self._erasure(h)
        await self.load_merges(view, w.experts | {k[0] for x in view.erasures.values() for k in x.customers})
        if w.summaries:
            await self.load_summaries(view, w.summaries)
        # a command on a merged customer changes its survivor's profile, and so does an erasure of one
        gone = {view.owner(k) for x in view.erasures.values() for k in x.customers}
        if w.profiles or gone:
            await self.load_profiles(view, w.profiles | {view.owner(k) for k in w.profiles} | gone)
        if w.messages or w.provider_ids:
            await self._load_communications(view, w.messages, w.provider_ids)
        return view

    async def load_merges(self, view: View, experts: Iterable[str]) -> None:
        """The merges of these experts' customers (`projections.rules.merges`), once per view."""
        wanted_now = sorted(set(experts) - view.merges_of - {None})
        if not wanted_now:
            return
        view.merges_of |= set(wanted_now)
        c = t.customer_merges.c
        for row in await self._rows(select(t.customer_merges).where(
                c.version == self.version, any_of(self.dialect, c.expert_id, wanted_now))):
            view.merges[(row.expert_id, row.customer_id)] = from_row(Merge, row)

    async def _groups(self, keys: list[Key]) -> dict[Key, Key | None]:
        """For each of the customers `keys` and those merged into them: whose figures their rows
        count in (None: a customer merged into another that is not asked for)."""
        out: dict[Key, Key | None] = {k: k for k in keys}
        if not keys:
            return out
        asked, c, d = set(keys), t.customer_merges.c, self.dialect
        for row in await self._rows(select(c.expert_id, c.customer_id, c.survivor_id).where(
                c.version == self.version, or_(in_tuples(d, (c.expert_id, c.survivor_id), keys),
                                               in_tuples(d, (c.expert_id, c.customer_id), keys)))):
            member, survivor = (row.expert_id, row.customer_id), (row.expert_id, row.survivor_id)
            out[member] = survivor if survivor in asked else None
        return out

    async def _load_communications(self, view: View, ids: set[str], provider_ids: set[str]) -> None:
        """Messages by id and by provider email id, and the delivery reports of those email ids."""
        d, v, c, r = self.dialect, self.version, t.communications.c, t.email_reports.c
        conds = ([any_of(d, c.communication_id, sorted(ids))] if ids else []) + \
            ([any_of(d, c.provider_message_id, sorted(provider_ids))] if provider_ids else [])
        for row in await self._rows(select(t.communications).where(c.version == v, or_(*conds))):
            view.communications.setdefault(row.communication_id, from_row(Communication, row))
        if provider_ids:
            for row in await self._rows(select(t.email_reports).where(
                    r.version == v, any_of(d, r.email_id, sorted(provider_ids)))):
                view.reports.setdefault(row.email_id, [list(x) for x in row.reports])

    async def _by_keys(self, table, second: str, keys: Iterable[Key], into: dict, make) -> None:
        """Rows of `table` keyed (expert_id, `second`) that `into` lacks, made into values by `make`."""
        keys = set(keys) - into.keys()
        if not keys:
            return
        c = table.c
        for row in await self._rows(select(table).where(
                c.version == self.version, in_tuples(self.dialect, (c.expert_id, c[second]), sorted(keys)))):
            into[(row.expert_id, row._mapping[second])] = make(row)

    async def load_profiles(self, view: View, keys: Iterable[Key]) -> None:
        await self._by_keys(t.customer_profiles, "customer_id", keys, view.profiles, lambda r: from_row(Profile, r))

    async def load_meetings(self, view: View, keys: Iterable[Key]) -> None:
        await self._by_keys(t.meetings, "meeting_id", keys, view.meetings, meeting_from_row)

    async def _erasure(self, h: str) -> Erasure:
        """What this version holds of the person with email hash `h`."""
        d, v = self.dialect, self.version
        c, m, p, a, n = t.customers.c, t.meetings.c, t.payments.c, t.payment_aliases.c, t.notes.c
        found = Erasure(h)
        found.customers = [(r.expert_id, r.customer_id) for r in await self._rows(
            select(c.expert_id, c.customer_id).where(c.version == v, c.email_hash == h))]
        own = await self._rows(select(m.expert_id, m.meeting_id, m.customer_id).where(m.version == v, m.email_hash == h))
        found.meetings = [(r.expert_id, r.meeting_id) for r in own]
        found.customers = sorted(set(found.customers) | {(r.expert_id, r.customer_id) for r in own if r.customer_id})
        owners = found.customers or [("", "")]
        ids = [r.payment_id for r in await self._rows(select(p.payment_id).where(
            p.version == v, or_(p.email_hash == h, in_tuples(d, (p.expert_id, p.customer_id), owners))))]
        found.payments = {pid: {pid} for pid in ids}
        if ids:
            for r in await self._rows(select(a.alias, a.payment_id).where(a.version == v, any_of(d, a.payment_id, ids))):
                found.payments[r.payment_id].add(r.alias)
            for r in await self._rows(select(p.payment_id, p.state).where(p.version == v, any_of(d, p.payment_id, ids))):
                found.payments[r.payment_id] |= money.ids(r.state or {}, r.payment_id)
        pr = t.customer_profiles.c
        found.profiles = [(r.expert_id, r.customer_id) for r in await self._rows(
            select(pr.expert_id, pr.customer_id).where(pr.version == v, pr.email_hash == h))]
        cm = t.communications.c
        found.communications = [from_row(Communication, r) for r in await self._rows(
            select(t.communications).where(cm.version == v, cm.email_hash == h))]
        if found.customers:
            found.notes = [from_row(Note, r) for r in await self._rows(select(t.notes).where(
                               n.version == v, in_tuples(d, (n.expert_id, n.customer_id), found.customers)))]
        return found

    async def load_for_linking(self, view: View, changes: Changes, booked: list[Meeting]) -> set[str]:
        """The payments to tie: those the batch changed, and those its booked meetings may own;
        and, into the view, every booked meeting any of them may belong to."""
        candidates = {pid for pid in changes.payments if pid in view.payments}
        d, v, p = self.dialect, self.version, t.payments.c
        if booked:
            keys = [(m.expert_id, m.meeting_id) for m in booked]
            conds = [in_tuples(d, (p.expert_id, p.meeting_id), keys), in_tuples(d, (p.hint_expert, p.hint_meeting), keys)]
            if pis := [m.payment_intent_id for m in booked if m.payment_intent_id]:
                conds.append(any_of(d, p.payment_id, pis))
            if css := [m.checkout_session_id for m in booked if m.checkout_session_id]:
                conds.append(any_of(d, p.checkout_session_id, css))
            if triples := [(m.expert_id, m.customer_email, m.booked_start) for m in booked if m.customer_email]:
                conds.append(in_tuples(d, (p.hint_expert, p.hint_email, p.hint_start), triples))
            for cond in conds:  # one statement per kind of evidence, each served by its own index
                for r in await self._rows(select(t.payments).where(p.version == v, cond)):
                    if r.payment_id in changes.payments_removed:  # joined into another in this batch
                        continue
                    if r.payment_id not in view.payments:
                        view.keep_payment(from_row(Payment, r))
                    candidates.add(r.payment_id)
        await self._meetings_for([view.payments[pid] for pid in candidates], view)
        return candidates

    async def _meetings_for(self, rows: list[Payment], view: View) -> None:
        m, d = t.meetings.c, self.dialect
        keys = sorted({(r.hint_expert, r.hint_meeting) for r in rows if r.hint_expert and r.hint_meeting})
        triples = sorted({(r.hint_expert, r.hint_email, r.hint_start) for r in rows
                          if r.hint_expert and r.hint_email and r.hint_start})
        pis = sorted({r.payment_intent_id for r in rows if r.payment_intent_id})
        css = sorted({r.checkout_session_id for r in rows if r.checkout_session_id})
        conds = []
        if keys:
            conds.append(in_tuples(d, (m.expert_id, m.meeting_id), keys))
        if triples:
            conds.append(in_tuples(d, (m.expert_id, m.customer_email, m.booked_start), triples))
        if pis:
            conds.append(any_of(d, m.payment_intent_id, pis))
        if css:
            conds.append(any_of(d, m.checkout_session_id, css))
        for cond in conds:
            for r in await self._rows(select(t.meetings).where(
                    m.version == self.version, m.created_version.is_not(None), cond)):
                if (r.expert_id, r.meeting_id) in view.meetings:
                    continue  # the batch's own view of a meeting wins over the table's
                view.meetings[(r.expert_id, r.meeting_id)] = meeting_from_row(r)

    async def load_summaries(self, view: View, keys: Iterable[Key]) -> None:
        keys = sorted(set(keys) - view.summaries.keys())
        if not keys:
            return
        c = t.customers.c
        for row in await self._rows(select(t.customers).where(
                c.version == self.version, in_tuples(self.dialect, (c.expert_id, c.customer_id), keys))):
            view.summaries[(row.expert_id, row.customer_id)] = from_row(Summary, row)

    async def history(self, keys: Iterable[Key]) -> dict[Key, tuple[list[Meeting], list[dict]]]:
        """Every meeting and payment state of these customers, as this transaction sees them."""
        return {k: (meetings, [state for state, _mid in payments])
                for k, (meetings, payments) in (await self._histories(keys)).items()}

    # --- writes ------------------------------------------------------------------------------

    async def write(self, view: View, changes: Changes) -> None:
        """Every row the changes name, one bulk statement per table; deletions first."""
        v, d = self.version, self.dialect
        await self._delete(t.meetings, ("expert_id", "meeting_id"), changes.meetings_removed)
        await self._delete(t.payments, ("payment_id",), {(pid,) for pid in changes.payments_removed})
        if changes.aliases_removed:
            a = t.payment_aliases.c
            await self.conn.execute(delete(t.payment_aliases).where(
                a.version == v, any_of(d, a.payment_id, sorted(changes.aliases_removed))))
        await self._delete(t.notes, ("note_id",), {(i,) for i in changes.notes_removed})
        await bulk_upsert(self.conn, t.meetings, [meeting_row(view.meetings[k], v, self.secret)
                                                  for k in sorted(changes.meetings) if k in view.meetings],
                          ["version", "expert_id", "meeting_id"])
        payments = [view.payments[pid] for pid in sorted(changes.payments) if pid in view.payments]
        await bulk_upsert(self.conn, t.payments, [payment_row(p, v, self.secret) for p in payments], ["version", "payment_id"])
        aliases = sorted({(alias, p.payment_id) for p in payments for alias in money.ids(p.state, p.payment_id)})
        await bulk_upsert(self.conn, t.payment_aliases,
                          [{"version": v, "alias": alias, "payment_id": pid} for alias, pid in aliases],
                          ["version", "alias"])
        await bulk_upsert(self.conn, t.notes, [note_row(view.notes[i], v) for i in sorted(changes.notes)
                                               if i in view.notes], ["version", "note_id"])
        await self._write_profiles(view, changes)
        await self._delete(t.customer_merges, ("expert_id", "customer_id"), changes.merges_removed)
        await bulk_upsert(self.conn, t.customer_merges, [merge_row(view.merges[k], v) for k in sorted(changes.merges)
                                                         if k in view.merges], ["version", "expert_id", "customer_id"])
        await bulk_upsert(self.conn, t.stripe_events_applied, [
            {"version": v, "event_id": i, "event_type": kind, "applied_at": view.now}
            for i, kind in sorted(changes.stripe_events.items())], ["version", "event_id"], update=False)
        await bulk_upsert(self.conn, t.erasures, [{"email_hash": h, "erased_at": at}
                                                  for h, at in sorted(changes.erasures.items())], ["email_hash"])
        await bulk_upsert(self.conn, t.erased_refs, [{"kind": k, "ref": r, "erased_at": at}
                                                     for (k, r), at in sorted(changes.erased_refs.items())],
                          ["kind", "ref"])

    async def _write_profiles(self, view: View, changes: Changes) -> None:
        """Field definitions and profiles, and the filters' look-up rows derived from each profile."""
        v = self.version
        await bulk_upsert(self.conn, t.field_definitions, [
            {"version": v, "expert_id": e, "definitions": view.definitions[e], "updated_at": view.definitions_at[e]}
            for e in sorted(changes.definitions)], ["version", "expert_id"])
        await self._delete(t.communications, ("communication_id",), {(i,) for i in changes.communications_removed})
        await self._delete(t.email_reports, ("email_id",), {(i,) for i in changes.reports_removed})
        await bulk_upsert(self.conn, t.communications, [
            communication_row(view.communications[i], v) for i in sorted(changes.communications)
            if i in view.communications], ["version", "communication_id"])
        await bulk_upsert(self.conn, t.email_reports, [
            {"version": v, "email_id": i, "reports": view.reports[i]}
            for i in sorted(changes.reports) if i in view.reports], ["version", "email_id"])
        touched = changes.profiles | changes.profiles_removed
        if not touched:
            return
        await self._delete(t.customer_profiles, ("expert_id", "customer_id"), changes.profiles_removed)
        await self._delete(t.customer_tags, ("expert_id", "customer_id"), touched)
        await self._delete(t.customer_field_values, ("expert_id", "customer_id"), touched)
        rows = [profile_rows(view.profiles[k], v) for k in sorted(changes.profiles) if k in view.profiles]
        await bulk_upsert(self.conn, t.customer_profiles, [row for row, _, _ in rows],
                          ["version", "expert_id", "customer_id"])
        await bulk_upsert(self.conn, t.customer_tags, [tag for _, tags, _ in rows for tag in tags],
                          ["version", "expert_id", "tag", "customer_id"], update=False)
        await bulk_upsert(self.conn, t.customer_field_values, [value for _, _, values in rows for value in values],
                          ["version", "expert_id", "key", "value", "customer_id"], update=False)

    async def insight_inputs(self, keys: Iterable[Key]) -> dict[Key, tuple[list[Meeting], list[tuple[Money, str | None]]]]:
        """`_histories` as `insights.contribution` takes them: each payment's money by month."""
        return {k: (meetings, [(money_of(state), meeting_id) for state, meeting_id in payments])
                for k, (meetings, payments) in (await self._histories(keys)).items()}

    async def _histories(self, keys: Iterable[Key]) -> dict[Key, tuple[list[Meeting], list[tuple[dict, str | None]]]]:
        """Every meeting, and every payment (state, meeting id), of these customers as now written:
        a customer's own and those of the customers merged into them; none for a customer merged
        into another (counted there)."""
        keys = sorted(set(keys))
        found: dict[Key, tuple[list[Meeting], list]] = {k: ([], []) for k in keys}
        if not keys:
            return found
        owner = await self._groups(keys)
        rows_of = sorted(k for k, o in owner.items() if o is not None)
        m, p, d = t.meetings.c, t.payments.c, self.dialect
        for row in await self._rows(select(t.meetings).where(
                m.version == self.version, in_tuples(d, (m.expert_id, m.customer_id), rows_of))):
            found[owner[(row.expert_id, row.customer_id)]][0].append(meeting_from_row(row))
        for row in await self._rows(select(p.expert_id, p.customer_id, p.state, p.meeting_id).where(
                p.version == self.version, in_tuples(d, (p.expert_id, p.customer_id), rows_of))):
            found[owner[(row.expert_id, row.customer_id)]][1].append((row.state, row.meeting_id))
        return found

    async def contributions(self, keys: Iterable[Key]) -> dict[Key, list]:
        """The stored insight contributions of these customers (absent: none yet)."""
        keys = sorted(set(keys))
        if not keys:
            return {}
        c = t.customer_insights.c
        return {(r.expert_id, r.customer_id): r.contribution for r in await self._rows(
            select(c.expert_id, c.customer_id, c.contribution).where(
                c.version == self.version, in_tuples(self.dialect, (c.expert_id, c.customer_id), keys)))}

    async def write_insights(self, contributions: dict[Key, list], gone: set[Key],
                             deltas: dict[tuple[str, str, str, str], int], labels: dict[tuple[str, str], str]) -> None:
        """Each customer's new contribution, and the differences added to their expert's monthly sums."""
        v = self.version
        await self._delete(t.customer_insights, ("expert_id", "customer_id"), gone)
        await bulk_upsert(self.conn, t.customer_insights, [
            {"version": v, "expert_id": e, "customer_id": c, "contribution": rows}
            for (e, c), rows in sorted(contributions.items())], ["version", "expert_id", "customer_id"])
        if deltas:
            await add_counts(self.conn, t.insight_counts, [
                {"version": v, "expert_id": e, "month": m, "metric": k, "dim": d, "value": value,
                 "label": labels.get((e, d)) if k == "svc_appts" else None}
                for (e, m, k, d), value in sorted(deltas.items())], ["version", "expert_id", "month", "metric", "dim"])

    async def write_summaries(self, view: View, changes: Changes) -> None:
        await self._delete(t.customers, ("expert_id", "customer_id"), changes.summaries_removed)
        await bulk_upsert(self.conn, t.customers, [summary_row(k, view.summaries[k], self.version, self.secret)
                                                   for k in sorted(changes.summaries) if k in view.summaries],
                          ["version", "expert_id", "customer_id"])

    async def _delete(self, table, columns: tuple[str, ...], keys: set[tuple]) -> None:
        if not keys:
            return
        cols = tuple(table.c[c] for c in columns)
        where = (any_of(self.dialect, cols[0], sorted(k[0] for k in keys)) if len(cols) == 1
                 else in_tuples(self.dialect, cols, sorted(keys)))
        await self.conn.execute(delete(table).where(table.c.version == self.version, where))


# --- rows: the same for the SQL store's upserts and a fold's COPY ----------------------------------

_MEETING_VALUES = attrgetter(*MEETING_FIELDS)
_PAYMENT_VALUES = attrgetter(*PAYMENT_FIELDS)
_SUMMARY_VALUES = attrgetter(*SUMMARY_FIELDS)
_MERGE_VALUES = attrgetter(*MERGE_FIELDS)

# the columns of each row, in the order of the `*_values` tuples (a fold COPYs the tuples as they are)
MEETING_COLUMNS = ("version", "email_hash", "start_time", "end_time", "timezone", *MEETING_FIELDS)
PAYMENT_COLUMNS = ("version", "email_hash", *PAYMENT_FIELDS)
SUMMARY_COLUMNS = ("version", "expert_id", "customer_id", "email_hash", "search_text", "spend_sort", *SUMMARY_FIELDS)


def meeting_values(m: Meeting, version: int, secret: str) -> tuple:
    return (version, email_hash(secret, m.customer_email) if m.customer_email else None, m.start_time, m.end_time,
            m.timezone, *_MEETING_VALUES(m))


def payment_values(p: Payment, version: int, secret: str) -> tuple:
    return (version, email_hash(secret, p.hint_email) if p.hint_email else None, *_PAYMENT_VALUES(p))


def summary_values(key: Key, s: Summary, version: int, secret: str) -> tuple:
    return (version, key[0], key[1], email_hash(secret, s.email), s.search_text, s.spend_sort, *_SUMMARY_VALUES(s))


def meeting_row(m: Meeting, version: int, secret: str) -> dict[str, Any]:
    return dict(zip(MEETING_COLUMNS, meeting_values(m, version, secret)))


def payment_row(p: Payment, version: int, secret: str) -> dict[str, Any]:
    return dict(zip(PAYMENT_COLUMNS, payment_values(p, version, secret)))


def merge_values(m: Merge, version: int) -> tuple:
    return (version, *_MERGE_VALUES(m))


def merge_row(m: Merge, version: int) -> dict[str, Any]:
    return dict(zip(("version", *MERGE_FIELDS), merge_values(m, version)))


def summary_row(key: Key, s: Summary, version: int, secret: str) -> dict[str, Any]:
    return dict(zip(SUMMARY_COLUMNS, summary_values(key, s, version, secret)))


def note_row(n: Note, version: int) -> dict[str, Any]:
    return {"version": version, "note_id": n.note_id, "expert_id": n.expert_id, "customer_id": n.customer_id,
            "body": n.body, "created_at": n.created_at, "deleted": n.deleted}


def profile_rows(p: Profile, version: int) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """A profile's row, and the filters' look-up rows derived from it (tags, field values)."""
    row = {"version": version, "expert_id": p.expert_id, "customer_id": p.customer_id, "email_hash": p.email_hash,
           "tags": p.tags, "fields": p.fields, "archived": p.archived, "last_contact_at": p.last_contact_at,
           "updated_at": p.updated_at}
    tags = [{"version": version, "expert_id": p.expert_id, "tag": tag, "customer_id": p.customer_id} for tag in p.tags]
    values = [{"version": version, "expert_id": p.expert_id, "key": key, "value": canonical(value),
               "customer_id": p.customer_id} for key, value in p.fields.items()]
    return row, tags, values


def communication_row(c: Communication, version: int) -> dict[str, Any]:
    return {"version": version, **{name: getattr(c, name) for name in COMMUNICATION_FIELDS}}
