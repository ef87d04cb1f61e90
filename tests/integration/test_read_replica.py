"""Readers on a replica: the API reads a real PostgreSQL streaming replica (scripts/pg-replica.sh,
pg_basebackup) through READ_DATABASE_URL while the worker writes the primary, and its `as_of`
and `/readyz` tell the truth about how far behind the replica is."""

from __future__ import annotations

import subprocess
from datetime import datetime, timedelta, timezone

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from testing import samples as s
from testing.harness import ROOT, eventually, fresh_pg_database, unique
from tests.integration.conftest import open_stack

REPLICA_PORT = 5433


def replica(action: str) -> None:
    subprocess.run(["bash", str(ROOT / "scripts" / "pg-replica.sh"), action], check=True, capture_output=True,
                   timeout=300)


@pytest.fixture(scope="module")
def standby():
    replica("drop")  # a fresh base backup: a standby left behind by another run may have lost its WAL
    replica("start")
    try:
        yield
    finally:
        replica("resume")
        replica("stop")


def on_replica(url: str) -> str:
    return make_url(url).set(port=REPLICA_PORT).render_as_string(hide_password=False)


async def _replica_has(url: str) -> bool | None:
    """The replica has replayed the database's creation (a fresh database reaches it a moment later)."""
    u = make_url(on_replica(url))
    try:
        conn = await asyncpg.connect(host=u.host, port=u.port, user=u.username, password=u.password,
                                     database=u.database, timeout=5)
    except (asyncpg.InvalidCatalogNameError, OSError, asyncpg.CannotConnectNowError):
        return None
    await conn.close()
    return True


async def _listed(stack, expert: str, email: str) -> dict | None:
    r = await stack.api.get("/api/customers", params={"email": email}, headers=stack.auth(expert))
    body = r.json()
    return body if body["customers"] else None


async def test_the_api_reads_the_replica_and_says_how_far_behind_it_is(standby):
    url = await fresh_pg_database()
    await eventually(lambda: _replica_has(url), timeout=60)
    async with open_stack("postgresql", database_url=url, read_database_url=on_replica(url),
                          ready_max_lag=2) as stack:
        assert make_url(stack.settings.reads_from).port == REPLICA_PORT
        expert, start = unique("ex_"), datetime.now(timezone.utc) + timedelta(days=5)
        first = "ana@example.com"
        assert (await stack.post_bookings([s.booking_created(expert, unique("m_"), first, "Ana", start)])).status_code == 202
        body = await eventually(lambda: _listed(stack, expert, first), timeout=60)
        assert body["as_of"] is not None

        async def ready():
            r = await stack.api.get("/readyz")
            return r.json() if r.status_code == 200 else None
        state = await eventually(ready, timeout=60)
        assert state["replica"]["standby"] is True

        # the replica stops replaying: the primary moves on, the replica's readers do not see it,
        # and the readiness check says so (the projection's offsets as the replica has them)
        replica("pause")
        try:
            later = [f"p{i}@example.com" for i in range(5)]
            r = await stack.post_bookings([s.booking_created(expert, unique("m_"), e, "P", start) for e in later])
            assert r.status_code == 202
            await eventually(lambda: _applied_on_primary(url, expert, len(later) + 1), timeout=60)
            assert await _listed(stack, expert, later[-1]) is None
            held = (await stack.api.get("/api/customers", params={"email": first},
                                        headers=stack.auth(expert))).json()["as_of"]
            assert held == body["as_of"]  # as_of is the replica's: it did not move

            async def not_ready():
                r = await stack.api.get("/readyz")
                return r.json() if r.status_code == 503 else None
            refused = await eventually(not_ready, timeout=30)
            assert refused["checks"]["lag"] is False and refused["lag"] > 2
        finally:
            replica("resume")
        assert await eventually(lambda: _listed(stack, expert, later[-1]), timeout=60)
        assert await eventually(ready, timeout=60)


async def _applied_on_primary(url: str, expert: str, n: int) -> bool:
    from sqlalchemy import text

    from projections.db import make_engine

    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            got = (await conn.execute(text("SELECT count(*) FROM customers WHERE expert_id = :e"), {"e": expert})).scalar()
        return got >= n
    finally:
        await engine.dispose()
