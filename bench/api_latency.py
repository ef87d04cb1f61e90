"""Latency of `GET /api/customers` for one expert with 10,000 customers, through uvicorn.

    python -m bench.api_latency [--customers 10000] [--requests 300]

Creates a fresh PostgreSQL database (TEST_PG_URL, default the local `customers` role), loads
synthetic summary rows straight into `customers`, serves the real app with uvicorn on a free
127.0.0.1 port, and prints p50/p99 per kind of request. The database is dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone

import httpx

from customers.ids import customer_id, email_hash
from projections import tables as t

PG_ADMIN = os.environ.get("TEST_PG_URL", "postgresql://customers:customers@127.0.0.1:5432/customers")
SECRET = "bench-customer-id-secret"
FIRST = ["Ana", "Bruno", "Carla", "David", "Eva", "Filipe", "Greta", "Hugo", "Inês", "João", "Lara", "Miguel"]
LAST = ["Silva", "Costa", "Mendes", "Rocha", "Lopes", "Nunes", "Pereira", "Santos", "Ferreira", "Gomes"]


def synthetic_customers(expert_id: str, n: int, now: datetime, *, version: int = 1, secret: str = SECRET):
    """`n` customer summary rows for one expert, as the projection would write them."""
    rows = []
    for i in range(n):
        email = f"person{i:05d}.{expert_id}@example.com"
        name = f"{FIRST[i % len(FIRST)]} {LAST[(i // len(FIRST)) % len(LAST)]}"
        visits = 1 + i % 4
        first = now - timedelta(days=30 + (i * 7) % 700, hours=i % 24)
        schedule = []
        for k in range(visits):
            start = (first + timedelta(days=21 * k)).replace(minute=0, second=0, microsecond=0)
            schedule.append([start.isoformat(), (start + timedelta(minutes=60)).isoformat(), k == 1 and i % 9 == 0])
        spend = (visits * 6000) if i % 5 else 0  # some customers never paid; ties on purpose
        rows.append({
            "version": version, "expert_id": expert_id, "customer_id": customer_id(secret, expert_id, email),
            "email": email, "email_hash": email_hash(secret, email), "name": name,
            "phone": f"+3519{i:08d}" if i % 3 == 0 else None, "search_text": f"{name.lower()} {email}",
            "first_seen_at": first, "latest_start": datetime.fromisoformat(schedule[-1][0]),
            "appointments": visits, "cancelled": int(i % 7 == 0), "no_shows": int(i % 9 == 0 and visits > 1),
            "schedule": schedule, "spend": {"eur": spend} if spend else {}, "spend_sort": spend,
            "revenue": {"eur": spend - spend // 10} if spend else {}, "refunded": {},
        })
    return rows


async def load(engine, experts: dict[str, int], now: datetime) -> None:
    """Version 1 live, and the experts' synthetic customers, committed."""
    async with engine.begin() as conn:
        await conn.execute(t.projection_versions.insert().values(
            version=1, state="live", consumer_group="bench-v1", created_at=now, switched_at=now))
        await conn.execute(t.projection_offsets.insert().values(
            version=1, topic="bookings", partition=0, offset=0, event_time=now))
        for expert_id, n in experts.items():
            rows = synthetic_customers(expert_id, n, now)
            for i in range(0, len(rows), 2000):
                await conn.execute(t.customers.insert(), rows[i:i + 2000])


async def create_database() -> str:
    import asyncpg

    name = f"customers_bench_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return name


async def drop_database(name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def sqlalchemy_url(name: str) -> str:
    return PG_ADMIN.replace("postgresql://", "postgresql+asyncpg://").rsplit("/", 1)[0] + f"/{name}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """The app under uvicorn in a background thread (its own event loop), on 127.0.0.1."""

    def __init__(self, app) -> None:
        import uvicorn

        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, access_log=False,
                                                    log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "Served":
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(30)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


async def measure(client: httpx.AsyncClient, params_for, requests: int) -> list[float]:
    timings = []
    for i in range(requests):
        params = params_for(i)
        started = time.perf_counter()
        r = await client.get("/api/customers", params=params)
        timings.append((time.perf_counter() - started) * 1000)
        r.raise_for_status()
    return timings


async def run(customers: int, requests: int) -> None:
    from api.app import create_app
    from api.auth import issue_token
    from customers.settings import Settings
    from projections.db import make_engine, migrate

    name = await create_database()
    try:
        url = sqlalchemy_url(name)
        await migrate(url)
        engine = make_engine(url)
        now = datetime.now(timezone.utc)
        started = time.perf_counter()
        await load(engine, {"expert_bench": customers, "expert_other": customers // 10}, now)
        async with engine.connect() as conn:
            await conn.exec_driver_sql("ANALYZE customers")
        await engine.dispose()
        print(f"loaded {customers} customers (+{customers // 10} of another expert) "
              f"in {time.perf_counter() - started:.1f}s")

        settings = Settings(environment="test", database_url=url, auth_jwt_secret="bench-jwt-secret-0123456789abcdef",
                            customer_id_secret=SECRET)
        token = issue_token(settings, "expert_bench")
        with Served(create_app(settings)) as served:
            async with httpx.AsyncClient(base_url=served.url, timeout=30,
                                         headers={"Authorization": f"Bearer {token}"}) as client:
                await measure(client, lambda i: {}, 20)  # warm-up
                cursors: dict[str, list[str]] = {}
                for sort in ("last_appointment", "name", "total_spend"):
                    cursors[sort], cursor = [], None
                    for _ in range(20):  # collect cursors of deep pages
                        body = (await client.get("/api/customers", params={"sort": sort, **(
                            {"cursor": cursor} if cursor else {})})).json()
                        cursor = body["next_cursor"]
                        cursors[sort].append(cursor)
                sorts = ["last_appointment", "first_seen", "name", "appointments", "total_spend"]
                cases = {
                    "first page, default sort": lambda i: {},
                    "first page, each sort and order": lambda i: {"sort": sorts[i % 5],
                                                                  "order": "asc" if i % 2 else "desc"},
                    "deep pages (cursor)": lambda i: {"sort": list(cursors)[i % 3],
                                                      "cursor": cursors[list(cursors)[i % 3]][i % 20]},
                    "search q (substring)": lambda i: {"q": ["ana", "silva", "person0042", "costa", "zzz"][i % 5]},
                    "by email": lambda i: {"email": f"person{i % customers:05d}.expert_bench@example.com"},
                    "limit=500": lambda i: {"limit": 500},
                }
                print(f"\nGET /api/customers via uvicorn at {served.url}, {requests} sequential requests per row")
                print(f"{'request':<34}{'p50 ms':>9}{'p99 ms':>9}{'mean ms':>9}")
                for label, params_for in cases.items():
                    n = requests if label != "limit=500" else max(20, requests // 10)
                    timings = await measure(client, params_for, n)
                    print(f"{label:<34}{percentile(timings, 50):>9.1f}{percentile(timings, 99):>9.1f}"
                          f"{statistics.fmean(timings):>9.1f}")
                started = time.perf_counter()
                size = 0
                async with client.stream("GET", "/api/customers/export.csv") as r:
                    async for chunk in r.aiter_bytes():
                        size += len(chunk)
                print(f"\nexport.csv of {customers} customers: {size / 1e6:.1f} MB in "
                      f"{time.perf_counter() - started:.2f}s")
    finally:
        await drop_database(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    asyncio.run(run(args.customers, args.requests))


if __name__ == "__main__":
    main()
