"""Status (new, active, lapsed, archived): stored with the customer's row as of the version's
watermark, moved by sweeps as time passes, filterable from its index, and through the API."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select, text

from customers.commands import CustomerArchived
from customers.events import parse_booking_event
from customers.ids import customer_id, email_hash
from projections import queries
from projections import tables as t
from projections.projector import Position
from testing import samples as s
from testing.harness import eventually, unique
from tests.integration.test_projector_replay import fresh_projector
from tests.integration.test_time_passes import set_watermark

T0 = datetime(2026, 6, 1, 9, tzinfo=timezone.utc)
D = timedelta(days=1)


def booking(meeting_id: str, email: str, start: datetime):
    return parse_booking_event(s.booking_created("ex", meeting_id, email, email[0].upper(), start,
                                                 occurred_at=T0 - 300 * D))


async def statuses(engine) -> dict[str, str]:
    async with engine.connect() as conn:
        return {r.email: r.status for r in await conn.execute(select(t.customers))}


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
async def test_status_is_stored_as_of_the_watermark_and_moves_with_sweeps(backend):
    engine, projector = await fresh_projector(backend)
    await set_watermark(engine, projector.version, T0)
    plan = {"new@example.com": [2], "lapsed@example.com": [-200, -120], "active@example.com": [-200, -40],
            "archived@example.com": [-10], "recent@example.com": [-10]}
    items = [booking(f"m{i}_{n}", email, T0 + d * D) for i, (email, days) in enumerate(plan.items())
             for n, d in enumerate(days)]
    items.append(CustomerArchived(command_id="c1", occurred_at=T0, expert_id="ex",
                                  customer_id=customer_id("k", "ex", "archived@example.com"),
                                  email_hash=email_hash("k", "archived@example.com")))
    await projector.apply([(Position("bookings", 0, i, T0), e) for i, e in enumerate(items)])
    assert await statuses(engine) == {"new@example.com": "new", "lapsed@example.com": "lapsed",
                                      "active@example.com": "active", "archived@example.com": "archived",
                                      "recent@example.com": "new"}

    async with engine.connect() as conn:
        lapsed = await queries.list_customers(conn, queries.ListQuery("ex", status="lapsed", archived=None))
        archived = await queries.list_customers(conn, queries.ListQuery("ex", status="archived", archived=None))
    assert [r.email for r in lapsed["rows"]] == ["lapsed@example.com"] and lapsed["total"] == 1
    assert [r.email for r in archived["rows"]] == ["archived@example.com"]

    # 60 days on: the active customer's last visit is 100 days old, the new one's first visit 58 days,
    # the recent one's 70 days; no meeting started or ended in the window but the new customer's
    swept = await projector.sweep(T0 + 60 * D)
    assert swept.customers == 4  # new (its start), recent and archived (30 days), active (90 days)
    assert await statuses(engine) == {"new@example.com": "active", "lapsed@example.com": "lapsed",
                                      "active@example.com": "lapsed", "archived@example.com": "archived",
                                      "recent@example.com": "active"}
    await projector.sweep(T0 + 100 * D)
    assert (await statuses(engine))["recent@example.com"] == "lapsed"  # 110 days without a visit

    if backend == "postgresql":  # the filter in the default sort is one range of the status's index
        statement = queries.page_statement(projector.version, queries.ListQuery("ex", status="lapsed", archived=None))
        async with engine.connect() as conn:
            await conn.execute(text("SET enable_seqscan = off"))
            plan_text = "\n".join(r[0] for r in await conn.execute(text("EXPLAIN " + str(statement.compile(
                dialect=conn.dialect, compile_kwargs={"literal_binds": True})))))
        assert "ix_customers_status" in plan_text and "Sort" not in plan_text, plan_text
    await engine.dispose()


async def test_the_list_filters_and_shows_status_through_the_api(stack):
    expert = unique("ex_")
    now = datetime.now(timezone.utc).replace(microsecond=0)
    events = [s.booking_created(expert, unique("m_"), email, "P", now + d * D, occurred_at=now - 300 * D)
              for email, d in (("soon@example.com", 3), ("gone@example.com", -200), ("back@example.com", -20),
                               ("back@example.com", -150))]
    assert (await stack.post_bookings(events)).status_code == 202

    async def listed():
        body = (await stack.api.get("/api/customers", headers=stack.auth(expert))).json()
        return body if body["total"] == 3 else None

    body = await eventually(listed, timeout=60)
    assert {c["email"]: c["status"] for c in body["customers"]} == {
        "soon@example.com": "new", "gone@example.com": "lapsed", "back@example.com": "active"}
    lapsed = (await stack.api.get("/api/customers", params={"status": "lapsed"}, headers=stack.auth(expert))).json()
    assert [c["email"] for c in lapsed["customers"]] == ["gone@example.com"] and lapsed["total"] == 1
    gone = lapsed["customers"][0]
    detail = (await stack.api.get(f"/api/customers/{gone['id']}", headers=stack.auth(expert))).json()
    assert detail["status"] == "lapsed"
    bad = await stack.api.get("/api/customers", params={"status": "sleeping"}, headers=stack.auth(expert))
    assert bad.status_code in (400, 422) and "status" in bad.text
