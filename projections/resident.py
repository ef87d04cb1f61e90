"""A version's state taken into memory for a set of records, and what the fold changed written back.

A bulk catch-up (`streams.catchup`) folds a large backlog through the same rules and the same
in-memory store as a replay (`projections.memory`), over the rows the backlog's experts already
have. `load_for` reads, in a fixed number of statements, every row the rules may look up while
applying the records: all the rows of every expert they reach (the experts they name; the
experts of the payments, messages and people they name without one), the payment rows and
aliases of every id they name, the Stripe events and ledger entries they name. `write_changed`
then writes only what the fold changed: for each table, the stale rows deleted by key and the
new ones COPYed, in the caller's transaction. PostgreSQL only: every key list travels as one
array parameter, whatever its length.
"""

from __future__ import annotations

from typing import Any, Iterable

from sqlalchemy import delete, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from projections import tables as t
from projections.db import any_of, bulk_upsert, copy_rows, in_tuples
from projections.meetings import meeting_from_row
from projections.memory import Changed, FoldState
from projections.physical import partition_name
from projections.rules.model import Communication, Note, Payment, Profile, Summary, from_row
from projections.store import wanted

def experts_named(items: Iterable[Any]) -> set[str]:
    return {e for item in items if (e := getattr(item, "expert_id", None))}


async def load_for(conn: AsyncConnection, version: int, secret: str, items: list[Any]) -> FoldState:
    """A `FoldState` holding every row of `version` that applying `items` may read."""
    d, v = conn.dialect.name, version
    w = wanted(items, secret)
    names = set(w.names)
    for item in items:
        if item.type == "booking.created" and getattr(item, "payment", None):
            names |= {i for i in (item.payment.payment_intent_id, item.payment.checkout_session_id) if i}
    experts = experts_named(items)

    async def rows(query) -> list:
        return list(await conn.execute(query))

    # the experts reached without being named: through payments, messages and people
    p, a, m, c = t.payments.c, t.payment_aliases.c, t.meetings.c, t.communications.c
    named_payments: list = []
    if names:
        ordered = sorted(names)
        ids = select(a.payment_id).where(a.version == v, any_of(d, a.alias, ordered)).scalar_subquery()
        named_payments = await rows(select(t.payments).where(
            p.version == v, or_(p.payment_id.in_(ids), any_of(d, p.payment_id, ordered))))
        experts |= {e for r in named_payments for e in (r.expert_id, r.hint_expert) if e}
        for column in (m.payment_intent_id, m.checkout_session_id):
            experts |= {r.expert_id for r in await rows(
                select(m.expert_id).distinct().where(m.version == v, any_of(d, column, ordered)))}
    if w.provider_ids:
        experts |= {r.expert_id for r in await rows(select(c.expert_id).distinct().where(
            c.version == v, any_of(d, c.provider_message_id, sorted(w.provider_ids))))}
    if w.erased:
        hashes = sorted(w.erased)
        for table in (t.customers, t.meetings, t.payments, t.customer_profiles, t.communications):
            x = table.c
            experts |= {r[0] for r in await rows(select(x.expert_id).distinct().where(
                x.version == v, any_of(d, x.email_hash, hashes))) if r[0]}

    # the ledger entries the records name (as the SQL store reads them per batch)
    e, r = t.erasures.c, t.erased_refs.c
    erasures = {x.email_hash: x.erased_at for x in await rows(select(e.email_hash, e.erased_at).where(
        any_of(d, e.email_hash, sorted(w.email_hashes | w.erased))))} if w.email_hashes or w.erased else {}
    refs = {(x.kind, x.ref): x.erased_at for x in await rows(select(r.kind, r.ref, r.erased_at).where(
        in_tuples(d, (r.kind, r.ref), sorted(w.refs))))} if w.refs else {}
    state = FoldState(secret, erasures, refs)
    if w.events:
        s = t.stripe_events_applied.c
        for x in await rows(select(t.stripe_events_applied).where(s.version == v, any_of(d, s.event_id, sorted(w.events)))):
            state.stripe_events.put(x.event_id, (x.event_type, x.applied_at))
    if not experts and not named_payments:
        return state

    who = sorted(experts)

    def of(table) -> Any:
        return select(table).where(table.c.version == v, any_of(d, table.c.expert_id, who))

    for x in await rows(of(t.meetings)):
        state.meetings.put((x.expert_id, x.meeting_id), meeting_from_row(x))
    payments = {x.payment_id: x for x in named_payments}
    for x in await rows(select(t.payments).where(p.version == v, or_(any_of(d, p.expert_id, who),
                                                                      any_of(d, p.hint_expert, who)))):
        payments[x.payment_id] = x
    for pid, x in payments.items():
        state.payments.put(pid, from_row(Payment, x))
    if payments:
        for x in await rows(select(a.alias, a.payment_id).where(a.version == v, any_of(d, a.payment_id, sorted(payments)))):
            state.aliases.put(x.alias, x.payment_id)
    for x in await rows(of(t.customers)):
        state.summaries.put((x.expert_id, x.customer_id), from_row(Summary, x))
    for x in await rows(of(t.notes)):
        state.notes.put(x.note_id, from_row(Note, x))
    for x in await rows(of(t.field_definitions)):
        state.definitions.put(x.expert_id, (x.definitions, x.updated_at))
    for x in await rows(of(t.customer_profiles)):
        state.profiles.put((x.expert_id, x.customer_id), from_row(Profile, x))
    providers = set(w.provider_ids)
    for x in await rows(of(t.communications)):
        state.communications.put(x.communication_id, from_row(Communication, x))
        if x.provider_message_id:
            providers.add(x.provider_message_id)
    if providers:
        er = t.email_reports.c
        for x in await rows(select(t.email_reports).where(er.version == v, any_of(d, er.email_id, sorted(providers)))):
            state.reports.put(x.email_id, x.reports)
    for x in await rows(of(t.customer_insights)):
        state.contributions.put((x.expert_id, x.customer_id), x.contribution)
    for x in await rows(of(t.insight_counts)):
        state.counts.put((x.expert_id, x.month, x.metric, x.dim), (x.value, x.label))
    return state


async def write_changed(conn: AsyncConnection, version: int, changes: Iterable[Changed], state: FoldState) -> dict[str, int]:
    """In the caller's transaction: each table's stale rows deleted, its new rows COPYed, and the
    ledger entries the fold added. Returns the rows written per table."""
    d = conn.dialect.name
    written: dict[str, int] = {}
    for change in changes:
        sink = change.sink
        if change.stale:
            for table in sink.tables:
                columns = tuple(table.c[k] for k in sink.keys)
                where = (any_of(d, columns[0], [k[0] for k in change.stale]) if len(columns) == 1
                         else in_tuples(d, columns, change.stale))
                await conn.execute(delete(table).where(table.c.version == version, where))
        for table, columns, rows in change.rows:
            into = partition_name(table, version) if d == "postgresql" else None
            written[table.name] = await copy_rows(conn, table, columns, rows, into=into)
    await bulk_upsert(conn, t.erasures, [{"email_hash": h, "erased_at": state.erasures.rows[h]}
                                         for h in sorted(state.new_erasures)], ["email_hash"])
    await bulk_upsert(conn, t.erased_refs, [{"kind": k, "ref": r, "erased_at": state.erased_refs.rows[(k, r)]}
                                            for k, r in sorted(state.new_refs)], ["kind", "ref"])
    return written

