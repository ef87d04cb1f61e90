"""Time is an input: an appointment becoming past changes the stored counts, through sweeps.

On the real stack (worker sweeping every second), a meeting a few seconds ahead turns from
upcoming to past and the list's counts and order follow, with no new event. Through the
projector: batches count as of the version's watermark, a sweep recounts exactly the customers
whose meetings passed and is idempotent, and a replay's switch sweeps the new version. The
list's default order is exactly the order of the `last_appointment_at` it shows, and the sweep's
look-up is two index ranges of the meetings (PostgreSQL's plan).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select, update

from testing import samples as s
from customers.events import parse_booking_event
from projections import queries
from projections.db import make_engine, migrate
from projections.sweep import passed_statement
from projections import tables as t
from projections.projector import Position, Projector
from projections.versions import begin_replay, ensure_live, live_version
from streams.replay import _hand_over
from testing.harness import eventually, fresh_pg_database, settings_for, unique
from tests.integration.conftest import open_stack
from tests.integration.test_projector_replay import fresh_projector

T0 = datetime(2026, 6, 1, 9, tzinfo=timezone.utc)
H = timedelta(hours=1)


def when(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def shown_order(customers: list[dict]) -> list:
    """The key the default sort must follow: the shown `last_appointment_at`, none below every time."""
    return [(c["last_appointment_at"] is not None, when(c["last_appointment_at"]) or T0, c["id"]) for c in customers]


@pytest.fixture(scope="module", params=["postgresql", "sqlite"])
async def ticking(request):
    async with open_stack(request.param, sweep_interval_seconds=1) as opened:
        yield opened


async def everyone(stack, expert: str, **params) -> dict:
    r = await stack.api.get("/api/customers", params={"limit": 500, **params}, headers=stack.auth(expert))
    assert r.status_code == 200, r.text
    return r.json()


async def test_a_meeting_starting_turns_past_without_any_new_event(ticking):
    expert = unique("ex_")
    now = datetime.now(timezone.utc).replace(microsecond=0)
    earlier = s.booking_created(expert, unique("m_"), "early@example.com", "Early Bird", now - H)
    assert (await ticking.post_bookings([earlier])).status_code == 202
    await eventually(lambda: _total(ticking, expert, 1), timeout=90)

    soon = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=6)
    booked = s.booking_created(expert, unique("m_"), "soon@example.com", "Soon Arriving", soon, minutes=30,
                               occurred_at=now)
    assert (await ticking.post_bookings([booked])).status_code == 202
    before = await eventually(lambda: _total(ticking, expert, 2), timeout=30)
    people = {c["email"]: c for c in before["customers"]}
    assert people["soon@example.com"]["appointments"] == {"total": 1, "upcoming": 1, "past": 0, "cancelled": 0}
    assert people["soon@example.com"]["last_appointment_at"] is None
    assert when(people["soon@example.com"]["next_appointment_at"]) == soon
    # newest last appointment first; one who has been to none is last
    assert [c["email"] for c in before["customers"]] == ["early@example.com", "soon@example.com"]

    async def passed():
        body = await everyone(ticking, expert)
        first = body["customers"][0]
        return body if first["email"] == "soon@example.com" and first["appointments"]["past"] == 1 else None

    after = await eventually(passed, timeout=30, interval=0.5)
    assert datetime.now(timezone.utc) >= soon
    assert after["as_of"] == before["as_of"]  # no event was applied in between
    moved = after["customers"][0]
    assert moved["appointments"] == {"total": 1, "upcoming": 0, "past": 1, "cancelled": 0}
    assert when(moved["last_appointment_at"]) == soon and moved["next_appointment_at"] is None
    assert [c["email"] for c in after["customers"]] == ["soon@example.com", "early@example.com"]
    ascending = await everyone(ticking, expert, order="asc")
    assert [c["email"] for c in ascending["customers"]] == ["early@example.com", "soon@example.com"]
    detail = (await ticking.api.get(f"/api/customers/{moved['id']}", headers=ticking.auth(expert))).json()
    assert detail["stats"]["appointments"] == moved["appointments"]


async def _total(stack, expert: str, n: int):
    body = await everyone(stack, expert)
    return body if body["total"] == n else None


async def test_the_list_is_in_the_order_of_the_last_appointment_it_shows(ticking):
    """Latest starts (upcoming included) would order these 26 Nov, 17 Nov, 25 Nov; the list does not."""
    expert = unique("ex_")
    now = datetime.now(timezone.utc).replace(microsecond=0)
    plan = {  # email: starts relative to now, in days
        "returning@example.com": [-2, 20],  # last 2 days ago, next in 20 days
        "recent@example.com": [-1],
        "regular@example.com": [-3, 1],
        "twin-a@example.com": [-4],  # a tie on the last appointment
        "twin-b@example.com": [-4],
        "new@example.com": [5],  # no appointment yet
        "gone@example.com": [-6],
    }
    events = []
    for email, days in plan.items():
        for d in days:
            events.append(s.booking_created(expert, unique("m_"), email, email.split("@")[0].title(),
                                            now + timedelta(days=d), occurred_at=now - timedelta(days=30)))
    gone = events[-1]
    events.append(s.booking_event("booking.cancelled", expert, gone["meeting_id"], now - timedelta(days=10),
                                  reason="ill", cancelled_by="customer"))
    assert (await ticking.post_bookings(events)).status_code == 202
    body = await eventually(lambda: _total(ticking, expert, len(plan)), timeout=90)
    await eventually(lambda: _cancelled_shown(ticking, expert), timeout=30)

    listed = (await everyone(ticking, expert))["customers"]
    assert shown_order(listed) == sorted(shown_order(listed), reverse=True)
    assert [c["email"] for c in listed][:3] == ["recent@example.com", "returning@example.com", "regular@example.com"]
    assert {c["email"] for c in listed[-2:]} == {"new@example.com", "gone@example.com"}  # no past appointment
    # page by page, both ways, the same order
    walked, cursor = [], None
    while True:
        page = await everyone(ticking, expert, limit=2, **({"cursor": cursor} if cursor else {}))
        walked += page["customers"]
        if not (cursor := page["next_cursor"]):
            break
    assert [c["id"] for c in walked] == [c["id"] for c in listed]
    up = (await everyone(ticking, expert, order="asc"))["customers"]
    assert [c["id"] for c in up] == [c["id"] for c in reversed(listed)]
    assert body["total"] == len(plan)


async def _cancelled_shown(stack, expert: str):
    gone = next(c for c in (await everyone(stack, expert))["customers"] if c["email"] == "gone@example.com")
    return gone["appointments"]["cancelled"] == 1


# --- through the projector, with the time given -------------------------------------------------


def booking(meeting_id: str, email: str, start: datetime):
    return parse_booking_event(s.booking_created("ex", meeting_id, email, email[0].upper(), start,
                                                 occurred_at=T0 - timedelta(days=30)))


async def counted(engine) -> dict:
    async with engine.connect() as conn:
        rows = (await conn.execute(select(t.customers))).all()
    return {r.email: (r.upcoming, r.past, r.last_appointment_at, r.next_appointment_at, r.session_minutes)
            for r in rows}


async def set_watermark(engine, version: int, value: datetime) -> None:
    async with engine.begin() as conn:
        await conn.execute(update(t.projection_versions).where(t.projection_versions.c.version == version)
                           .values(swept_until=value))


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
async def test_batches_count_as_of_the_watermark_and_sweeps_move_it(backend):
    engine, projector = await fresh_projector(backend)
    await set_watermark(engine, projector.version, T0)
    batch = [booking("m1", "ana@example.com", T0 - H), booking("m2", "bea@example.com", T0 + H),
             booking("m3", "cai@example.com", T0 + 5 * H), booking("m4", "bea@example.com", T0 + 3 * H)]
    await projector.apply([(Position("bookings", 0, i, T0), e) for i, e in enumerate(batch)])
    assert await counted(engine) == {
        "ana@example.com": (0, 1, T0 - H, None, 60),
        "bea@example.com": (2, 0, None, T0 + H, 0),
        "cai@example.com": (1, 0, None, T0 + 5 * H, 0),
    }

    swept = await projector.sweep(T0 + 2 * H)  # m2 started and ended in (T0, T0 + 2h]: Bea alone
    assert (swept.since, swept.until, swept.customers) == (T0, T0 + 2 * H, 1)
    assert (await counted(engine))["bea@example.com"] == (1, 1, T0 + H, T0 + 3 * H, 60)
    unchanged = await counted(engine)
    assert await projector.sweep(T0 + 2 * H) is None and await projector.sweep(T0 + H) is None  # no-ops
    assert await counted(engine) == unchanged

    # a batch after the sweep counts as of the new watermark
    await projector.apply([(Position("bookings", 0, 4, T0), booking("m5", "dan@example.com", T0 + 90 * timedelta(minutes=1)))])
    assert (await counted(engine))["dan@example.com"] == (0, 1, T0 + 90 * timedelta(minutes=1), None, 0)

    async with engine.connect() as conn:  # the list reads those columns, in that order
        page = await queries.list_customers(conn, queries.ListQuery("ex"))
    assert [r.email for r in page["rows"]] == ["dan@example.com", "bea@example.com", "ana@example.com",
                                               "cai@example.com"]
    await engine.dispose()


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
async def test_a_replay_switch_sweeps_the_new_version_up_to_the_present(backend):
    engine, _live = await fresh_projector(backend)
    version, _ = await begin_replay(engine, "g")
    started = datetime.now(timezone.utc) - 2 * H  # the replay began two hours ago
    await set_watermark(engine, version, started)
    rebuilding = Projector(engine, version=version, id_secret="k")
    await rebuilding.apply([(Position("bookings", 0, 0, started), booking("m1", "ana@example.com", started + H))])
    assert (await counted(engine))["ana@example.com"][:2] == (1, 0)  # as of the replay's start
    settings = settings_for(engine.url.render_as_string(hide_password=False), customer_id_secret="k")
    await _hand_over(settings, engine, None, [], version)
    async with engine.connect() as conn:
        assert await live_version(conn) == version
    assert (await counted(engine))["ana@example.com"] == (0, 1, started + H, None, 60)
    await engine.dispose()


async def test_the_sweep_reads_two_index_ranges_of_the_meetings():
    engine = make_engine(await fresh_pg_database())
    await migrate(str(engine.url.render_as_string(hide_password=False)))
    await ensure_live(engine, "g")
    now = datetime.now(timezone.utc)
    async with engine.begin() as conn:  # a meeting every minute for two weeks, 50 experts
        await conn.execute(t.meetings.insert(), [
            {"version": 1, "expert_id": f"ex{i % 50}", "meeting_id": f"m{i}", "customer_id": f"c{i % 3000}",
             "start_time": now + timedelta(minutes=i - 10_000), "end_time": now + timedelta(minutes=i - 9_940)}
            for i in range(20_000)])
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.exec_driver_sql("ANALYZE meetings")
        sql = str(passed_statement(1, now, now + timedelta(seconds=30)).compile(
            dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
        plan = "\n".join(r[0] for r in (await conn.exec_driver_sql("EXPLAIN " + sql)).all())
    await engine.dispose()
    assert "ix_meetings_start" in plan and "ix_meetings_end" in plan and "Seq Scan" not in plan, plan
