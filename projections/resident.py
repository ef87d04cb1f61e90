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

from collections import defaultdict
import time
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Iterable

import msgspec

from sqlalchemy import JSON, delete, or_, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from projections import payments as money
from projections import tables as t
from projections.db import _pg_array_type, add_counts, any_of, bulk_upsert, copy_rows, in_tuples
from projections.meetings import Meeting
from projections.memory import Changed, FoldState, compact_meeting, compact_summary, packed, state_of
from projections.physical import partition_name
from projections.rules.model import Communication, Merge, Note, Payment, Profile, Summary, from_row
from projections.store import wanted

def experts_named(items: Iterable[Any]) -> set[str]:
    return {e for item in items if (e := getattr(item, "expert_id", None))}


@dataclass
class Held:
    """What a state kept from batch to batch holds: the experts loaded in full, and the keys it
    removed (per table), which the tables may still hold until its writes commit."""

    experts: set[str] = field(default_factory=set)
    gone: dict[str, set] = field(default_factory=lambda: defaultdict(set))
    loaded: set[str] = field(default_factory=set)  # the scopes read since the caller last emptied it

    def forget(self, changes: Iterable[Changed]) -> None:
        for change in changes:
            self.gone[change.sink.name].update(change.gone)


async def load_for(conn: AsyncConnection, version: int, secret: str, items: list[Any],
                   state: FoldState | None = None, held: Held | None = None) -> FoldState:
    """A `FoldState` holding every row of `version` that applying `items` may read.

    Given the `state` of earlier records and what it `held`, only what it lacks is added: a row
    it holds may be newer than the table's, and a row it removed may still be in the table, its
    writes not committed yet. `held` grows by the experts loaded."""
    d, v = conn.dialect.name, version
    held = held or Held()
    w = wanted(items, secret)
    names = w.names | w.linkable
    experts = experts_named(items)
    if state is not None:  # what the state holds already needs no look-up
        names = {n for n in names if n not in state.aliases and n not in state.payments}

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
    state = state or FoldState(secret)
    e, r = t.erasures.c, t.erased_refs.c
    if hashes := sorted((w.email_hashes | w.erased) - state.erasures.rows.keys()):
        for x in await rows(select(e.email_hash, e.erased_at).where(any_of(d, e.email_hash, hashes))):
            state.erasures.put(x.email_hash, x.erased_at)
    if wanted_refs := sorted(w.refs - state.erased_refs.rows.keys()):
        for x in await rows(select(r.kind, r.ref, r.erased_at).where(in_tuples(d, (r.kind, r.ref), wanted_refs))):
            state.erased_refs.put((x.kind, x.ref), x.erased_at)
    if events := sorted(w.events - state.stripe_events.rows.keys()):
        s = t.stripe_events_applied.c
        for x in await rows(select(t.stripe_events_applied).where(s.version == v, any_of(d, s.event_id, events))):
            state.stripe_events.put(x.event_id, (x.event_type, x.applied_at))
    named_payments = [x for x in named_payments if x.payment_id not in state.payments]
    experts -= held.experts
    added: list[tuple[str, Any]] = []  # taken back if the reading fails half-way (an outage)

    def _add(name: str, key: Any, value: Any) -> None:
        table = getattr(state, name)
        if key not in table and key not in held.gone.get(name, ()):
            table.put(key, value)
            added.append((name, key))

    try:
        await _read_rows(conn, version, state, held, w, experts, named_payments, _add)
    except BaseException:
        for name, key in reversed(added):
            getattr(state, name).drop([key])
        raise
    held.experts |= experts  # only once all their rows are in: a reading that failed is done again
    held.loaded |= experts
    # every id looked up in this snapshot, found or not: a payment's scope is every id it is known by,
    # and one that names no row yet may still have a generation (a payment merged away, another writer's)
    held.loaded |= {"p:" + n for n in names}
    return state


