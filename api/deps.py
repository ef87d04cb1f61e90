"""Dependencies of the read API: one connection per request, the clock."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, AsyncIterator

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncConnection


async def connection(request: Request) -> AsyncIterator[AsyncConnection]:
    async with request.app.state.engine.connect() as conn:
        async with conn.begin():  # one snapshot per request; rolled back, never committed
            yield conn


def now() -> datetime:
    return datetime.now(timezone.utc)


ConnDep = Annotated[AsyncConnection, Depends(connection)]
NowDep = Annotated[datetime, Depends(now)]
