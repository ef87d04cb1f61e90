"""The passing of time, applied like an event: a sweep recounts the customers whose appointments
started or ended since the previous sweep.

Every `customers` row of a version counts appointments as of one time, the version's watermark
`projection_versions.swept_until` (NULL: before every meeting). A batch counts the customers it
touches as of that watermark, in its own transaction. A sweep, in one transaction:

1. holds the whole version, as an erasure does (`projections.claims`: the version's advisory lock
   exclusively on PostgreSQL, where every batch holds it shared; SQLite's write lock), so no
   batch of that version runs beside it, and reads the watermark W;
2. picks the customers having a meeting whose start or end lies in (W, now] (an index range of
   `ix_meetings_start` and one of `ix_meetings_end`);
3. recounts them as of now and stores now as the watermark, with the rows.

A sweep with a time at or before the watermark changes nothing, so any number of workers may
sweep the same version, in any order.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable

from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from projections.tables import meetings
from projections.tables import projection_versions as pv

EARLIEST = datetime(1, 1, 1, tzinfo=timezone.utc)  # the watermark of a version never swept: before every meeting


@dataclass(frozen=True)
class Swept:
    """What one sweep did: the window it covered and how many customers it recounted."""

    since: datetime
    until: datetime
    customers: int


Window = tuple[datetime, datetime]


def passed(start: datetime | None, end: datetime | None, since: datetime, until: datetime,
           windows: Iterable[Window] = ()) -> bool:
    """Whether a meeting's start or end lies in (since, until], or its start in one of `windows`
    (the status thresholds' shifted windows): its customer's figures differ between the two times."""
    return any(t is not None and since < t <= until for t in (start, end)) or (
        start is not None and any(a < start <= b for a, b in windows))


def due(rows: Iterable[tuple[str, str | None, datetime | None, datetime | None]],
        since: datetime, until: datetime, windows: Iterable[Window] = ()) -> list[tuple[str, str]]:
    """The (expert, customer) pairs to recount, from meetings (expert, customer, start, end)."""
    windows = list(windows)
    return sorted({(expert, customer) for expert, customer, start, end in rows
                   if customer is not None and passed(start, end, since, until, windows)})


async def watermark(conn: AsyncConnection, version: int) -> datetime:
    """The time the version's rows count appointments as of."""
    found = (await conn.execute(select(pv.c.swept_until).where(pv.c.version == version))).scalar()
    return found or EARLIEST


def passed_statement(version: int, since: datetime, until: datetime, windows: Iterable[Window] = ()):
    """Meetings of the version whose start or end lies in (since, until], or whose start lies in
    one of `windows`: ranges of the start's and the end's indexes."""
    m = meetings.c
    window = or_(and_(m.start_time > since, m.start_time <= until), and_(m.end_time > since, m.end_time <= until),
                 *(and_(m.start_time > a, m.start_time <= b) for a, b in windows))
    return select(m.expert_id, m.customer_id, m.start_time, m.end_time).where(
        m.version == version, window, m.customer_id.is_not(None))


async def passed_meetings(conn: AsyncConnection, version: int, since: datetime, until: datetime,
                          windows: Iterable[Window] = ()) -> list:
    return [tuple(r) for r in await conn.execute(passed_statement(version, since, until, windows))]


async def advance(conn: AsyncConnection, version: int, until: datetime) -> None:
    await conn.execute(update(pv).where(pv.c.version == version).values(swept_until=until))
