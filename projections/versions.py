"""Projection versions: which one readers see, and the ones being rebuilt beside it."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from projections.tables import projection_versions as pv


def group_for(prefix_group: str, version: int) -> str:
    return f"{prefix_group}-v{version}"


async def live_version(conn: AsyncConnection, *, lock: bool = False) -> int | None:
    """The version readers see. With `lock`, a writer holds it against a concurrent switch."""
    query = select(pv.c.version).where(pv.c.state == "live")
    if lock and conn.dialect.name == "postgresql":
        query = query.with_for_update(read=True)
    row = (await conn.execute(query)).first()
    return row.version if row else None


async def ensure_live(engine: AsyncEngine, group_prefix: str) -> int:
    """The live version, creating version 1 on an empty database."""
    async with engine.begin() as conn:
        version = await live_version(conn)
        if version is not None:
            return version
        now = datetime.now(timezone.utc)
        await conn.execute(pv.insert().values(
            version=1, state="live", consumer_group=group_for(group_prefix, 1),
            created_at=now, switched_at=now, swept_until=now))
        return 1


async def switch_to(conn: AsyncConnection, version: int) -> None:
    """Make `version` the one readers see, retiring the previous one, in the caller's transaction."""
    now = datetime.now(timezone.utc)
    await conn.execute(update(pv).where(pv.c.state == "live").values(state="retired"))
    await conn.execute(update(pv).where(pv.c.version == version).values(state="live", switched_at=now))


async def building_version(conn: AsyncConnection) -> int | None:
    row = (await conn.execute(select(pv.c.version).where(pv.c.state == "building")
                              .order_by(pv.c.version.desc()))).first()
    return row.version if row else None


async def begin_replay(engine: AsyncEngine, group_prefix: str) -> tuple[int, bool]:
    """The version a replay builds into: the unfinished one if any (resumed), else a new one."""
    async with engine.begin() as conn:
        version = await building_version(conn)
        if version is not None:
            return version, True
        newest = (await conn.execute(select(func.max(pv.c.version)))).scalar() or 0
        version = newest + 1
        now = datetime.now(timezone.utc)  # its rows count appointments as of its start; the switch sweeps
        await conn.execute(pv.insert().values(version=version, state="building",
                                              consumer_group=group_for(group_prefix, version),
                                              created_at=now, swept_until=now))
        return version, False


async def drop_version(engine: AsyncEngine, version: int) -> None:
    """Remove a retired version's rows (never the live one's)."""
    from projections import tables as t

    async with engine.begin() as conn:
        state = (await conn.execute(select(pv.c.state).where(pv.c.version == version))).scalar()
        if state == "live":
            raise ValueError("refusing to drop the live version")
        for table in (t.customers, t.meetings, t.payments, t.payment_aliases, t.notes, t.projection_offsets, t.stripe_events_applied):
            await conn.execute(delete(table).where(table.c.version == version))
        await conn.execute(update(pv).where(pv.c.version == version).values(state="removed"))


async def versions(conn: AsyncConnection) -> list[dict]:
    rows = await conn.execute(select(pv).order_by(pv.c.version))
    return [dict(r._mapping) for r in rows]
