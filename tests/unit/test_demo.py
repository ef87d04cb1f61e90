"""The demo is dated as real data would be: nothing after its `now` but appointments."""

from datetime import datetime, timezone

from ops.demo import PEOPLE, VISITS, demo_stream

NOW = datetime(2026, 12, 5, 15, 30, tzinfo=timezone.utc)


def test_nothing_in_the_demo_happens_after_now_except_appointments():
    bookings, stripe_events = demo_stream(NOW)
    for b in bookings:
        assert datetime.fromisoformat(b["occurred_at"]) <= NOW, b
    for e in stripe_events:
        assert e["created"] <= NOW.timestamp(), e
        assert e["data"]["object"].get("created", 0) <= NOW.timestamp(), e
    starts = [datetime.fromisoformat(b["start_time"]) for b in bookings if b["type"] == "booking.created"]
    assert any(t > NOW for t in starts) and any(t < NOW for t in starts)


def test_each_payment_is_taken_when_its_appointment_is_booked():
    bookings, stripe_events = demo_stream(NOW)
    booked = {b["payment"]["payment_intent_id"]: datetime.fromisoformat(b["occurred_at"]).timestamp()
              for b in bookings if b["type"] == "booking.created"}
    for e in stripe_events:
        if e["type"] == "payment_intent.succeeded":
            assert e["created"] == int(booked[e["data"]["object"]["id"]])
    assert len(PEOPLE) == len(VISITS)
