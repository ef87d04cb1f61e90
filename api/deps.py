"""Dependencies of the read API: the services `create_app` built, one connection per request, the
clock. Routes take them as `Annotated` parameters and never read `app.state` themselves (the
token verifier's dependency is `api.auth.VerifierDep`, beside the principal it makes)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, AsyncIterator

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from api.commands import CommandBus
from api.merges import Merges
from api.notes import Notes
from api.profiles import Profiles
from api.ops import ApiMetrics, LagProbe
from customers.settings import Settings


def _built(name: str):
    """A dependency that hands out one of the services `create_app` built."""

    async def service(request: Request):  # async: no thread hop for an attribute
        return getattr(request.app.state, name)

    service.__name__ = name
    return service


SettingsDep = Annotated[Settings, Depends(_built("settings"))]
EngineDep = Annotated[AsyncEngine, Depends(_built("engine"))]
CommandsDep = Annotated[CommandBus, Depends(_built("commands"))]
NotesDep = Annotated[Notes, Depends(_built("notes"))]
ProfilesDep = Annotated[Profiles, Depends(_built("profiles"))]
MergesDep = Annotated[Merges, Depends(_built("merges"))]
LagDep = Annotated[LagProbe, Depends(_built("lag"))]
MetricsDep = Annotated[ApiMetrics, Depends(_built("metrics"))]


async def connection(engine: EngineDep) -> AsyncIterator[AsyncConnection]:
    async with engine.connect() as conn:
        yield conn  # begins on first use; closing without a commit rolls back


async def now() -> datetime:
    return datetime.now(timezone.utc)


ConnDep = Annotated[AsyncConnection, Depends(connection)]
NowDep = Annotated[datetime, Depends(now)]
