"""Insights through the real intake, broker and worker: a generated marketplace (bookings with
reschedules and cancellations, Stripe histories with refunds, disputes and fees), delivered
duplicated and shuffled. Every monthly figure of `GET /api/insights` equals an independent
reading of the same booking events (done here, apart from the projection's rules), the money of
the period equals the scenario's own ground truth, and an erasure takes the person's figures away.
The CSV export has the same rows."""

from __future__ import annotations

import csv
import io
import json
import os
from datetime import datetime, timedelta
from statistics import median

from testing.harness import eventually, unique
from tests.checks import assert_matches
from tests.scenario import deliveries, generate, stripe_templates

STRIPE_BASE = os.environ.get("STRIPE_API_BASE", "http://127.0.0.1:12111")


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def independent(bookings: list[dict], expert: str, as_of: datetime, months: list[str]) -> dict:
    """The figures the contract describes, read straight off the booking events."""
    meetings: dict[str, dict] = {}
    for e in bookings:
        if e["expert_id"] != expert:
            continue
        m = meetings.setdefault(e["meeting_id"], {})
        if e["type"] == "booking.created":
            m.update(email=e["customer"]["email"].strip().lower(), start=_time(e["start_time"]),
                     end=_time(e["end_time"]), service=e["service"]["id"])
        elif e["type"] == "booking.rescheduled":
            m.update(moved=(_time(e["start_time"]), _time(e["end_time"])))
        elif e["type"] == "booking.cancelled":
            m["cancelled"] = True
    per = {month: {"booked": 0, "cancelled": 0, "completed": 0, "new": 0, "returning": set(), "back90": 0}
           for month in months}
    visits: dict[str, list[datetime]] = {}
    gaps_in_period = []
    for m in meetings.values():
        start, end = m.get("moved", (m["start"], m["end"]))
        month = start.strftime("%Y-%m")
        if month in per:
            per[month]["booked"] += 1
            if m.get("cancelled"):
                per[month]["cancelled"] += 1
            elif end <= as_of:
                per[month]["completed"] += 1
        if not m.get("cancelled"):
            visits.setdefault(m["email"], []).append(start)
    for email, starts in visits.items():
        starts.sort()
        first = starts[0].strftime("%Y-%m")
        if first in per:
            per[first]["new"] += 1
            if len(starts) > 1 and starts[1] - starts[0] <= timedelta(days=90):
                per[first]["back90"] += 1
        for s in starts[1:]:
            if s.strftime("%Y-%m") in per:
                per[s.strftime("%Y-%m")]["returning"].add(email)
        for before, after in zip(starts, starts[1:]):
            if after.strftime("%Y-%m") in per:
                gaps_in_period.append((after - before).days)
    return {"months": {k: {**v, "returning": len(v["returning"])} for k, v in per.items()},
            "median": median(gaps_in_period) if gaps_in_period else None}


def _months_around(now: datetime) -> tuple[str, str]:
    """The months of the scenario's appointments (120 days back to 65 ahead) and of its Stripe
    histories (which start at the end of December 2025)."""
    first = min((now - timedelta(days=130)).strftime("%Y-%m"), "2025-12")
    last = (now + timedelta(days=70)).strftime("%Y-%m")
    return first, last


