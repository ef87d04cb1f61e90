"""What the API knows about the service's health: projection lag against the broker, metrics.

Lag is measured, not reported by the worker: the live version's applied offsets (in the
database) against each partition's high watermark (from the broker). A worker that stops
consuming therefore shows a growing lag, never a reassuring zero.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime

from prometheus_client import CollectorRegistry, Gauge, Histogram
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from customers import kafka as names
from customers.settings import Settings
from projections import queries


@dataclass
class LagReport:
    version: int | None
    partitions: dict[tuple[str, int], dict[str, int]]  # (topic, partition) -> end, applied, lag
    newest_event: datetime | None

    @property
    def total(self) -> int:
        return sum(p["lag"] for p in self.partitions.values())


class LagProbe:
    """Measures lag; broker answers are cached for `ttl` seconds so scrapes stay cheap."""

    def __init__(self, settings: Settings, engine: AsyncEngine, ttl: float = 2.0) -> None:
        self.settings, self.engine, self.ttl = settings, engine, ttl
        self._ends: dict[tuple[str, int], int] = {}
        self._at = 0.0
        self._lock = asyncio.Lock()

    async def ends(self) -> dict[tuple[str, int], int]:
        async with self._lock:
            if time.monotonic() - self._at > self.ttl:
                topics = [self.settings.topic(n) for n in names.PROJECTED]
                self._ends = await asyncio.wait_for(names.end_offsets(self.settings, topics), 10)
                self._at = time.monotonic()
            return self._ends

    async def measure(self) -> LagReport:
        ends = await self.ends()
        async with self.engine.connect() as conn:
            version, rows = await queries.applied_offsets(conn)
        applied = {(r.topic, r.partition): r.offset + 1 for r in rows}
        newest = max((r.event_time for r in rows if r.event_time), default=None)
        parts = {tp: {"end": end, "applied": applied.get(tp, 0), "lag": max(end - applied.get(tp, 0), 0)}
                 for tp, end in ends.items()}
        return LagReport(version, parts, newest)


async def replica_state(engine: AsyncEngine) -> dict | None:
    """When the API reads a PostgreSQL standby (READ_DATABASE_URL): that it is one, and how old the
    last transaction it replayed is (grows on an idle primary too: the lag that counts is the
    projection's, its applied offsets as the standby sees them). None on a primary or SQLite."""
    if engine.dialect.name != "postgresql":
        return None
    try:
        async with engine.connect() as conn:
            row = (await asyncio.wait_for(conn.execute(text(
                "SELECT pg_is_in_recovery(), EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())")), 5)).one()
    except Exception:  # noqa: BLE001 - reported by the database check
        return None
    if not row[0]:
        return None
    return {"standby": True, "last_replayed_seconds_ago": None if row[1] is None else round(float(row[1]), 3)}


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.latency = Histogram("customers_api_request_seconds", "API request latency by route and status",
                                 ["method", "route", "status"], registry=r,
                                 buckets=(.002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5))
        self.lag = Gauge("customers_projection_lag", "Records in Kafka not yet applied to the live version",
                         ["topic", "partition"], registry=r)
        self.end = Gauge("customers_partition_high_watermark", "Broker high watermark", ["topic", "partition"],
                         registry=r)
        self.freshness = Gauge("customers_newest_applied_event_age_seconds",
                               "Age of the newest event the live version has applied", registry=r)
        self.dead_letters = Gauge("customers_dead_letter_records", "Records in the dead-letter topics",
                                  ["topic"], registry=r)
        self.up = Gauge("customers_dependency_up", "1 when a dependency answers", ["dependency"], registry=r)
