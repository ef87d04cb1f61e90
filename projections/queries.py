"""Read helpers over the live projection version. They read; they never commit.

This module is the API's one door into the read model (the import contracts in pyproject.toml
hold it to that): the engine and its probe, the queries, and the pure readings of a stored row
(a payment's figures, a meeting's status) come from here.

Every helper runs on one connection: the live version is read first, in the same
transaction as the rows, so a replay's switch-over is seen whole or not at all.

A list page is one range scan of a `customers` index: (version, expert_id, sort key,
customer_id). Cursors carry the last (sort key, customer_id) seen, so a page never
counts or skips the rows before it, and ties on the sort key break on the id.

Every sort key is a column the page shows, as stored: `last_appointment` is
`last_appointment_at`, the start of the latest appointment as of the last sweep
(`projections.sweep`). A customer without a past appointment (NULL) sorts below every
time: last when newest first, first when oldest first.
"""

from __future__ import annotations

import base64
import functools
import json
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, AsyncIterator, Callable

from sqlalchemy import BigInteger, Select, and_, bindparam, case, cast, exists, func, literal, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from projections import payments as money  # noqa: F401 - the figures of a stored payment state
from projections import tables as t
from projections.db import make_engine, reachable  # noqa: F401 - the API's engine and its probe
from projections.meetings import Meeting, appointment_status, meeting_from_row  # noqa: F401 - a stored meeting
from projections.rules.insights import PERIOD_METRICS
from projections.versions import live_version, versions  # noqa: F401 - the versions, for operators

SORTS = {
    "last_appointment": t.earliest_if_null(t.customers.c.last_appointment_at),
    "first_seen": t.customers.c.first_seen_at,
    "name": t.customers.c.name,
    "appointments": t.customers.c.appointments,
    "total_spend": t.customers.c.spend_sort,
    "last_contact": t.earliest_if_null(t.customers.c.last_contact_at),
}
SHOWN = {"last_appointment": "last_appointment_at", "first_seen": "first_seen_at", "name": "name",
         "appointments": "appointments", "total_spend": "spend_sort",
         "last_contact": "last_contact_at"}  # the column each sort orders by
SORT_TYPES = {"last_appointment": datetime, "first_seen": datetime, "name": str,
              "appointments": int, "total_spend": int, "last_contact": datetime}
NULLABLE = {"last_appointment", "last_contact"}  # a customer without a past appointment (a contact) has none
DEFAULT_ORDER = {"last_appointment": "desc", "first_seen": "desc", "name": "asc",
                 "appointments": "desc", "total_spend": "desc", "last_contact": "desc"}
AFTER, BEFORE = "a", "b"
TIMELINE_LIMIT, TIMELINE_MAX = 20, 100  # a page of notes or communications: the default and the most


class BadCursor(ValueError):
    pass


@dataclass(frozen=True)
class ListQuery:
    expert_id: str
    q: str | None = None
    email: str | None = None
    sort: str = "last_appointment"
    order: str | None = None
    limit: int = 50
    cursor: str | None = None
    tags: tuple[str, ...] = ()  # every one must be the customer's
    fields: tuple[tuple[str, str], ...] = ()  # (key, canonical value), every one must match
    archived: bool | None = False  # None: archived or not (a look-up by email, a status)
    status: str | None = None  # new | active | lapsed | archived (`projections.rules.status`)

    @property
    def direction(self) -> str:
        return self.order or DEFAULT_ORDER[self.sort]

    def fingerprint(self) -> str:
        filters = json.dumps([sorted(self.tags), sorted(self.fields), self.archived, self.status])
        return f"{self.sort}:{self.direction}:{self.q or ''}:{self.email or ''}:{filters}"


@dataclass(frozen=True)
class Cursor:
    value: Any
    customer_id: str
    side: str = AFTER  # AFTER: the rows after this key; BEFORE: the rows before it


