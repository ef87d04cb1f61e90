"""Read helpers over the live projection version. They read; they never commit.

Every helper runs on one connection: the live version is read first, in the same
transaction as the rows, so a replay's switch-over is seen whole or not at all.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from projections import tables as t
from projections.versions import live_version

SORTS = {
    "last_appointment": t.customers.c.latest_start,
    "first_seen": t.customers.c.first_seen_at,
    "name": t.customers.c.name,
    "appointments": t.customers.c.appointments,
    "total_spend": t.customers.c.spend_sort,
}
DEFAULT_ORDER = {"last_appointment": "desc", "first_seen": "desc", "name": "asc",
                 "appointments": "desc", "total_spend": "desc"}


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

    @property
    def direction(self) -> str:
        return self.order or DEFAULT_ORDER[self.sort]

    def fingerprint(self) -> str:
        return f"{self.sort}:{self.direction}:{self.q or ''}:{self.email or ''}"


def encode_cursor(query: ListQuery, row) -> str:
    value = row._mapping[SORTS[query.sort].name]
    if isinstance(value, datetime):
        value = {"t": value.isoformat()}
    raw = json.dumps([query.fingerprint(), value, row.customer_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(query: ListQuery, cursor: str) -> tuple[Any, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        fingerprint, value, cid = json.loads(raw)
    except (ValueError, TypeError) as exc:
        raise BadCursor("cursor is not valid") from exc
    if fingerprint != query.fingerprint():
        raise BadCursor("cursor belongs to another query")
    if isinstance(value, dict):
        value = datetime.fromisoformat(value["t"])
    return value, cid


def _like(q: str) -> str:
    escaped = q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def as_of(conn: AsyncConnection, version: int) -> datetime | None:
    o = t.projection_offsets.c
    return (await conn.execute(select(func.max(o.event_time)).where(o.version == version))).scalar()


async def list_customers(conn: AsyncConnection, query: ListQuery) -> dict[str, Any]:
    version = await live_version(conn)
    if version is None:
        return {"rows": [], "total": 0, "next_cursor": None, "as_of": None}
    c = t.customers.c
    where = [c.version == version, c.expert_id == query.expert_id]
    if query.q:
        where.append(c.search_text.like(_like(query.q), escape="\\"))
    if query.email:
        where.append(c.email == query.email)
    total = (await conn.execute(select(func.count()).select_from(t.customers).where(*where))).scalar_one()

    col = SORTS[query.sort]
    desc = query.direction == "desc"
    page_where = list(where)
    if query.cursor:
        value, cid = decode_cursor(query, query.cursor)
        key, bound = tuple_(col, c.customer_id), tuple_(value, cid)
        page_where.append(key < bound if desc else key > bound)
    order = [col.desc(), c.customer_id.desc()] if desc else [col.asc(), c.customer_id.asc()]
    rows = (await conn.execute(
        select(t.customers).where(*page_where).order_by(*order).limit(query.limit + 1)
    )).all()
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    return {
        "rows": rows,
        "total": total,
        "next_cursor": encode_cursor(query, rows[-1]) if more and rows else None,
        "as_of": await as_of(conn, version),
    }


async def customer_detail(conn: AsyncConnection, expert_id: str, customer_id: str) -> dict[str, Any] | None:
    """One customer of one expert with meetings, payments and notes; None when not theirs."""
    version = await live_version(conn)
    if version is None:
        return None
    c, m, p, n = t.customers.c, t.meetings.c, t.payments.c, t.notes.c
    row = (await conn.execute(select(t.customers).where(
        c.version == version, c.expert_id == expert_id, c.customer_id == customer_id))).first()
    if row is None:
        return None
    mine = and_(m.version == version, m.expert_id == expert_id, m.customer_id == customer_id)
    meetings = (await conn.execute(select(t.meetings).where(mine, m.created_version.is_not(None))
                                   .order_by(m.start_time.desc(), m.meeting_id))).all()
    payments = (await conn.execute(select(t.payments).where(
        p.version == version, p.expert_id == expert_id, p.customer_id == customer_id))).all()
    notes = (await conn.execute(select(t.notes).where(
        n.version == version, n.expert_id == expert_id, n.customer_id == customer_id, n.deleted.is_(False))
        .order_by(n.created_at.desc(), n.note_id))).all()
    return {"row": row, "meetings": meetings, "payments": payments, "notes": notes,
            "as_of": await as_of(conn, version), "version": version}


async def stream_customers(conn: AsyncConnection, expert_id: str, chunk: int = 500):
    """Every customer of an expert in pages of `chunk`, for exports (memory stays flat)."""
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
        for row in rows:
            yield row
        after = rows[-1].customer_id
