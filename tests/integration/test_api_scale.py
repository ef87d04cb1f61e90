"""An expert with 10,000 customers on PostgreSQL: the default sort is a range of its `customers`
index (no sort step), the other sorts and the search read the expert's rows by that index and
order or filter them (the table keeps few indexes: every update writes in each), none reads the
meetings or scans the table; pages walk the whole set without overlap, and the CSV export streams
in chunks with flat memory. The plans go to test-artifacts/query-plans.txt."""

from __future__ import annotations

import tracemalloc
from datetime import datetime, timezone

import httpx
import pytest
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ClauseElement, Executable

from api.app import create_app
from api.auth import issue_token
from bench.api_latency import SECRET, Served, load
from projections import queries
from projections.db import make_engine, migrate
from testing.harness import ARTIFACTS, fresh_pg_database, settings_for

EXPERT, OTHER, N = "ex_big", "ex_small", 10_000
ARCHIVED = N // 20  # `_profiles` archives one customer in twenty
SORTS = ("last_appointment", "first_seen", "name", "appointments", "total_spend", "last_contact")
INDEXED = "last_appointment"  # the default sort: its own index


class Explain(Executable, ClauseElement):
    inherit_cache = False

    def __init__(self, statement) -> None:
        self.statement = statement


@compiles(Explain, "postgresql")
def _explain(element, compiler, **kw):
    return "EXPLAIN " + compiler.process(element.statement, **kw)


@pytest.fixture(scope="module")
async def big():
    url = await fresh_pg_database()
    await migrate(url)
    engine = make_engine(url)
    # other experts beside: the big one is a fifth of the table, as one expert of many would be less
    await load(engine, {EXPERT: N, OTHER: 500, **{f"ex_other{i}": 4_000 for i in range(10)}}, datetime.now(timezone.utc))
    await _profiles(engine)
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.exec_driver_sql("VACUUM ANALYZE customers, customer_tags, customer_field_values")
    settings = settings_for(url, customer_id_secret=SECRET)
    yield engine, settings
    await engine.dispose()


async def _profiles(engine) -> None:
    """Tags, field values and the archive on a share of the big expert's customers, as the worker
    writes them: one in five `vip`, one in ten `goal=sleep`, one in twenty archived."""
    from sqlalchemy import select, update

    from projections import tables as t

    async with engine.begin() as conn:
        ids = [r.customer_id for r in await conn.execute(select(t.customers.c.customer_id).where(
            t.customers.c.version == 1, t.customers.c.expert_id == EXPERT).order_by(t.customers.c.customer_id))]
        # and, as an expert's tags and values would be, many others: each customer has three tags of
        # thirty and a goal of ten, so that one tag or one value is a small part of the tables
        await conn.execute(t.customer_tags.insert(), [
            {"version": 1, "expert_id": EXPERT, "tag": tag, "customer_id": c}
            for n, c in enumerate(ids) for tag in {f"t{(n * k) % 30}" for k in (1, 7, 13)} | ({"vip"} if n % 5 == 0 else set())])
        await conn.execute(t.customer_field_values.insert(), [
            {"version": 1, "expert_id": EXPERT, "key": key, "value": value, "customer_id": c}
            for n, c in enumerate(ids) for key, value in (("goal", "sleep" if n % 10 == 0 else f"g{n % 10}"),
                                                          ("level", str(n % 7)), ("city", f"city {n % 40}"))])
        await conn.execute(update(t.customers).where(t.customers.c.version == 1, t.customers.c.expert_id == EXPERT,
                                                     t.customers.c.customer_id.in_(ids[::20])).values(archived=True))


async def plan(conn, statement) -> str:
    return "\n".join(r[0] for r in (await conn.execute(Explain(statement))).all())


