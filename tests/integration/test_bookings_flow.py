"""Booking events through the real broker into the read model and out of the API."""

from datetime import datetime, timedelta, timezone

from testing import samples as s
from testing.harness import eventually, unique

NOW = datetime.now(timezone.utc).replace(microsecond=0)


async def customers_of(stack, expert, at_least: int = 0, **params):
    r = await stack.api.get("/api/customers", params=params, headers=stack.auth(expert))
    assert r.status_code == 200, r.text
    body = r.json()
    return body if body["total"] >= at_least else None


async def test_bookings_become_customers(stack):
    expert, other = unique("ex_"), unique("ex_")
    past, future = NOW - timedelta(days=10), NOW + timedelta(days=10)
    m1, m2, m3, m4 = (unique("m_") for _ in range(4))
    events = [
        s.booking_created(expert, m1, " Ana@Example.com", "Ana Silva", past, phone="+351912345678"),
        s.booking_created(expert, m2, "ana@example.com", "Ana Silva", future),
        s.booking_created(expert, m3, "bruno@example.com", "Bruno", future + timedelta(days=1)),
        s.booking_event("booking.cancelled", expert, m3, NOW, reason="ill", cancelled_by="customer"),
        # out of order: reschedule of m4 arrives before its booking
        s.booking_event("booking.rescheduled", expert, m4, NOW - timedelta(hours=1),
                        start_time=s.iso(future + timedelta(days=5)), end_time=s.iso(future + timedelta(days=5, hours=1))),
        s.booking_created(expert, m4, "ana@example.com", "Ana Silva", future + timedelta(days=2),
                          occurred_at=NOW - timedelta(days=1)),
        s.booking_created(other, unique("m_"), "ana@example.com", "Ana Silva", future),
    ]
    r = await stack.post_bookings(events)
    assert r.status_code == 202, r.text
    # the same events again: duplicates change nothing
    assert (await stack.post_bookings(events[:3])).status_code == 202

    async def everything_applied():  # the events may be applied over several batches
        body = await customers_of(stack, expert, 2)
        ana = body and next(c for c in body["customers"] if c["email"] == "ana@example.com")
        return body if ana and ana["appointments"]["total"] + ana["appointments"]["cancelled"] >= 3 else None

    body = await eventually(everything_applied)
    ana = next(c for c in body["customers"] if c["email"] == "ana@example.com")
    assert ana["appointments"] == {"total": 3, "upcoming": 2, "past": 1, "cancelled": 0}
    assert ana["phone"] == "+351912345678"
    assert ana["id"].startswith("c_") and "ana" not in ana["id"]
    assert body["as_of"] is not None
    bruno = next(c for c in body["customers"] if c["email"] == "bruno@example.com")
    assert bruno["appointments"] == {"total": 0, "upcoming": 0, "past": 0, "cancelled": 1}

    detail = (await stack.api.get(f"/api/customers/{ana['id']}", headers=stack.auth(expert))).json()
    moved = next(a for a in detail["appointments"] if a["id"] == m4)
    assert moved["start_time"].startswith(s.iso(future + timedelta(days=5))[:16])
    assert [a["status"] for a in detail["appointments"]] == ["upcoming", "upcoming", "completed"]

    # tenant isolation: the other expert's customer id for the same email is a 404 here
    other_body = await eventually(lambda: customers_of(stack, other, 1))
    other_id = other_body["customers"][0]["id"]
    assert other_id != ana["id"]
    r = await stack.api.get(f"/api/customers/{other_id}", headers=stack.auth(expert))
    assert r.status_code == 404
    assert (await stack.api.get("/api/customers/c_unknown", headers=stack.auth(expert))).json() == r.json()


async def test_invalid_batch_publishes_nothing(stack):
    expert = unique("ex_")
    good = s.booking_created(expert, unique("m_"), "carla@example.com", "Carla", NOW + timedelta(days=3))
    bad = s.booking_created(expert, unique("m_"), "carla@example.com", "Carla", NOW)
    bad["price"] = {"amount": -5, "currency": "EURO"}
    r = await stack.post_bookings([good, bad])
    assert r.status_code == 422
    assert [e["index"] for e in r.json()["errors"]] == [1]
    marker = s.booking_created(expert, unique("m_"), "dora@example.com", "Dora", NOW + timedelta(days=4))
    assert (await stack.post_bookings(marker)).status_code == 202
    body = await eventually(lambda: customers_of(stack, expert, 1))
    assert [c["email"] for c in body["customers"]] == ["dora@example.com"]


async def test_ingest_and_read_need_tokens(stack):
    r = await stack.intake.post("/events/bookings", json=[])
    assert r.status_code == 401
    assert (await stack.api.get("/api/customers")).status_code == 401
    assert (await stack.api.get("/api/customers", headers={"Authorization": "Bearer nope"})).status_code == 401