async def _read_rows(conn: AsyncConnection, version: int, state: FoldState, held: Held, w: Any,
                     experts: set[str], named_payments: list, _add: Callable[[str, Any, Any], None]) -> None:
    """The rows of `experts` and the payments, aliases and reports `w` names, into `state`."""
    v = version
    who = sorted(experts)
    raw = await _raw(conn)

    async def of(table, cls: type | None = None, columns: tuple[str, ...] = (), where: str = "expert_id = ANY($2)",
                 arg: Any = who, chunk: int = LOAD_CHUNK, held_as_json: bool = False) -> list:
        """The rows of `table` for `who` (or `where`), as `cls` values made of the columns after
        `columns` (or tuples of `columns`), read without the ORM's row machinery: this is the
        catch-up's longest read. JSON columns are decoded, or kept as their JSON with `held_as_json`
        (as the state holds them: `projections.memory.as_json`)."""
        names = columns + (tuple(f.name for f in fields(cls)) if cls else ())
        json_at = [i for i, n in enumerate(names) if isinstance(table.c[n].type, JSON)]
        select_list = ", ".join(f'"{n}"::text' if i in json_at else f'"{n}"' for i, n in enumerate(names))
        statement = await raw.prepare(f"SELECT {select_list} FROM {table.name} WHERE version = $1 AND {where}")
        out = []
        # a few experts at a time: the driver's records of a first batch that reaches every expert
        # would otherwise be held all at once, beside the rows they become (the worker's peak memory)
        for start in range(0, max(len(arg), 1), chunk):
            for record in await statement.fetch(v, arg[start:start + chunk]):
                values = list(record)
                for i in json_at:
                    if values[i] is not None:
                        values[i] = msgspec.Raw(values[i]) if held_as_json else _json(values[i])
                out.append(((*values[:len(columns)], cls(*values[len(columns):])) if columns else cls(*values))
                           if cls else tuple(values))
        return out

    providers = set(w.provider_ids) - state.reports.rows.keys()
    if who:  # every row of the experts reached for the first time
        for x in await of(t.meetings, Meeting):
            x = compact_meeting(x)
            _add("meetings", (x.expert_id, x.meeting_id), x)
        for x in await of(t.customers, Summary, ("expert_id", "customer_id")):
            _add("summaries", (x[0], x[1]), compact_summary(x[2]))
        for x in await of(t.notes, Note):
            _add("notes", x.note_id, x)
        for expert, definitions, at in await of(t.field_definitions, columns=("expert_id", "definitions", "updated_at")):
            _add("definitions", expert, (definitions, at))
        for x in await of(t.customer_profiles, Profile):
            _add("profiles", (x.expert_id, x.customer_id), x)
        for x in await of(t.customer_merges, Merge):
            _add("merges", (x.expert_id, x.customer_id), x)
        for x in await of(t.communications, Communication):
            _add("communications", x.communication_id, x)
            if x.provider_message_id and x.provider_message_id not in state.reports:
                providers.add(x.provider_message_id)
        for expert, customer, contribution in await of(t.customer_insights, held_as_json=True,
                                                       columns=("expert_id", "customer_id", "contribution")):
            _add("contributions", (expert, customer), contribution)
    payments = {x.payment_id: from_row(Payment, x) for x in named_payments}
    for x in await of(t.payments, Payment, where="(expert_id = ANY($2) OR hint_expert = ANY($2))",
                      held_as_json=True) if who else ():
        payments[x.payment_id] = x
    fresh = sorted(pid for pid in payments if pid not in state.payments)
    fresh = [pid for pid in fresh if pid not in held.gone.get("payments", ())]
    for pid in fresh:
        held.loaded.update("p:" + i for i in money.ids(state_of(payments[pid]), pid))
        _add("payments", pid, packed(payments[pid]))
    if fresh:  # the aliases of a payment held already may have changed since they were written
        same = {pid: pid for pid in fresh}  # an alias names its payment by the key's own string
        for alias, pid in await of(t.payment_aliases, columns=("alias", "payment_id"), where="payment_id = ANY($2)",
                                   arg=fresh, chunk=50 * LOAD_CHUNK):
            _add("aliases", alias, same.get(pid, pid))
            held.loaded.add("p:" + alias)
    if providers:
        for email_id, reports in await of(t.email_reports, columns=("email_id", "reports"), where="email_id = ANY($2)",
                                          arg=sorted(providers), chunk=50 * LOAD_CHUNK):
            _add("reports", email_id, reports)
        held.loaded.update("r:" + i for i in providers)


async def _raw(conn: AsyncConnection) -> Any:
    await conn.execute(select(1))  # the transaction is open before the driver is used directly
    return (await conn.get_raw_connection()).driver_connection


_json = msgspec.json.decode
LOAD_CHUNK = 100  # experts (or ids) whose rows are read in one statement