async def test_list_queries_read_customers_alone_and_the_default_sort_by_its_index(big):
    engine, _ = big
    report = []
    async with engine.connect() as conn:
        first = await queries.list_customers(conn, queries.ListQuery(EXPERT, sort="name", limit=50))
        for sort in SORTS:
            for order in ("asc", "desc"):
                q = queries.ListQuery(EXPERT, sort=sort, order=order, limit=50)
                page = await queries.list_customers(conn, q)
                deeper = queries.ListQuery(EXPERT, sort=sort, order=order, limit=50, cursor=page["next_cursor"])
                for label, query in (("first page", q), ("next page", deeper)):
                    text = await plan(conn, queries.page_statement(1, query))
                    report.append(f"-- sort={sort} order={order} {label}\n{text}\n")
                    assert "meetings" not in text, text
                    if sort == INDEXED:  # a range of its index: no sort step, no scan
                        assert "ix_customers_latest" in text, text
                        assert "Sort" not in text.replace("Sort Key", ""), text
                        assert "Seq Scan" not in text, text
                    # the other sorts order the expert's rows (here a fifth of the table: the planner
                    # may read it whole); their cost is measured in `bench.api_latency`
        searched = queries.ListQuery(EXPERT, q="silva", sort="last_appointment", limit=50)
        for label, statement in (("count", queries.count_statement(1, queries.ListQuery(EXPERT))),
                                 ("search q=silva, page", queries.page_statement(1, searched)),
                                 ("search q=silva, count", queries.count_statement(1, searched)),
                                 ("by email", queries.page_statement(1, queries.ListQuery(
                                     EXPERT, email=first["rows"][0].email)))):
            text = await plan(conn, statement)
            report.append(f"-- {label}\n{text}\n")
            assert "meetings" not in text, text
            if not label.startswith("search"):  # the search filters the expert's rows (no trigram index)
                assert "ix_customers" in text and "Seq Scan" not in text, text
        for label, query in (("archived=true", queries.ListQuery(EXPERT, archived=True)),
                             ("tag=vip", queries.ListQuery(EXPERT, tags=("vip",))),
                             ("field.goal=sleep", queries.ListQuery(EXPERT, fields=(("goal", "sleep"),))),
                             ("tag=vip&field.goal=sleep&archived=true",
                              queries.ListQuery(EXPERT, tags=("vip",), fields=(("goal", "sleep"),), archived=True))):
            for part, statement in (("page", queries.page_statement(1, query)),
                                    ("count", queries.count_statement(1, query))):
                text = await plan(conn, statement)
                report.append(f"-- {label}, {part}\n{text}\n")
                assert "Seq Scan" not in text and "meetings" not in text, text
                assert "ix_customers" in text or "customers_v1_pkey" in text, text  # a sort's range, or by key
                if query.tags:
                    assert "customer_tags" in text and "pkey" in text, text
                if query.fields:
                    assert "customer_field_values" in text, text
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "query-plans.txt").write_text(
        f"EXPLAIN of the list queries, one expert with {N} customers (PostgreSQL)\n\n" + "\n".join(report))


@pytest.mark.parametrize("sort", SORTS)
async def test_pages_cover_everyone_once_and_back(big, sort):
    engine, _ = big
    seen: list[str] = []
    cursors = []
    async with engine.connect() as conn:
        cursor = None
        while True:
            page = await queries.list_customers(conn, queries.ListQuery(EXPERT, sort=sort, limit=500, cursor=cursor,
                                                                        archived=None))
            assert page["total"] == N
            seen += [r.customer_id for r in page["rows"]]
            cursors.append(page["prev_cursor"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert len(seen) == N == len(set(seen))
        shown = (await queries.list_customers(conn, queries.ListQuery(EXPERT, sort=sort, limit=500)))["total"]
        archive = await queries.list_customers(conn, queries.ListQuery(EXPERT, sort=sort, limit=500, archived=True))
        assert (shown, archive["total"]) == (N - ARCHIVED, ARCHIVED)
        assert all(r.archived for r in archive["rows"])
        # walking back from the last page gives the previous pages exactly
        back = await queries.list_customers(conn, queries.ListQuery(EXPERT, sort=sort, limit=500,
                                                                    cursor=cursors[-1], archived=None))
        assert [r.customer_id for r in back["rows"]] == seen[-1000:-500]


async def export(client: httpx.AsyncClient, settings, expert: str) -> tuple[bytes, int, int, int]:
    """Stream one export: (first chunk, chunks, CRLF-ended lines, peak traced memory)."""
    first, chunks, lines = b"", 0, 0
    tracemalloc.start()
    try:
        async with client.stream("GET", "/api/customers/export.csv",
                                 headers={"Authorization": f"Bearer {issue_token(settings, expert)}"}) as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
            async for chunk in r.aiter_raw():
                first = first or chunk
                chunks += 1
                lines += chunk.count(b"\r\n")
        return first, chunks, lines, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


async def test_export_streams_every_customer_with_flat_memory(big):
    _, settings = big
    with Served(create_app(settings)) as served:
        async with httpx.AsyncClient(base_url=served.url, timeout=60) as client:
            await export(client, settings, OTHER)  # warm caches
            _, _, small_lines, small_peak = await export(client, settings, OTHER)
            first, chunks, lines, peak = await export(client, settings, EXPERT)
    assert first.startswith(b"id,name,email,")
    assert small_lines == 500 + 1 and lines == N + 1 and chunks > 10
    # 20 times the customers, about the same memory: the server (this process) streams
    assert peak < 3 * small_peak, (peak, small_peak)