async def test_every_figure_equals_an_independent_reading_of_the_same_events(stack):
    prefix = unique("in") + "_"
    scenario = generate(160, seed=41, templates=stripe_templates(STRIPE_BASE), prefix=prefix, experts=2,
                        customers_per_expert=30)
    for kind, event in deliveries(scenario, seed=5, max_copies=2):
        r = await (stack.post_bookings([event]) if kind == "booking" else stack.post_stripe(event))
        assert r.status_code in (200, 202), r.text
    await assert_matches(stack, scenario)
    now = datetime.now().astimezone()
    first, last = _months_around(now)
    for expert in scenario.experts:
        async def settled():
            body = (await stack.api.get("/api/insights", params={"from": first, "to": last},
                                        headers=stack.auth(expert))).json()
            want = independent(scenario.bookings, expert, _time(body["counted_as_of"]), [m["month"] for m in body["months"]])
            got = {m["month"]: {"booked": m["booked"], "cancelled": m["cancelled"], "completed": m["completed"],
                                "new": m["new_customers"], "returning": m["returning_customers"]}
                   for m in body["months"]}
            expected = {k: {n: v[n] for n in ("booked", "cancelled", "completed", "new", "returning")}
                        for k, v in want["months"].items()}
            return (body, want) if got == expected else None

        body, want = await eventually(settled, timeout=60)
        period = body["period"]
        assert period["median_days_between_appointments"] == want["median"]
        new = sum(v["new"] for v in want["months"].values())
        back = sum(v["back90"] for v in want["months"].values())
        assert period["returned_within_90_days"] == (round(back / new, 4) if new else None)
        booked = sum(v["booked"] for v in want["months"].values())
        cancelled = sum(v["cancelled"] for v in want["months"].values())
        assert period["cancellation_rate"] == (round(cancelled / booked, 4) if booked else None)
        assert period["top_services"][0]["service"]["id"] == "svc_1"
        # money over the period is the scenario's ground truth, whatever month each part fell in
        truth: dict[str, dict[str, int]] = {}
        for (ex, _email), e in scenario.expected.items():
            if ex != expert:
                continue
            for name, bucket in (("total_spend", e.spend), ("expert_revenue", e.revenue), ("refunded", e.refunded)):
                for cur, amount in bucket.items():
                    truth.setdefault(cur, {"total_spend": 0, "expert_revenue": 0, "refunded": 0})[name] += amount
        got_money = {m["currency"]: {k: m[k] for k in ("total_spend", "expert_revenue", "refunded")}
                     for m in period["money"]}
        assert got_money == {c: v for c, v in truth.items() if any(v.values())}
        assert sum(m["total_spend"] for mo in body["months"] for m in mo["money"]) == \
            sum(v["total_spend"] for v in truth.values())

        r = await stack.api.get("/api/insights/export.csv", params={"from": first, "to": last},
                                headers=stack.auth(expert))
        rows = list(csv.DictReader(io.StringIO(r.text, newline="")))
        assert [row["month"] for row in rows] == [m["month"] for m in body["months"]]
        assert [int(row["completed"]) for row in rows] == [m["completed"] for m in body["months"]]

    # one expert's figures are theirs alone; a bad range is a 400
    other = (await stack.api.get("/api/insights", params={"from": first, "to": last},
                                 headers=stack.auth(unique("ex_")))).json()
    assert all(m["booked"] == 0 and not m["money"] for m in other["months"])
    for params, status in (({"from": "2026-13"}, 422), ({"to": "26-01"}, 422), ({"from": "2026-05", "to": "2026-01"}, 400),
                           ({"from": "2020-01", "to": "2026-01"}, 400)):
        r = await stack.api.get("/api/insights", params=params, headers=stack.auth(unique("ex_")))
        assert r.status_code == status, (params, r.text)

    # an erasure takes the person's appointments out of the monthly figures
    expert = scenario.experts[0]
    person = sorted(email for (ex, email) in scenario.expected if ex == expert)[0]
    before = (await stack.api.get("/api/insights", params={"from": first, "to": last},
                                  headers=stack.auth(expert))).json()
    r = await stack.api.post("/admin/erasures", json={"email": person}, headers=stack.auth("ops", roles=["admin"]))
    assert r.status_code == 202
    remaining = [b for b in scenario.bookings if not (b.get("customer", {}).get("email", "").strip().lower() == person)]
    erased_meetings = {b["meeting_id"] for b in scenario.bookings
                       if b["type"] == "booking.created" and b["customer"]["email"].strip().lower() == person}
    remaining = [b for b in scenario.bookings if b["meeting_id"] not in erased_meetings]

    async def erased():
        body = (await stack.api.get("/api/insights", params={"from": first, "to": last},
                                    headers=stack.auth(expert))).json()
        want = independent(remaining, expert, _time(body["counted_as_of"]), [m["month"] for m in body["months"]])
        got = {m["month"]: m["booked"] for m in body["months"]}
        return got == {k: v["booked"] for k, v in want["months"].items()} and body != before
    assert await eventually(erased, timeout=60)
    json.dumps(before)  # the response is plain JSON
