"""`/readyz` and `/metrics`: readiness (database, Kafka, lag bounded) and Prometheus metrics."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import EngineDep, LagDep, MetricsDep, SettingsDep
from api.ops import LagProbe, replica_state
from customers import kafka as names
from projections.queries import reachable

router = APIRouter(include_in_schema=False)


async def _kafka_lag(lag: LagProbe):
    try:
        return await lag.measure()
    except Exception:  # noqa: BLE001 - Kafka or the database is away
        return None


@router.get("/readyz")
async def readyz(settings: SettingsDep, engine: EngineDep, lag: LagDep) -> JSONResponse:
    db = await reachable(engine)
    report = await _kafka_lag(lag) if db else None
    checks = {
        "database": db,
        "kafka": report is not None,
        "lag": report is not None and report.total <= settings.ready_max_lag,
    }
    body = {"ready": all(checks.values()), "checks": checks,
            "lag": report.total if report else None, "max_lag": settings.ready_max_lag}
    if db and (replica := await replica_state(engine)):
        # on a standby the lag above is the projection's as the standby sees it (its applied
        # offsets), so it counts the replication delay too
        body["replica"] = replica
    return JSONResponse(body, status_code=200 if body["ready"] else 503)


@router.get("/metrics")
async def metrics(m: MetricsDep, settings: SettingsDep, engine: EngineDep, lag: LagDep) -> Response:
    db = await reachable(engine)
    m.up.labels("database").set(1 if db else 0)
    report = await _kafka_lag(lag) if db else None
    m.up.labels("kafka").set(1 if report else 0)
    if report:
        for (topic, partition), p in report.partitions.items():
            m.lag.labels(topic, str(partition)).set(p["lag"])
            m.end.labels(topic, str(partition)).set(p["end"])
        if report.newest_event:
            m.freshness.set((datetime.now(timezone.utc) - report.newest_event).total_seconds())
        try:
            dlqs = [settings.topic(names.dlq(n)) for n in (*names.PROJECTED, names.STRIPE_EVENTS)]
            ends = await asyncio.wait_for(names.end_offsets(settings, dlqs), 10)
            for topic in dlqs:
                m.dead_letters.labels(topic).set(sum(v for (t, _), v in ends.items() if t == topic))
        except Exception:  # noqa: BLE001 - reported through customers_dependency_up
            pass
    return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)
