"""One person, one customer: a marketplace with people who booked under two emails goes through the
intake (bookings and signed Stripe webhooks); the duplicates are merged and one pair split again
through the API; the figures equal an independent reading of the plan at every step, the duplicate
ids answer the survivor, later bookings of either email land on it, and a replay rebuilds the same."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from customers.ids import customer_id
from streams.replay import replay
from testing import samples as s
from testing.harness import eventually, unique
from tests.integration.conftest import open_stack

NOW = datetime.now(timezone.utc).replace(microsecond=0)
D = timedelta(days=1)


@pytest.fixture(scope="module", params=["postgresql", "sqlite"])
async def stack(request):
    async with open_stack(request.param) as opened:
        yield opened


class Plan:
    """Bookings (each paid) of one expert: who booked under which email, and what each paid."""

    def __init__(self, expert: str) -> None:
        self.expert, self.bookings, self.stripe, self.paid = expert, [], [], {}

    def book(self, email: str, days: int, amount: int) -> None:
        n = len(self.bookings)
        meeting, pi, ch = f"m_{self.expert}_{n}", f"pi_{self.expert}_{n}", f"ch_{self.expert}_{n}"
        start = NOW + days * D
        booked = min(start - 7 * D, NOW - D)
        self.bookings.append(s.booking_created(self.expert, meeting, email, email.split("@")[0].title(), start,
                                               amount=amount, payment_intent_id=pi, occurred_at=booked))
        at = int(booked.timestamp())
        self.stripe += [s.stripe_event("payment_intent.succeeded", s.payment_intent(pi, amount, "succeeded", fee=amount // 10,
                                                                                 charge=ch, created=at), created=at),
                        s.stripe_event("charge.succeeded", s.charge(ch, pi, amount, fee=amount // 10, created=at),
                                       created=at)]
        self.paid.setdefault(email, []).append(amount)

    def figures(self, *emails: str) -> tuple[int, int]:
        """(appointments, spend) of the people booked under `emails`, read from the plan itself."""
        return sum(len(self.paid[e]) for e in emails), sum(sum(self.paid[e]) for e in emails)


async def send(stack, plan: Plan, since: int = 0, stripe_since: int = 0) -> None:
    assert (await stack.post_bookings(plan.bookings[since:])).status_code == 202
    for event in plan.stripe[stripe_since:]:
        assert (await stack.post_stripe(event)).status_code == 200


async def listed(stack, expert: str) -> dict[str, dict]:
    body = (await stack.api.get("/api/customers", params={"limit": 500}, headers=stack.auth(expert))).json()
    return {c["email"]: c for c in body["customers"]}


def figures_of(c: dict) -> tuple[int, int]:
    return c["appointments"]["total"], sum(a["amount"] for a in c["total_spend"])


async def settled(stack, plan: Plan, groups: list[tuple[str, ...]]):
    """Wait until the list shows exactly one row per group (its first email), with the group's figures."""
    want = {g[0]: plan.figures(*g) for g in groups}

    async def shown():
        rows = await listed(stack, plan.expert)
        return rows if {e: figures_of(c) for e, c in rows.items()} == want else None
    return await eventually(shown, timeout=90, interval=0.5)


async def test_duplicates_merge_split_and_replay_to_the_same_read_model(stack):
    expert = unique("ex_")
    plan = Plan(expert)
    people = {"ana": ("ana@work.example", "ana@home.example"), "bo": ("bo@example.com", "bo.b@example.com"),
              "cy": ("cy@example.com",), "di": ("di@example.com",)}
    for i, emails in enumerate(people.values()):
        for j, email in enumerate(emails):
            plan.book(email, -60 + 10 * i + j, 5000 + 100 * i + 10 * j)
            plan.book(email, 5 + i + j, 6000 + 100 * i + 10 * j)
    await send(stack, plan)
    rows = await settled(stack, plan, [(e,) for emails in people.values() for e in emails])
    auth = stack.auth(expert)
    ids = {email: c["id"] for email, c in rows.items()}

    # the door: what cannot be merged is refused, naming the field
    ana, ana_home, bo, bo_b = ids["ana@work.example"], ids["ana@home.example"], ids["bo@example.com"], ids["bo.b@example.com"]
    assert (await stack.api.post(f"/api/customers/{ana}/merge", json={"duplicate": ana}, headers=auth)).status_code == 422
    nobody = customer_id(stack.settings.customer_id_secret, expert, "nobody@example.com")
    r = await stack.api.post(f"/api/customers/{ana}/merge", json={"duplicate": nobody}, headers=auth)
    assert r.status_code == 404 and "duplicate" in r.text
    other = stack.auth(unique("ex_"))
    assert (await stack.api.post(f"/api/customers/{ana}/merge", json={"duplicate": ana_home}, headers=other)).status_code == 404
    assert (await stack.api.post(f"/api/customers/{ana}/merge", json={"dup": ana_home}, headers=auth)).status_code in (400, 422)

    for survivor, duplicate in ((ana, ana_home), (bo, bo_b)):
        r = await stack.api.post(f"/api/customers/{survivor}/merge", json={"duplicate": duplicate}, headers=auth)
        assert r.status_code == 202 and r.json()["id"] == survivor, r.text
    merged = [people["ana"], people["bo"], people["cy"], people["di"]]
    await settled(stack, plan, merged)
    again = await stack.api.post(f"/api/customers/{ana}/merge", json={"duplicate": ana_home}, headers=auth)
    assert again.status_code == 409

    # the duplicate's id answers the survivor, holding both people's appointments and payments
    d = (await stack.api.get(f"/api/customers/{ana_home}", headers=auth)).json()
    assert d["id"] == ana and d["merged_from"] == [ana_home] and d["emails"] == list(people["ana"])
    assert len(d["appointments"]) == 4 and len(d["payments"]) == 4
    assert d["total_spend"][0]["amount"] == plan.figures(*people["ana"])[1]
    note = await stack.api.post(f"/api/customers/{ana_home}/notes", json={"body": "same person"}, headers=auth)
    assert note.status_code in (201, 202)

    # later bookings of either email land on the survivor
    before = len(plan.bookings), len(plan.stripe)
    plan.book("ana@home.example", 20, 7000)
    await send(stack, plan, *before)
    await settled(stack, plan, merged)

    # split Bo again: as if never merged
    r = await stack.api.post(f"/api/customers/{bo}/unmerge", json={"email": "Bo.B@example.com"}, headers=auth)
    assert r.status_code == 202, r.text
    assert (await stack.api.post(f"/api/customers/{bo}/unmerge", json={"email": "cy@example.com"},
                                 headers=auth)).status_code == 409
    split = [people["ana"], ("bo@example.com",), ("bo.b@example.com",), people["cy"], people["di"]]
    live = await settled(stack, plan, split)
    assert (await stack.api.get(f"/api/customers/{bo_b}", headers=auth)).json()["id"] == bo_b
    detail = (await stack.api.get(f"/api/customers/{ana}", headers=auth)).json()
    assert any(n["body"] == "same person" for n in detail["notes"])

    # a replay folds the same commands over the same history: the same read model
    progress = await replay(stack.settings, grace=0, switch_lag=0)
    assert progress.switched

    async def rebuilt():
        rows = await listed(stack, expert)
        return rows if rows == live else None
    await eventually(rebuilt, timeout=90, interval=0.5)
    after = (await stack.api.get(f"/api/customers/{ana_home}", headers=auth)).json()
    assert after["id"] == ana and after["merged_from"] == [ana_home] and len(after["appointments"]) == 5
    assert any(n["body"] == "same person" for n in after["notes"])
