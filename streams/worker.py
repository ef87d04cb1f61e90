"""Composition of the worker process: settings -> database, topics, projector, Faust app, agents."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable

import faust
from aiokafka.errors import KafkaError
from prometheus_client import start_http_server

from customers.kafka import TooFewBrokers, UnderReplicated, ensure_topics
from customers.settings import Settings
from projections.rules.status import Lifecycle
from projections.db import make_engine, migrate, one_at_a_time
from projections.projector import Projector
from projections.versions import ensure_live, group_for
from streams.agents import Agents
from streams.app import create_app, restart_process
from streams.catchup import FallenBehind, catch_up
from streams.metrics import WorkerMetrics
from streams.sweeper import Sweeper

log = logging.getLogger("customers.worker")

RESTART_DELAY = 2.0

def logging_config(settings: Settings) -> dict:
    """Faust configures logging itself; this makes it write our JSON lines (emails pseudonymised
    with CUSTOMER_ID_SECRET, cards masked)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "customers.logs.JsonFormatter", "key": settings.customer_id_secret}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
        "root": {"handlers": ["stderr"], "level": "INFO"},
        "loggers": {name: {"level": "WARNING"} for name in ("aiokafka", "faust", "mode", "alembic")},
    }


async def prepare(settings: Settings) -> int:
    """Migrate the schema, create topics, and return the live projection version."""
    async with one_at_a_time(settings.database_url, "prepare"):  # workers started together
        await migrate(settings.database_url)
    await ensure_topics(settings, timeout=None)  # a worker started before the broker waits for it
    engine = make_engine(settings.database_url)
    try:
        async with one_at_a_time(settings.database_url, "prepare"):
            return await ensure_live(engine, settings.consumer_group)
    finally:
        await engine.dispose()


def build(settings: Settings, version: int, metrics: WorkerMetrics | None = None) -> tuple[faust.App, Agents]:
    app = create_app(settings, group=group_for(settings.consumer_group, version))
    projector = Projector(make_engine(settings.database_url), version=version, id_secret=settings.customer_id_secret,
                          lifecycle=Lifecycle.of(settings),
                          follow_live=True)
    metrics = metrics or WorkerMetrics()
    agents = Agents(app, settings, projector, metrics)
    Sweeper(app, settings, projector, metrics)
    FallenBehind(app, settings, projector, agents.restart)
    return app, agents


def run(settings: Settings, *, metrics_port: int | None = None, loglevel: str = "warning",
        on_built: Callable[[Agents], None] | None = None) -> None:
    """Prepare, build and run the worker; `on_built` sees the agents before Faust starts them."""
    try:
        version = asyncio.run(prepare(settings))
    except (UnderReplicated, TooFewBrokers) as exc:  # the topics or the cluster disagree with the settings
        log.error("refusing to start: %s", exc)
        raise SystemExit(f"refusing to start: {exc}") from None
    try:
        asyncio.run(catch_up(settings, version))  # far behind: the backlog folded in bulk first
    except Exception as exc:  # noqa: BLE001 - the batches take what the rounds did not write
        log.warning("bulk catch-up stopped (%s: %s); the batches go on from the stored offsets",
                    type(exc).__name__, exc)
    metrics = WorkerMetrics()
    if metrics_port:
        start_http_server(metrics_port, addr="127.0.0.1", registry=metrics.registry)
    app, agents = build(settings, version, metrics)
    if on_built:
        on_built(agents)
    log.info("projecting into version %s", version)
    try:
        faust.Worker(app, loglevel=loglevel, quiet=True, logging_config=logging_config(settings),
                     redirect_stdouts=False).execute_from_commandline()
    except SystemExit as exc:
        # Faust gives up when it cannot bootstrap (the broker went away after `prepare`, or one
        # broker of a cluster died while it met them all: NodeNotReady); once running, it rides
        # out outages itself. Start again rather than exit: nothing was consumed.
        if exc.code and isinstance(exc.__context__, KafkaError) and exc.__context__.retriable:
            log.warning("Kafka unreachable while starting (%s); starting again in %s s",
                        type(exc.__context__).__name__, RESTART_DELAY)
            time.sleep(RESTART_DELAY)
            restart_process()
        raise