async def write_changed(conn: AsyncConnection, version: int, changes: Iterable[Changed],
                        erasures: dict[str, Any], erased_refs: dict[tuple[str, str], Any],
                        counts: dict[tuple[str, str, str, str], tuple[int, str | None]],
                        seconds: dict[str, float] | None = None) -> dict[str, int]:
    """In the caller's transaction: what each table's rows became (`projections.memory.Changed`),
    the differences added to the insight sums (`counts`: (expert, month, metric, dim) -> (value
    to add, label or None)), and the ledger entries the fold added. Rows added are COPYed; rows
    replaced are COPYed to a staging table and updated from it in one statement (an update that
    changes no indexed column stays on its page); rows removed are deleted by key. A value
    spread over several tables (a profile, its tags and field values) is deleted and written
    again. Returns the rows written per table; `seconds`, when given, gets the time per table."""
    d = conn.dialect.name
    written: dict[str, int] = {}
    seconds = {} if seconds is None else seconds
    clock = time.monotonic()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.monotonic()
        seconds[name] = round(seconds.get(name, 0.0) + now - clock, 2)
        clock = now
    for change in changes:
        sink = change.sink
        several = len(sink.tables) > 1
        gone = change.removed + (change.replaced if several else [])
        if gone:
            for table in sink.tables:
                columns = tuple(table.c[k] for k in sink.keys)
                where = (any_of(d, columns[0], [k[0] for k in gone]) if len(columns) == 1
                         else in_tuples(d, columns, gone))
                await conn.execute(delete(table).where(table.c.version == version, where))
        for table, columns, rows in change.added_rows + (change.replaced_rows if several else []):
            written[table.name] = written.get(table.name, 0) + await copy_rows(
                conn, table, columns, rows, into=partition_name(table, version))
        if change.replaced and not several:
            for table, columns, rows in change.replaced_rows:
                written[table.name] = written.get(table.name, 0) + await _update_from_arrays(
                    conn, table, columns, rows, ("version", *sink.keys), version)
        lap(sink.tables[0].name)
    await add_counts(conn, t.insight_counts, [
        {"version": version, "expert_id": e, "month": m, "metric": k, "dim": dim, "value": value, "label": label}
        for (e, m, k, dim), (value, label) in sorted(counts.items()) if value or label is not None],
        ["version", "expert_id", "month", "metric", "dim"])
    lap("insight_counts")
    await bulk_upsert(conn, t.erasures, [{"email_hash": h, "erased_at": at} for h, at in sorted(erasures.items())],
                      ["email_hash"])
    await bulk_upsert(conn, t.erased_refs, [{"kind": k, "ref": r, "erased_at": at}
                                            for (k, r), at in sorted(erased_refs.items())], ["kind", "ref"])
    return written


async def _update_from_arrays(conn: AsyncConnection, table, columns: tuple[str, ...], rows: Iterable[tuple],
                              keys: tuple[str, ...], version: int) -> int:
    """Rows of existing keys, replaced in one `UPDATE ... FROM unnest(...)` on the version's
    partition: one array per column (JSON as text). The planner sees a few rows to join by the
    primary key (an index look-up each), never a scan of the table."""
    rows = list(rows)
    if not rows:
        return 0
    target = partition_name(table, version)
    json_at = {i for i, c in enumerate(columns) if isinstance(table.c[c].type, JSON)}
    arrays, selects = [], []
    for i, name in enumerate(columns):
        values = [r[i] for r in rows]
        if i in json_at:
            values = [None if v is None else _encode(v).decode() for v in values]
        arrays.append(values)
        selects.append(f"${i + 1}::{_pg_array_type(table.c[name])}[]")
    others = [c for c in columns if c not in keys]
    cast = {c: "::json" if i in json_at else "" for i, c in enumerate(columns)}
    sql = (f'UPDATE "{target}" AS t SET ' + ", ".join(f'"{c}" = u."{c}"{cast[c]}' for c in others)
           + f" FROM unnest({', '.join(selects)}) AS u(" + ", ".join(f'"{c}"' for c in columns) + ") WHERE "
           + " AND ".join(f't."{k}" = u."{k}"' for k in keys))
    raw = await _raw(conn)
    found = int((await raw.execute(sql, *arrays)).rsplit(" ", 1)[-1])  # "UPDATE n"
    if found != len(rows):  # a row the state holds that the table lacks: never silent
        raise Diverged(f"{table.name}: {len(rows)} rows to replace, {found} found")
    return len(rows)


class Diverged(Exception):
    """The state held rows the table does not have (or not once): the write is refused, and the
    worker reads the state again (`projections.live`), rather than losing the rows' changes."""


_encode = msgspec.json.Encoder().encode
