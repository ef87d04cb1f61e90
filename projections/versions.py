"""Projection versions: which one readers see, and the ones being rebuilt beside it.

On PostgreSQL each version has tables of its own (`projections.physical`), created with its
row here and dropped with it.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from projections.physical import create_bare_version, create_version, drop_version_tables
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
        await create_version(conn, 1, indexed=True)  # readers from the start
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


async def begin_replay(engine: AsyncEngine, group_prefix: str, *, bare: bool = False) -> tuple[int, bool]:
    """The version a replay builds into: the unfinished one if any (resumed), else a new one.

    Its tables have only the projection's lookup indexes until the replay has caught up
    (`index_version`); with `bare`, a new version's tables are made for a bulk fold instead
    (`projections.physical.create_bare_version`) and a resumed one's are left as they are.
    """
    async with engine.begin() as conn:
        version = await building_version(conn)
        if version is not None:
            if not bare:
                await create_version(conn, version, indexed=False)  # made with its row: only checked here
            return version, True
        newest = (await conn.execute(select(func.max(pv.c.version)))).scalar() or 0
        version = newest + 1
        now = datetime.now(timezone.utc)  # its rows count appointments as of its start; the switch sweeps
        await conn.execute(pv.insert().values(version=version, state="building",
                                              consumer_group=group_for(group_prefix, version),
                                              created_at=now, swept_until=now))
        if bare and conn.dialect.name == "postgresql":
            await create_bare_version(conn, version)
        else:
            await create_version(conn, version, indexed=bare)
        return version, False


async def drop_version(engine: AsyncEngine, version: int) -> None:
    """Remove a retired version's rows (never the live one's): DROP its tables (DELETE on SQLite).

    The version is marked removed first; its tables go after, outside that transaction, so
    dropping them again (after a failure half-way) finishes the job.
    """
    async with engine.begin() as conn:
        state = (await conn.execute(select(pv.c.state).where(pv.c.version == version)
                                    .with_for_update())).scalar()
        if state == "live":
            raise ValueError("refusing to drop the live version")
        await conn.execute(update(pv).where(pv.c.version == version).values(state="removed"))
        if conn.dialect.name != "postgresql":
            await drop_version_tables(conn, version)
            return
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await drop_version_tables(conn, version)


async def versions(conn: AsyncConnection) -> list[dict]:
    rows = await conn.execute(select(pv).order_by(pv.c.version))
    return [dict(r._mapping) for r in rows]


async def reset_version(engine: AsyncEngine, version: int) -> None:
    """Empty a version being built and leave its tables bare (not attached, no key, no index: see
    `projections.physical.create_bare_version`), for a bulk fold.

    Its tables are dropped and made again, so a fold cut short by a crash starts clean."""
    async with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execution_options(isolation_level="AUTOCOMMIT")
        await drop_version_tables(conn, version)
        if conn.dialect.name != "postgresql":
            await conn.commit()
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            await create_bare_version(conn, version)
        else:
            await create_version(conn, version, indexed=True)
