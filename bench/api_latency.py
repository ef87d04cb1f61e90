"""Benchmark 3: `GET /api/customers` for an expert with 10,000 customers among 1,000,000
meetings, against the on-read GROUP BY the platform first shipped, on the same PostgreSQL.

    python -m bench.api_latency [--meetings 1000000] [--customers 10000] [--big-meetings 50000]
                                [--experts 2000] [--requests 200]

Creates a fresh PostgreSQL database (TEST_PG_URL, default the local `customers` role), writes
the read model (`meetings`, `customers`) and the same meetings as `baseline_meetings` joined to
`baseline_services` (see `bench.readmodel`), serves the real API with uvicorn in its own process
(`bench.baseline_app`: the API plus the baseline route), and sends the two first pages in turn,
one request at a time. Also compares the two queries without HTTP, and times the other kinds of
list request. The database is dropped at the end.

`load`, `Served` and `SECRET` (a smaller, summary-rows-only data set served in-process) are used
by `tests/integration/test_api_scale.py`.
"""

from __future__ import annotations

import argparse
import threading
import time
from datetime import datetime, timedelta, timezone

from bench.common import free_port, run_async, summary_ms
from customers.ids import customer_id, email_hash
from projections import tables as t

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
        # one in eleven booked recently and has been to no appointment yet (no last appointment)
        begin = now + timedelta(days=1 + i % 20, hours=i % 24) if i % 11 == 0 else first
        starts = [(begin + timedelta(days=21 * k)).replace(minute=0, second=0, microsecond=0) for k in range(visits)]
        missed = 1 if i % 9 == 0 and visits > 1 else None  # the second visit was a no-show
        past = [start for start in starts if start <= now]
        upcoming = [start for start in starts if start > now]
        spend = (visits * 6000) if i % 5 else 0  # some customers never paid; ties on purpose
        rows.append({
            "version": version, "expert_id": expert_id, "customer_id": customer_id(secret, expert_id, email),
            "email": email, "email_hash": email_hash(secret, email), "name": name,
            "phone": f"+3519{i:08d}" if i % 3 == 0 else None, "search_text": f"{name.lower()} {email}",
            "first_seen_at": first, "appointments": visits, "cancelled": int(i % 7 == 0), "no_shows": int(missed is not None),
            "upcoming": len(upcoming), "past": len(past), "last_appointment_at": max(past, default=None),
            "next_appointment_at": min(upcoming, default=None),
            "session_minutes": 60 * sum(1 for k, start in enumerate(starts)
                                        if start + timedelta(minutes=60) <= now and k != missed),
            "spend": {"eur": spend} if spend else {}, "spend_sort": spend,
            "revenue": {"eur": spend - spend // 10} if spend else {}, "refunded": {},
        })
    return rows


async def load(engine, experts: dict[str, int], now: datetime) -> None:
    """Version 1 live, and the experts' synthetic customers, committed."""
    from projections.physical import create_version

    async with engine.begin() as conn:
        await conn.execute(t.projection_versions.insert().values(
            version=1, state="live", consumer_group="bench-v1", created_at=now, switched_at=now, swept_until=now))
        await create_version(conn, 1, indexed=True)
        await conn.execute(t.projection_offsets.insert().values(
            version=1, topic="bookings", partition=0, offset=0, event_time=now))
        for expert_id, n in experts.items():
            rows = synthetic_customers(expert_id, n, now)
            for i in range(0, len(rows), 2000):
                await conn.execute(t.customers.insert(), rows[i:i + 2000])


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


GOAL_FACTOR = 10


async def timed_get(conn, raw: bytes) -> tuple[float, bytes]:
    started = time.perf_counter()
    status, body = await conn.send(raw)
    elapsed = (time.perf_counter() - started) * 1000
    if status != 200:
        raise RuntimeError(f"HTTP {status}: {body[:300]!r}")
    return elapsed, body


async def http_compare(port: int, token: str, requests: int) -> dict:
    """Our first page and the baseline's, alternately, one request at a time."""
    import json

    from bench.rawhttp import Connection, request_bytes

    host, auth = f"127.0.0.1:{port}", {"Authorization": f"Bearer {token}"}
    ours_raw = request_bytes("GET", "/api/customers", host, auth)
    base_raw = request_bytes("GET", "/bench/baseline/customers", host, auth)
    conn = await Connection.open("127.0.0.1", port)
    try:
        for _ in range(10):  # warm-up: connections, statement caches, buffers
            await timed_get(conn, ours_raw)
            await timed_get(conn, base_raw)
        ours, base = [], []
        for i in range(requests):
            for raw, into in ((ours_raw, ours), (base_raw, base)) if i % 2 else ((base_raw, base), (ours_raw, ours)):
                elapsed, body = await timed_get(conn, raw)
                into.append(elapsed)
        ours_page = json.loads((await conn.send(ours_raw))[1])
        base_page = json.loads((await conn.send(base_raw))[1])
    finally:
        conn.close()
    same = len({c["email"] for c in ours_page["customers"]} & {c["email"] for c in base_page["customers"]})
    return {"ours": summary_ms(ours), "baseline": summary_ms(base),
            "check": {"total_ours": ours_page["total"], "total_baseline": base_page["total"],
                      "first_page_emails_in_common": same, "page_size": len(ours_page["customers"])}}


async def _version_tables(url: str) -> None:
    """Version 1's tables, indexed, for `bench.readmodel.load` to fill."""
    from projections.db import make_engine
    from projections.physical import create_version

    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            await create_version(conn, 1, indexed=True)
    finally:
        await engine.dispose()


async def sql_compare(url: str, expert_id: str, requests: int) -> dict:
    """The two first-page queries without HTTP, on one connection, alternately."""
    from bench.baseline_app import baseline_rows
    from projections import queries
    from projections.db import make_engine

    engine = make_engine(url)
    ours, base = [], []
    try:
        async with engine.connect() as conn:
            for i in range(requests + 10):
                now = datetime.now(timezone.utc)
                started = time.perf_counter()
                await queries.list_customers(conn, queries.ListQuery(expert_id=expert_id))
                middle = time.perf_counter()
                await baseline_rows(conn, expert_id, now)
                if i >= 10:
                    ours.append((middle - started) * 1000)
                    base.append((time.perf_counter() - middle) * 1000)
                await conn.rollback()
    finally:
        await engine.dispose()
    return {"ours": summary_ms(ours), "baseline": summary_ms(base)}


async def counted_afresh(port: int, token: str, url: str, expert_id: str, requests: int,
                         path: str = "/api/customers") -> dict:
    """`path` (our first page) when the expert's rows changed just before each request (their
    generation bumped, outside the timing, as a worker's batch does): nothing kept for the expert's
    generation (`projections.queries.Kept`) serves, the total or the figures are made every time."""
    import asyncpg

    from bench.rawhttp import Connection, request_bytes

    raw = request_bytes("GET", path, f"127.0.0.1:{port}", {"Authorization": f"Bearer {token}"})
    db = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    conn = await Connection.open("127.0.0.1", port)
    try:
        times = []
        for _ in range(requests):
            await db.execute("UPDATE projection_generations SET generation = generation + 1 "
                             "WHERE version = 1 AND scope = $1", expert_id)
            times.append((await timed_get(conn, raw))[0])
    finally:
        conn.close()
        await db.close()
    return summary_ms(times)


async def list_cases(port: int, token: str, customers: int, requests: int, expert_id: str) -> dict:
    """p50/p99 of the other kinds of list request (sorts, deep pages, search, by email)."""
    import json
    from urllib.parse import urlencode

    from bench.rawhttp import Connection, request_bytes

    host, auth = f"127.0.0.1:{port}", {"Authorization": f"Bearer {token}"}
    conn = await Connection.open("127.0.0.1", port)

    def get(params: dict) -> bytes:
        return request_bytes("GET", "/api/customers" + (f"?{urlencode(params)}" if params else ""), host, auth)

    try:
        cursors: dict[str, list[str]] = {}
        for sort in ("last_appointment", "name", "total_spend"):
            cursors[sort], cursor = [], None
            for _ in range(20):
                body = json.loads((await conn.send(get({"sort": sort, **({"cursor": cursor} if cursor else {})})))[1])
                cursor = body["next_cursor"]
                cursors[sort].append(cursor)
        lapsed, cursor = [], None
        for _ in range(20):
            body = json.loads((await conn.send(get({"status": "lapsed", **({"cursor": cursor} if cursor else {})})))[1])
            if not (cursor := body["next_cursor"]):
                break
            lapsed.append(cursor)
        sorts = ["last_appointment", "first_seen", "name", "appointments", "total_spend"]
        cases = {
            "first page, each sort and order": lambda i: {"sort": sorts[i % 5], "order": "asc" if i % 2 else "desc"},
            "deep pages (cursor)": lambda i: {"sort": list(cursors)[i % 3], "cursor": cursors[list(cursors)[i % 3]][i % 20]},
            "search q (substring)": lambda i: {"q": ["ana", "silva", "c00042", "costa", "zzz"][i % 5]},
            "by email": lambda i: {"email": f"c{i % customers:05d}.{expert_id}@example.com"},
            "status=lapsed (first page)": lambda i: {"status": "lapsed"},
            "status=lapsed, deep pages (cursor)": lambda i: {"status": "lapsed", "cursor": lapsed[i % len(lapsed)]}
            if lapsed else {"status": "lapsed"},
            "limit=500": lambda i: {"limit": 500},
        }
        out = {}
        for label, params_for in cases.items():
            n = requests if label != "limit=500" else max(10, requests // 10)
            out[label] = summary_ms([(await timed_get(conn, get(params_for(i))))[0] for i in range(n)])
    finally:
        conn.close()
    return out


async def profile_ours(served, token: str, seconds: float) -> dict | None:
    """py-spy on the API process while it answers only our first page, back to back."""
    from bench.common import Profiler
    from bench.rawhttp import Connection, request_bytes

    raw = request_bytes("GET", "/api/customers", f"127.0.0.1:{served.port}", {"Authorization": f"Bearer {token}"})
    profiler = Profiler(served.pid, f"api-{served.settings.topic_prefix.strip('.')}", seconds).start()
    conn = await Connection.open("127.0.0.1", served.port)
    try:
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            await timed_get(conn, raw)
    finally:
        conn.close()
    return profiler.finish()


async def compare(meetings: int, customers: int, big_meetings: int, experts: int, requests: int,
                  profile: bool = False):
    """The benchmark as run by `bench.run`: a `Result` with the comparison and the details."""
    import asyncpg

    from api.auth import issue_token as token_for
    from bench.common import Result, Row, ServiceProcess, asyncpg_url, bench_database
    from bench.readmodel import BIG
    from bench.readmodel import load as load_marketplace

    result = Result("api", "GET /api/customers, big expert, vs on-read GROUP BY")
    result.sizes = {"meetings": meetings, "big_expert_customers": customers, "big_expert_meetings": big_meetings,
                    "experts": experts, "requests_each": requests,
                    "baseline": "baseline_meetings JOIN baseline_services, GROUP BY customer email, "
                                "ORDER BY newest appointment, LIMIT 50, total by window; index on expert_id"}
    async with bench_database() as (db_name, settings):
        await _version_tables(settings.database_url)
        conn = await asyncpg.connect(asyncpg_url(db_name))
        try:
            started = time.perf_counter()
            counts = await load_marketplace(conn, secret=settings.customer_id_secret, now=datetime.now(timezone.utc),
                                            meetings=meetings, big_customers=customers, big_meetings=big_meetings,
                                            experts=experts)
            result.details["load"] = {"rows": counts, "seconds": round(time.perf_counter() - started, 1)}
        finally:
            await conn.close()
        token = token_for(settings, BIG, ttl_seconds=3600)
        with ServiceProcess(settings, "api-baseline", argv=["-m", "bench.baseline_app", "{port}"]) as served:
            result.details["http"] = await http_compare(served.port, token, requests)
            result.details["counted_afresh"] = await counted_afresh(served.port, token, settings.database_url, BIG,
                                                                    requests)
            result.details["cases"] = await list_cases(served.port, token, customers, max(20, requests // 3), BIG)
            if profile:
                result.details["api_profile"] = await profile_ours(served, token, 8)
        result.details["sql"] = await sql_compare(settings.database_url, BIG, max(50, requests // 2))
    http, sql = result.details["http"], result.details["sql"]
    lapsed = result.details["cases"]["status=lapsed (first page)"]
    afresh = result.details["counted_afresh"]
    factor50 = http["baseline"]["p50_ms"] / http["ours"]["p50_ms"]
    factor99 = http["baseline"]["p99_ms"] / http["ours"]["p99_ms"]
    result.rows += [
        Row("api", "GET /api/customers p50 (HTTP, first page)", http["ours"]["p50_ms"], "ms",
            baseline=http["baseline"]["p50_ms"], baseline_label="on-read GROUP BY, same process and data",
            ratio=round(factor50, 1), goal=f">= {GOAL_FACTOR}x faster", met=factor50 >= GOAL_FACTOR,
            attainment=round(factor50 / GOAL_FACTOR, 3),
            note=f"total {http['check']['total_ours']:,} customers (baseline {http['check']['total_baseline']:,}); "
                 f"{http['check']['first_page_emails_in_common']}/{http['check']['page_size']} first-page "
                 f"customers in common"),
        Row("api", "GET /api/customers p99 (HTTP, first page)", http["ours"]["p99_ms"], "ms",
            baseline=http["baseline"]["p99_ms"], baseline_label="on-read GROUP BY, same process and data",
            ratio=round(factor99, 1), goal=f">= {GOAL_FACTOR}x faster", met=factor99 >= GOAL_FACTOR,
            attainment=round(factor99 / GOAL_FACTOR, 3)),
        *(Row("api", f"GET /api/customers?status=lapsed {q} (HTTP, first page)", lapsed[f"{q}_ms"], "ms",
              baseline=http["baseline"][f"{q}_ms"], baseline_label="on-read GROUP BY (unfiltered), same process and data",
              ratio=round(http["baseline"][f"{q}_ms"] / lapsed[f"{q}_ms"], 1), goal=f">= {GOAL_FACTOR}x faster",
              met=http["baseline"][f"{q}_ms"] / lapsed[f"{q}_ms"] >= GOAL_FACTOR,
              attainment=round(http["baseline"][f"{q}_ms"] / lapsed[f"{q}_ms"] / GOAL_FACTOR, 3))
          for q in ("p50", "p99")),
        *(Row("api", f"GET /api/customers {q}, the expert's rows changed before each request (HTTP, first page)",
              afresh[f"{q}_ms"], "ms", baseline=http["baseline"][f"{q}_ms"],
              baseline_label="on-read GROUP BY, same process and data",
              ratio=round(http["baseline"][f"{q}_ms"] / afresh[f"{q}_ms"], 1),
              note="the total counted on every request (a new generation each time); the rows above keep it "
                   "for the expert's generation, as nothing writes while they run" if q == "p50" else "")
          for q in ("p50", "p99")),
        Row("api", "first-page queries p50 (SQL only)", sql["ours"]["p50_ms"], "ms", baseline=sql["baseline"]["p50_ms"],
            baseline_label="on-read GROUP BY query", ratio=round(sql["baseline"]["p50_ms"] / sql["ours"]["p50_ms"], 1),
            note="ours = live version with as_of and generation + count + page with tags, through SQLAlchemy, "
                 "counted every time"),
    ]
    return result


def main() -> None:
    import json

    from bench.common import env_int

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meetings", type=int, default=env_int("BENCH_API_MEETINGS", 1_000_000))
    parser.add_argument("--customers", type=int, default=env_int("BENCH_API_CUSTOMERS", 10_000))
    parser.add_argument("--big-meetings", type=int, default=env_int("BENCH_API_BIG_MEETINGS", 50_000))
    parser.add_argument("--experts", type=int, default=env_int("BENCH_API_EXPERTS", 2000))
    parser.add_argument("--requests", type=int, default=env_int("BENCH_API_REQUESTS", 200))
    args = parser.parse_args()
    result = run_async(compare(args.meetings, args.customers, args.big_meetings, args.experts, args.requests))
    print(json.dumps({"rows": [r.__dict__ for r in result.rows], "details": result.details}, indent=1))


if __name__ == "__main__":
    main()
