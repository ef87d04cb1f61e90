"""Dependencies of the read API: the services `create_app` built, one connection per request, the
clock. Routes take them as `Annotated` parameters and never read `app.state` themselves (the
token verifier's dependency is `api.auth.VerifierDep`, beside the principal it makes)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, AsyncIterator

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from api.commands import CommandBus
from api.notes import Notes
from api.ops import ApiMetrics, LagProbe
from customers.settings import Settings


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _engine(request: Request) -> AsyncEngine:
    return request.app.state.engine


def _commands(request: Request) -> CommandBus:
    return request.app.state.commands


def _notes(request: Request) -> Notes:
    return request.app.state.notes


def _lag(request: Request) -> LagProbe:
    return request.app.state.lag


def _metrics(request: Request) -> ApiMetrics:
    return request.app.state.metrics


async def connection(engine: Annotated[AsyncEngine, Depends(_engine)]) -> AsyncIterator[AsyncConnection]:
    async with engine.connect() as conn:
        yield conn  # begins on first use; closing without a commit rolls back


def now() -> datetime:
    return datetime.now(timezone.utc)


SettingsDep = Annotated[Settings, Depends(_settings)]
EngineDep = Annotated[AsyncEngine, Depends(_engine)]
CommandsDep = Annotated[CommandBus, Depends(_commands)]
NotesDep = Annotated[Notes, Depends(_notes)]
LagDep = Annotated[LagProbe, Depends(_lag)]
MetricsDep = Annotated[ApiMetrics, Depends(_metrics)]
ConnDep = Annotated[AsyncConnection, Depends(connection)]
NowDep = Annotated[datetime, Depends(now)]
