"""Projection versions: which one readers see, and the ones being rebuilt beside it."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from projections.tables import projection_versions as pv


def group_for(prefix_group: str, version: int) -> str:
    return f"{prefix_group}-v{version}"


async def live_version(conn: AsyncConnection) -> int | None:
    row = (await conn.execute(select(pv.c.version).where(pv.c.state == "live"))).first()
    return row.version if row else None


async def ensure_live(engine: AsyncEngine, group_prefix: str) -> int:
    """The live version, creating version 1 on an empty database."""
    async with engine.begin() as conn:
        version = await live_version(conn)
        if version is not None:
            return version
        await conn.execute(pv.insert().values(
            version=1, state="live", consumer_group=group_for(group_prefix, 1),
            created_at=datetime.now(timezone.utc), switched_at=datetime.now(timezone.utc)))
        return 1


async def switch_to(conn: AsyncConnection, version: int) -> None:
    """Make `version` the one readers see, retiring the previous one, in the caller's transaction."""
    now = datetime.now(timezone.utc)
    await conn.execute(update(pv).where(pv.c.state == "live").values(state="retired"))
    await conn.execute(update(pv).where(pv.c.version == version).values(state="live", switched_at=now))