def encode_cursor(query: ListQuery, row, side: str = AFTER) -> str:
    value = row._mapping[SHOWN[query.sort]]
    if isinstance(value, datetime):
        value = {"t": value.isoformat()}
    raw = json.dumps([query.fingerprint(), value, row.customer_id, side]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(query: ListQuery, cursor: str) -> Cursor:
    """The position a cursor names, checked against the query and the sort key's type."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        fingerprint, value, cid, side = json.loads(raw)
        value, cid = _typed(query.sort, value), _text(cid)
    except (ValueError, TypeError, KeyError) as exc:  # UnicodeError is a ValueError
        raise BadCursor("cursor is not valid") from exc
    if fingerprint != query.fingerprint():
        raise BadCursor("cursor belongs to another query")
    if side not in (AFTER, BEFORE):
        raise BadCursor("cursor is not valid")
    return Cursor(value, cid, side)


def _text(value: Any) -> str:
    """A string the database can compare: no NUL, valid UTF-8 (no lone surrogates)."""
    if not isinstance(value, str) or "\x00" in value:
        raise ValueError("not a text value")
    value.encode("utf-8")
    return value


def _typed(sort: str, value: Any) -> Any:
    kind = SORT_TYPES[sort]
    if value is None and sort in NULLABLE:
        return None
    if kind is datetime:
        parsed = datetime.fromisoformat(value["t"])
        if parsed.tzinfo is None:
            raise ValueError("naive time in cursor")
        try:
            return parsed.astimezone(timezone.utc)  # bound as UTC: a time with none is no cursor of ours
        except OverflowError as exc:
            raise ValueError("time out of range in cursor") from exc
    if kind is int and (isinstance(value, bool) or not isinstance(value, int) or abs(value) >= 2**63):
        raise ValueError("not an integer")
    if kind is str:
        return _text(value)
    return value


def _like(q: str) -> str:
    escaped = q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def as_of_query(version: Any) -> Select:
    """The newest event time the version has applied (`version`: a number or a subquery)."""
    o = t.projection_offsets.c
    return select(func.max(o.event_time)).where(o.version == version)


async def as_of(conn: AsyncConnection, version: int) -> datetime | None:
    return (await conn.execute(as_of_query(version))).scalar()


def _filters(version: int, query: ListQuery) -> list:
    """Each filter is an index: the sort's (archived is its third column), or the primary key of
    `customer_tags` / `customer_field_values` probed per customer."""
    c = t.customers.c
    where = [c.version == version, c.expert_id == query.expert_id]
    if query.archived is not None:
        where.append(c.archived == query.archived)  # `=`, not `IS`: an index condition
    if query.status is not None:
        where.append(c.status == query.status)  # with the default sort, a range of `ix_customers_status`
    if query.q:
        where.append(c.search_text.like(_like(query.q), escape="\\"))
    if query.email:
        where.append(c.email == query.email)
    tg, fv = t.customer_tags.c, t.customer_field_values.c
    for tag in sorted(set(query.tags)):
        where.append(exists().where(tg.version == version, tg.expert_id == query.expert_id, tg.tag == tag,
                                    tg.customer_id == c.customer_id))
    for key, value in sorted(set(query.fields)):
        where.append(exists().where(fv.version == version, fv.expert_id == query.expert_id, fv.key == key,
                                    fv.value == value, fv.customer_id == c.customer_id))
    return where


def count_statement(version: int, query: ListQuery) -> Select:
    return select(func.count()).select_from(t.customers).where(*_filters(version, query))


# what a list entry shows (`api.schemas.summary`) and what its cursor names: the rest of the row
# (its search text, hashes, revenue and refunds, sources) stays in the table
LISTED = ("customer_id", "email", "name", "phone", "first_seen_at", "upcoming", "past", "cancelled", "spend",
          "last_appointment_at", "next_appointment_at", "archived", "last_contact_at", "status", "appointments",
          "spend_sort")


def head_statement(expert_id: str) -> Select:
    """The live version, its `as_of`, its sweep's watermark and the generation of the expert's rows,
    in one statement."""
    v, g = t.projection_versions.c, t.projection_generations.c
    generation = select(g.generation).where(g.version == v.version, g.scope == expert_id).scalar_subquery()
    return select(v.version, as_of_query(v.version).scalar_subquery().label("as_of"), v.swept_until,
                  generation.label("generation")).where(v.state == "live")


class Kept:
    """What a read computed from an expert's rows, kept per expert *generation*: a list's total
    (`app.state.totals`), the insights' figures (`app.state.insights`).

    Every writer of an expert's rows on PostgreSQL bumps the generation of the expert's scope in
    the same transaction (`projections.fences`: the worker's batches, the sweep, a bulk catch-up),
    so what was computed at one generation holds until the next: turning pages, coming back to a
    filter or reloading the insights costs no count while nothing of that expert changed. The
    generation is read before the rows, so a kept value is never older than its key. Without a
    generation (SQLite, rows never written by a worker) nothing is kept. Bounded: the least
    recently used go first. What it holds is shared by the requests that read it: never changed."""

    def __init__(self, size: int = 20_000) -> None:
        self.size, self.kept, self.hits = size, OrderedDict(), 0

    def get(self, key: tuple | None) -> Any:
        """What is kept under `key` (None: no generation, nothing kept), else None."""
        found = self.kept.get(key) if key is not None else None
        if found is not None:
            self.kept.move_to_end(key)
            self.hits += 1
        return found

    def put(self, key: tuple | None, value: Any) -> None:
        if key is None:
            return
        self.kept[key] = value
        if len(self.kept) > self.size:
            self.kept.popitem(last=False)


def _total_key(version: int, generation: int, query: ListQuery) -> tuple:
    return (version, query.expert_id, generation, query.q, query.email, query.tags, query.fields, query.archived,
            query.status)


def page_statement(version: int, query: ListQuery) -> Select:
    """One page: a range of the sort's index, read forwards or (for a BEFORE cursor) backwards,
    each entry with the tags of the expert's profile of the customer (a primary-key probe)."""
    c, p = t.customers.c, t.customer_profiles.c
    col = SORTS[query.sort]
    cursor = decode_cursor(query, query.cursor) if query.cursor else None
    desc = query.direction == "desc"
    backwards = cursor is not None and cursor.side == BEFORE
    where = _filters(version, query)
    if cursor is not None:
        value = t.earliest_if_null(literal(cursor.value, t.UTC)) if query.sort in NULLABLE else cursor.value
        key, bound = tuple_(col, c.customer_id), tuple_(value, cursor.customer_id)
        where.append(key < bound if desc != backwards else key > bound)
    descending = desc != backwards
    order = [col.desc(), c.customer_id.desc()] if descending else [col.asc(), c.customer_id.asc()]
    profiles = t.customers.outerjoin(t.customer_profiles, and_(
        p.version == version, p.expert_id == c.expert_id, p.customer_id == c.customer_id))
    return (select(*(t.customers.c[n] for n in LISTED), p.tags).select_from(profiles)
            .where(*where).order_by(*order).limit(query.limit + 1))


async def list_customers(conn: AsyncConnection, query: ListQuery, totals: Kept | None = None) -> dict[str, Any]:
    """A page of an expert's customers (each row with its `tags`, None without a profile), with
    the total matching and cursors to either side, in three statements: the live version with
    its `as_of` (read first: the rows are at least that fresh) and the expert's generation, the
    count (unless `totals` holds it for that generation), the page."""
    head = (await conn.execute(head_statement(query.expert_id))).first()
    if head is None:
        return {"rows": [], "total": 0, "next_cursor": None, "prev_cursor": None, "as_of": None}
    version = head.version
    statement = page_statement(version, query)  # validates the cursor before any other query
    key = _total_key(version, head.generation, query) if head.generation is not None else None
    total = totals.get(key) if totals is not None else None
    if total is None:
        total = (await conn.execute(count_statement(version, query))).scalar_one()
        if totals is not None:
            totals.put(key, total)
    rows = (await conn.execute(statement)).all()
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    backwards = bool(query.cursor) and decode_cursor(query, query.cursor).side == BEFORE
    if backwards:
        rows.reverse()
        more_after, more_before = True, more
    else:
        more_after, more_before = more, bool(query.cursor)
    return {
        "rows": rows,
        "total": total,
        "next_cursor": encode_cursor(query, rows[-1], AFTER) if more_after and rows else None,
        "prev_cursor": encode_cursor(query, rows[0], BEFORE) if more_before and rows else None,
        "as_of": head.as_of,
    }


async def survivor_of(conn: AsyncConnection, version: int, expert_id: str, customer_id: str) -> str | None:
    """The customer `customer_id` was merged into, or None when it was not."""
    g = t.customer_merges.c
    return (await conn.execute(select(g.survivor_id).where(
        g.version == version, g.expert_id == expert_id, g.customer_id == customer_id))).scalar()


async def merged_into(conn: AsyncConnection, version: int, expert_id: str, customer_id: str) -> list[str]:
    """The ids of the customers merged into one customer, oldest merge first."""
    g = t.customer_merges.c
    return list((await conn.execute(select(g.customer_id).where(
        g.version == version, g.expert_id == expert_id, g.survivor_id == customer_id)
        .order_by(g.merged_at, g.customer_id))).scalars())


async def _group(conn: AsyncConnection, version: int, expert_id: str, customer_id: str) -> list[str]:
    """The customer (the survivor, for a merged one), then the customers merged into them."""
    customer_id = await survivor_of(conn, version, expert_id, customer_id) or customer_id
    return [customer_id, *await merged_into(conn, version, expert_id, customer_id)]


async def merges_of(conn: AsyncConnection, expert_id: str, customer_id: str) -> tuple[str | None, list]:
    """(the survivor `customer_id` was merged into or None, the merges into it) in the live version."""
    version = await live_version(conn)
    if version is None:
        return None, []
    return (await survivor_of(conn, version, expert_id, customer_id),
            await merged_into(conn, version, expert_id, customer_id))


async def customer_row(conn: AsyncConnection, expert_id: str, customer_id: str):
    """The summary row of one of the expert's customers, or None (unknown and not theirs alike).
    A customer merged into another answers with the survivor's row (its `customer_id` says so)."""
    version = await live_version(conn)
    if version is None:
        return None
    c = t.customers.c
    found = (await conn.execute(select(t.customers).where(
        c.version == version, c.expert_id == expert_id, c.customer_id == customer_id))).first()
    if found is None and (survivor := await survivor_of(conn, version, expert_id, customer_id)) is not None:
        found = (await conn.execute(select(t.customers).where(
            c.version == version, c.expert_id == expert_id, c.customer_id == survivor))).first()
    return found


async def customer_detail(conn: AsyncConnection, expert_id: str, customer_id: str, *,
                          notes_limit: int = TIMELINE_LIMIT, notes_cursor: str | None = None,
                          communications_limit: int = TIMELINE_LIMIT,
                          communications_cursor: str | None = None) -> dict[str, Any] | None:
    """One customer of one expert with meetings, payments, and a page of notes and of
    communications with their totals; None when not theirs. Raises `BadCursor`."""
    version = await live_version(conn)
    if version is None:
        return None
    c, m, p = t.customers.c, t.meetings.c, t.payments.c
    # a merged customer answers as the one it was merged into; their rows keep their own ids
    owners = await _group(conn, version, expert_id, customer_id)
    customer_id, merged = owners[0], owners[1:]
    row = (await conn.execute(select(t.customers).where(
        c.version == version, c.expert_id == expert_id, c.customer_id == customer_id))).first()
    if row is None:
        return None
    mine = and_(m.version == version, m.expert_id == expert_id, m.customer_id.in_(owners))
    meetings = (await conn.execute(select(t.meetings).where(mine, m.created_version.is_not(None))
                                   .order_by(m.start_time.desc(), m.meeting_id))).all()
    payments = (await conn.execute(select(t.payments).where(
        p.version == version, p.expert_id == expert_id, p.customer_id.in_(owners)))).all()
    emails = [row.email]
    for other in merged:  # each merged customer's email, as their newest booking gives it
        if (email := _email_of(meetings, other)) is not None and email not in emails:
            emails.append(email)
    notes, notes_next = await timeline_page(conn, version, NOTES, expert_id, owners, notes_limit, notes_cursor)
    communications, communications_next = await timeline_page(conn, version, COMMUNICATIONS, expert_id, owners,
                                                              communications_limit, communications_cursor)
    profile = (await _profiles(conn, version, expert_id, [customer_id])).get(customer_id)
    return {"row": row, "merged_from": merged, "emails": emails, "meetings": meetings, "payments": payments, "notes": notes, "profile": profile,
            "communications": communications, "notes_next_cursor": notes_next,
            "communications_next_cursor": communications_next,
            "notes_total": await timeline_total(conn, version, NOTES, expert_id, owners),
            "communications_total": await timeline_total(conn, version, COMMUNICATIONS, expert_id, owners),
            "definitions": await _definitions(conn, version, expert_id),
            "as_of": await as_of(conn, version), "version": version}


async def _profiles(conn: AsyncConnection, version: int, expert_id: str, customer_ids: list[str]) -> dict[str, Any]:
    """The expert's profiles (tags, field values, archived) of these customers, by customer id."""
    if not customer_ids:
        return {}
    p = t.customer_profiles.c
    rows = (await conn.execute(select(t.customer_profiles).where(
        p.version == version, p.expert_id == expert_id, p.customer_id.in_(customer_ids)))).all()
    return {r.customer_id: r for r in rows}


async def _definitions(conn: AsyncConnection, version: int, expert_id: str) -> list[dict[str, Any]]:
    d = t.field_definitions.c
    found = (await conn.execute(select(d.definitions).where(d.version == version, d.expert_id == expert_id))).scalar()
    return list(found or [])


async def field_definitions(conn: AsyncConnection, expert_id: str) -> list[dict[str, Any]]:
    """The expert's custom field definitions, in their order ([] before any)."""
    version = await live_version(conn)
    return [] if version is None else await _definitions(conn, version, expert_id)


async def communication(conn: AsyncConnection, expert_id: str, customer_id: str, communication_id: str):
    """One communication of the expert with one customer, or None."""
    version = await live_version(conn)
    if version is None:
        return None
    cm = t.communications.c
    return (await conn.execute(select(t.communications).where(
        cm.version == version, cm.communication_id == communication_id, cm.expert_id == expert_id,
        cm.customer_id.in_(await _group(conn, version, expert_id, customer_id))))).first()


async def profiles_of(conn: AsyncConnection, expert_id: str, customer_ids: list[str]) -> dict[str, Any]:
    version = await live_version(conn)
    return {} if version is None else await _profiles(conn, version, expert_id, customer_ids)


# --- timelines: notes and communications, newest first, in pages ------------------------------------

@dataclass(frozen=True)
class Timeline:
    """A customer's notes or communications, newest first: the table, its time and id columns, and
    the condition of the rows shown."""

    kind: str  # "notes" | "communications", in the cursor: one timeline's cursor is no other's
    table: Any
    at: Any
    id: Any

    def mine(self, version: int, expert_id: str, customer_ids: list[str]) -> list:
        c = self.table.c
        where = [c.version == version, c.expert_id == expert_id, c.customer_id.in_(customer_ids)]
        return where + ([c.deleted.is_(False)] if self.kind == "notes" else [])


NOTES = Timeline("notes", t.notes, t.notes.c.created_at, t.notes.c.note_id)
COMMUNICATIONS = Timeline("communications", t.communications, t.communications.c.at,
                          t.communications.c.communication_id)


def _timeline_cursor(line: Timeline, row) -> str:
    at, rid = getattr(row, line.at.name), getattr(row, line.id.name)
    raw = json.dumps([line.kind, at.isoformat(), rid]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _timeline_position(line: Timeline, cursor: str) -> tuple[datetime, str]:
    try:
        kind, at, rid = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        at = datetime.fromisoformat(at)
        if kind != line.kind or at.tzinfo is None:
            raise ValueError("another timeline's cursor")
        return at.astimezone(timezone.utc), _text(rid)
    except (ValueError, TypeError, OverflowError) as exc:
        raise BadCursor("cursor is not valid") from exc


async def timeline_page(conn: AsyncConnection, version: int, line: Timeline, expert_id: str,
                        customer_ids: list[str], limit: int = TIMELINE_LIMIT,
                        cursor: str | None = None) -> tuple[list, str | None]:
    """One page of a timeline, newest first (ties by id, highest first), and the cursor of the
    next (older) page, None at the end. Raises `BadCursor`."""
    where = line.mine(version, expert_id, customer_ids)
    if cursor:
        at, rid = _timeline_position(line, cursor)
        where.append(tuple_(line.at, line.id) < tuple_(literal(at, t.UTC), rid))
    rows = (await conn.execute(select(line.table).where(*where)
                               .order_by(line.at.desc(), line.id.desc()).limit(limit + 1))).all()
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (_timeline_cursor(line, rows[-1]) if more and rows else None)


async def timeline_total(conn: AsyncConnection, version: int, line: Timeline, expert_id: str,
                         customer_ids: list[str]) -> int:
    return (await conn.execute(select(func.count()).select_from(line.table)
                               .where(*line.mine(version, expert_id, customer_ids)))).scalar_one()


async def timeline_of(conn: AsyncConnection, line: Timeline, expert_id: str, customer_id: str,
                      limit: int = TIMELINE_LIMIT, cursor: str | None = None) -> tuple[list, str | None]:
    """A page of one customer's notes or communications (`timeline_page`) in the live version,
    those of the customers merged into them included."""
    version = await live_version(conn)
    if version is None:
        return [], None
    return await timeline_page(conn, version, line, expert_id, await _group(conn, version, expert_id, customer_id),
                               limit, cursor)


def _email_of(meetings: list, customer_id: str) -> str | None:
    newest = max((mr for mr in meetings if mr.customer_id == customer_id), key=lambda mr: mr.created_version or "",
                 default=None)
    return newest.customer_email if newest is not None else None


async def note(conn: AsyncConnection, expert_id: str, customer_id: str, note_id: str):
    """One of the expert's notes on one customer (or on a customer merged into them), deleted or
    not; None when there is none."""
    version = await live_version(conn)
    if version is None:
        return None
    n = t.notes.c
    return (await conn.execute(select(t.notes).where(
        n.version == version, n.note_id == note_id, n.expert_id == expert_id,
        n.customer_id.in_(await _group(conn, version, expert_id, customer_id))))).first()



async def stream_customers(conn: AsyncConnection, expert_id: str, chunk: int = 500, *,
                           profiles: bool = True) -> AsyncIterator:
    """Every customer of an expert, archived ones too, as (row, profile or None), in pages of
    `chunk`, for exports (memory stays flat); with `profiles=False` the profile is always None."""
    version = await live_version(conn)
    if version is None:
        return
    c = t.customers.c
    after = None
    while True:
        where = [c.version == version, c.expert_id == expert_id]
        if after is not None:
            where.append(c.customer_id > after)
        rows = (await conn.execute(select(t.customers).where(*where).order_by(c.customer_id).limit(chunk))).all()
        if not rows:
            return
        found = await _profiles(conn, version, expert_id, [r.customer_id for r in rows]) if profiles else {}
        for row in rows:
            yield row, found.get(row.customer_id)
        after = rows[-1].customer_id


async def applied_offsets(conn: AsyncConnection) -> tuple[int | None, list]:
    """The live version and the position it has applied on each partition (with its newest event time)."""
    o = t.projection_offsets.c
    version = await live_version(conn)
    rows = (await conn.execute(select(o.topic, o.partition, o.offset, o.event_time)
                               .where(o.version == version))).all()
    return version, rows


def insight_statement(expert_id: str, first: str, last: str) -> Select:
    """One statement for the whole insights read: the live version's watermarks on every row, and,
    from one range of `insight_counts`' primary key, the per-month rows as they are and the
    period's metrics (gaps between appointments, services) summed over the months, their month
    left blank. An expert without figures still gets the watermarks (the outer join's one row)."""
    pv, i = t.projection_versions.c, t.insight_counts.c
    live_id = select(pv.version).where(pv.state == "live").scalar_subquery()
    month = case((i.metric.in_(PERIOD_METRICS), literal("")), else_=i.month)
    rows = (select(month.label("month"), i.metric, i.dim, cast(func.sum(i.value), BigInteger).label("value"),
                   func.max(i.label).label("label"))
            .where(i.version == live_id, i.expert_id == expert_id, i.month >= first, i.month <= last)
            .group_by(month, i.metric, i.dim)).subquery("rows")
    as_of_time = as_of_query(live_id).scalar_subquery()  # uncorrelated: evaluated once
    live = select(pv.swept_until, as_of_time.label("as_of")).where(pv.state == "live").subquery("live")
    return (select(live.c.swept_until, live.c.as_of, rows.c.month, rows.c.metric, rows.c.dim, rows.c.value,
                   rows.c.label)
            .select_from(live.outerjoin(rows, literal(True))))


async def insight_rows(conn: AsyncConnection, expert_id: str, first: str, last: str) -> tuple[dict, Any, Any]:
    """The expert's monthly figures from `first` to `last` (YYYY-MM, inclusive), read in one round
    trip (`insight_statement`): `monthly` (month, metric, dim, value), `gaps` (days, count) and
    `services` (metric, dim, value, label) over the months; with `as_of` and the sweep's watermark.
    On PostgreSQL the statement, compiled once, goes to the driver as it is: its hundreds of rows
    cost more in SQLAlchemy's result machinery than in the database."""
    if conn.dialect.name == "postgresql":
        sql, order, fixed = _compiled_insights(conn.dialect)
        raw = (await conn.get_raw_connection()).driver_connection
        values = {**fixed, "expert_id": expert_id, "first": first, "last": last}
        found = await raw.fetch(sql, *(values[name] for name in order))
    else:
        found = (await conn.execute(insight_statement(expert_id, first, last))).mappings().all()
    if not found:
        return {"monthly": [], "gaps": [], "services": []}, None, None
    monthly, gaps, services = [], [], []
    for r in found:
        metric = r["metric"]
        if metric is None:  # the outer join's row of an expert without figures
            continue
        if r["month"]:
            monthly.append((r["month"], metric, r["dim"], r["value"]))
        elif metric == "gap":
            gaps.append((r["dim"], r["value"]))
        else:
            services.append((metric, r["dim"], r["value"], r["label"]))
    return {"monthly": monthly, "gaps": gaps, "services": services}, found[0]["as_of"], found[0]["swept_until"]


@functools.cache
def _compiled_insights(dialect: Any) -> tuple[str, tuple[str, ...], dict[str, Any]]:
    """`insight_statement` as the driver takes it, the order of its parameters and the values of
    those it fixes itself."""
    compiled = insight_statement(bindparam("expert_id", ""), bindparam("first", ""), bindparam("last", "")).compile(
        dialect=dialect, compile_kwargs={"render_postcompile": True})
    return str(compiled), tuple(compiled.positiontup or ()), dict(compiled.params)


async def kept_insights(conn: AsyncConnection, expert_id: str, first: str, last: str,
                        make: Callable[[dict], Any], kept: Kept | None) -> tuple[Any, Any, Any]:
    """`make` of the expert's stored figures (`insight_rows`), kept in `kept` per generation of the
    expert's rows and months asked for: a kept one costs one statement (`head_statement`: the live
    version, `as_of`, the sweep's watermark and the generation), one to make two. Returns (what
    `make` made, as_of, the sweep's watermark)."""
    key = None
    if kept is not None:
        head = (await conn.execute(head_statement(expert_id))).first()
        if head is not None and head.generation is not None:
            key = ("insights", head.version, expert_id, head.generation, first, last)
            made = kept.get(key)
            if made is not None:
                return made, head.as_of, head.swept_until
    stored, as_of, swept = await insight_rows(conn, expert_id, first, last)
    made = make(stored)
    if kept is not None:
        kept.put(key, made)
    return made, as_of, swept
