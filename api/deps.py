"""Dependencies of the read API: one connection per request, the clock, the notes service."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, AsyncIterator

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncConnection

from api.notes import Notes
from customers.settings import Settings


async def connection(request: Request) -> AsyncIterator[AsyncConnection]:
    async with request.app.state.engine.connect() as conn:
        yield conn  # begins on first use; closing without a commit rolls back


def now() -> datetime:
    return datetime.now(timezone.utc)


def notes(request: Request) -> Notes:
    return request.app.state.notes


def settings(request: Request) -> Settings:
    return request.app.state.settings


ConnDep = Annotated[AsyncConnection, Depends(connection)]
NowDep = Annotated[datetime, Depends(now)]
NotesDep = Annotated[Notes, Depends(notes)]
SettingsDep = Annotated[Settings, Depends(settings)]
