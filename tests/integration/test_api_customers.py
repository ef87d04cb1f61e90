"""The list and detail endpoints over data that went the real way: intake -> Kafka -> worker -> read
model, on PostgreSQL and SQLite. Sorts with their tie-breaks, two-way cursors, search, lookup by
email, the detail's figures, tenant isolation and the CSV export."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta, timezone

import pytest

from testing import samples as s
from testing.harness import eventually, unique
from webhooks.signing import signature_header

NOW = datetime.now(timezone.utc).replace(microsecond=0)
SORTS = ["last_appointment", "first_seen", "name", "appointments", "total_spend"]
FORMULA = '=HYPERLINK("http://x.example"), "Esq."'


class Seeded:
    def __init__(self, stack, a: str, b: str) -> None:
        self.stack, self.a, self.b = stack, a, b

    async def get(self, path: str, expert: str | None = None, **params):
        return await self.stack.api.get(path, params=params, headers=self.stack.auth(expert or self.a))

    async def everyone(self, expert: str | None = None, **params) -> list[dict]:
        r = await self.get("/api/customers", expert, limit=500, **params)
        assert r.status_code == 200, r.text
        return r.json()["customers"]

    async def by_email(self, email: str, expert: str | None = None) -> dict:
        return next(c for c in await self.everyone(expert) if c["email"] == email)


async def send_stripe(stack, event: dict) -> None:
    body = json.dumps(event).encode()
    r = await stack.intake.post("/webhooks/stripe", content=body, headers={
        "Stripe-Signature": signature_header(body, stack.settings.webhook_secrets[0]),
        "Content-Type": "application/json"})
    assert r.status_code == 200, r.text


@pytest.fixture(scope="module")
async def seeded(stack) -> Seeded:
    a, b = unique("ex_"), unique("ex_")
    past, future, tie = NOW - timedelta(days=10), NOW + timedelta(days=10), NOW - timedelta(days=20)
    m = {k: unique("m_") for k in ("ana1", "ana2", "bruno", "carla", "t1", "t2", "t3", "formula", "b_ana")}
    pi_ana, ch_ana, pi_bruno, ch_bruno = unique("pi_"), unique("ch_"), unique("pi_"), unique("ch_")
    events = [
        s.booking_created(a, m["ana1"], "ana@example.com", "Ana Silva", past, phone="+351912345678",
                          payment_intent_id=pi_ana),
        s.booking_created(a, m["ana2"], "ana@example.com", "Ana Silva", future, minutes=45),
        s.booking_created(a, m["bruno"], "bruno@example.com", "Bruno Costa", NOW - timedelta(days=5), amount=6000,
                          payment_intent_id=pi_bruno),
        s.booking_event("booking.no_show", a, m["bruno"], NOW - timedelta(days=5) + timedelta(hours=1)),
        s.booking_created(a, m["carla"], "carla@example.com", "Carla Mendes", future),
        s.booking_event("booking.cancelled", a, m["carla"], NOW, reason="ill", cancelled_by="customer"),
        *[s.booking_created(a, m[k], f"{k}@example.com", f"Tie {k.upper()}", tie) for k in ("t1", "t2", "t3")],
        s.booking_created(a, m["formula"], "formula@example.com", FORMULA, past, phone="+4420123456"),
        s.booking_created(b, m["b_ana"], "ana@example.com", "Ana Silva", future),
    ]
    r = await stack.post_bookings(events)
    assert r.status_code == 202, r.text
    for event in [
        s.stripe_event("payment_intent.succeeded", s.payment_intent(pi_ana, 7000, "succeeded", fee=700, charge=ch_ana,
                                                                    metadata={"expert_id": a, "meeting_id": m["ana1"]})),
        s.stripe_event("charge.succeeded", s.charge(ch_ana, pi_ana, 7000, fee=700, brand="mastercard", last4="4444")),
        s.stripe_event("payment_intent.succeeded", s.payment_intent(pi_bruno, 6000, "succeeded", charge=ch_bruno,
                                                                    metadata={"expert_id": a,
                                                                              "meeting_id": m["bruno"]})),
        s.stripe_event("charge.succeeded", s.charge(ch_bruno, pi_bruno, 6000)),
        s.stripe_event("refund.created", s.refund(unique("re_"), ch_bruno, pi_bruno, 2000)),
    ]:
        await send_stripe(stack, event)
    seeded = Seeded(stack, a, b)

    async def ready():
        people = {c["email"]: c for c in await seeded.everyone()}
        return len(people) == 7 and people["ana@example.com"]["total_spend"] \
            and people["bruno@example.com"]["total_spend"] == [{"currency": "eur", "amount": 4000}] \
            and await seeded.everyone(b)

    await eventually(ready)
    seeded.m = m
    seeded.pi_ana = pi_ana
    return seeded


async def walk(seeded: Seeded, limit: int = 2, **params) -> list[dict]:
    """Every page, following next_cursor; checks total on each page."""
    out, cursor = [], None
    while True:
        r = await seeded.get("/api/customers", limit=limit, **params, **({"cursor": cursor} if cursor else {}))
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["total"] == 7 and len(body["customers"]) <= limit
        out += body["customers"]
        cursor = body["next_cursor"]
        if cursor is None:
            return out


KEYS = {  # the sort key as the API shows it (name order is the database's collation: not checked here)
    "last_appointment": lambda c: (c["last_appointment_at"] is not None,  # none: below every time
                                   datetime.fromisoformat(c["last_appointment_at"] or "0001-01-01T00:00:00Z")),
    "first_seen": lambda c: c["first_seen_at"],
    "appointments": lambda c: c["appointments"]["total"],
    "total_spend": lambda c: sum(a["amount"] for a in c["total_spend"]),
}


@pytest.mark.parametrize("sort", SORTS)
async def test_every_sort_pages_through_everyone_once_with_ties_broken_by_id(seeded, sort):
    down = await walk(seeded, sort=sort, order="desc")
    up = await walk(seeded, sort=sort, order="asc")
    assert len({c["id"] for c in down}) == 7
    assert [c["id"] for c in up] == [c["id"] for c in reversed(down)]
    if sort in KEYS:
        key = KEYS[sort]
        assert [c["id"] for c in up] == [c["id"] for c in sorted(up, key=lambda c: (key(c), c["id"]))]
    if sort in ("last_appointment", "first_seen"):  # the three ties share start and first sighting
        positions = [i for i, c in enumerate(up) if c["name"].startswith("Tie ")]
        assert positions == list(range(positions[0], positions[0] + 3))
        ties = [up[i]["id"] for i in positions]
        assert ties == sorted(ties)


async def test_sort_keys_order_the_pages(seeded):
    by_spend = await walk(seeded, sort="total_spend")
    assert [c["email"] for c in by_spend[:2]] == ["ana@example.com", "bruno@example.com"]
    by_count = await walk(seeded, sort="appointments")
    counts = [c["appointments"]["total"] for c in by_count]
    assert counts == sorted(counts, reverse=True) and by_count[0]["email"] == "ana@example.com"
    names = [c["name"] for c in await walk(seeded, sort="name") if c["name"][0].isalpha()]
    assert names[:3] == ["Ana Silva", "Bruno Costa", "Carla Mendes"]
    default = await walk(seeded)  # newest last appointment first; Carla has been to none
    assert default[0]["email"] == "bruno@example.com" and default[-1]["email"] == "carla@example.com"


async def test_prev_cursor_leads_back(seeded):
    first = (await seeded.get("/api/customers", limit=3, sort="name")).json()
    assert first["prev_cursor"] is None
    second = (await seeded.get("/api/customers", limit=3, sort="name", cursor=first["next_cursor"])).json()
    back = (await seeded.get("/api/customers", limit=3, sort="name", cursor=second["prev_cursor"])).json()
    assert [c["id"] for c in back["customers"]] == [c["id"] for c in first["customers"]]
    assert back["prev_cursor"] is None and back["next_cursor"]


async def test_cursors_of_another_query_or_forged_are_400(seeded):
    page = (await seeded.get("/api/customers", limit=2, sort="name")).json()
    assert (await seeded.get("/api/customers", limit=2, sort="first_seen", cursor=page["next_cursor"])).status_code == 400
    assert (await seeded.get("/api/customers", cursor="bm90LWEtY3Vyc29y")).status_code == 400


async def test_search_is_a_case_insensitive_substring_of_name_or_email(seeded):
    async def emails(q):
        r = (await seeded.get("/api/customers", q=q)).json()
        assert r["total"] == len(r["customers"])
        return sorted(c["email"] for c in r["customers"])

    assert await emails("SILVA") == ["ana@example.com"]
    assert await emails("bruno@EXAMPLE") == ["bruno@example.com"]
    assert len(await emails("tie ")) == 3
    assert len(await emails("example.com")) == 7
    assert await emails("%") == [] and await emails("_") == []  # wildcards are literal
    assert await emails("nobody") == []


async def test_lookup_by_email_and_as_of(seeded):
    body = (await seeded.get("/api/customers", email=" ANA@example.com")).json()
    assert body["total"] == 1 and body["customers"][0]["name"] == "Ana Silva"
    assert body["as_of"] is not None and datetime.fromisoformat(body["as_of"]).tzinfo is not None
    assert (await seeded.get("/api/customers", email="nobody@example.com")).json()["total"] == 0


async def test_detail_has_person_stats_history_payments_and_notes(seeded):
    ana = await seeded.by_email("ana@example.com")
    assert ana["appointments"] == {"total": 2, "upcoming": 1, "past": 1, "cancelled": 0}
    d = (await seeded.get(f"/api/customers/{ana['id']}")).json()
    assert (d["name"], d["email"], d["phone"]) == ("Ana Silva", "ana@example.com", "+351912345678")
    assert d["first_seen_at"] and d["as_of"] and d["notes"] == []
    assert d["stats"]["appointments"] == ana["appointments"]
    assert d["stats"]["session_minutes"] == 60 and d["stats"]["no_shows"] == 0
    assert d["total_spend"] == [{"currency": "eur", "amount": 7000}]
    assert d["stats"]["expert_revenue"] == [{"currency": "eur", "amount": 6300}]
    assert d["stats"]["refunded"] == [{"currency": "eur", "amount": 0}]
    assert [(a["id"], a["status"]) for a in d["appointments"]] == [(seeded.m["ana2"], "upcoming"),
                                                                  (seeded.m["ana1"], "completed")]
    assert d["appointments"][1]["payment_status"] == "succeeded"
    assert d["appointments"][0]["payment_status"] == "none"
    assert d["appointments"][1]["price"] == {"amount": 7000, "currency": "eur"}
    pay = d["payments"][0]
    assert (pay["id"], pay["meeting_id"], pay["amount"], pay["status"]) == (seeded.pi_ana, seeded.m["ana1"], 7000,
                                                                           "succeeded")
    assert pay["card"] == {"brand": "mastercard", "last4": "4444"}

    bruno = (await seeded.get(f"/api/customers/{(await seeded.by_email('bruno@example.com'))['id']}")).json()
    assert bruno["stats"]["no_shows"] == 1 and bruno["stats"]["session_minutes"] == 0
    assert bruno["stats"]["refunded"] == [{"currency": "eur", "amount": 2000}]
    assert bruno["appointments"][0]["status"] == "no_show"
    assert bruno["appointments"][0]["payment_status"] == "partially_refunded"
    assert bruno["payments"][0]["refunds"][0]["amount"] == 2000

    carla = (await seeded.get(f"/api/customers/{(await seeded.by_email('carla@example.com'))['id']}")).json()
    assert carla["stats"]["appointments"] == {"total": 0, "upcoming": 0, "past": 0, "cancelled": 1}
    assert carla["appointments"][0]["status"] == "cancelled"


async def test_experts_see_only_their_own_customers(seeded):
    mine = await seeded.by_email("ana@example.com")
    theirs = (await seeded.get("/api/customers", seeded.b)).json()
    assert theirs["total"] == 1 and theirs["customers"][0]["id"] != mine["id"]
    other_id = theirs["customers"][0]["id"]
    foreign = await seeded.get(f"/api/customers/{other_id}")
    unknown = await seeded.get("/api/customers/c_" + "0" * 32)
    malformed = await seeded.get("/api/customers/ana@example.com")
    assert foreign.status_code == unknown.status_code == malformed.status_code == 404
    assert foreign.json() == unknown.json() == malformed.json()
    assert (await seeded.get(f"/api/customers/{mine['id']}", seeded.b)).status_code == 404
    assert (await seeded.get("/api/customers", seeded.b, email="bruno@example.com")).json()["total"] == 0


async def test_export_is_rfc4180_with_formulas_neutralised(seeded):
    r = await seeded.get("/api/customers/export.csv")
    assert r.status_code == 200 and r.headers["content-type"] == "text/csv; charset=utf-8"
    assert r.headers["content-disposition"] == 'attachment; filename="customers.csv"'
    assert r.text.count("\r\n") == 8
    lines = list(csv.DictReader(io.StringIO(r.text, newline="")))
    assert len(lines) == 7
    rows = {line["email"]: line for line in lines}
    assert rows["formula@example.com"]["name"] == "'" + FORMULA
    assert rows["formula@example.com"]["phone"] == "'+4420123456"
    assert len(rows) == len(lines)  # one line per customer
    assert rows["ana@example.com"]["total_spend_eur"] == "7000"
    assert rows["bruno@example.com"]["refunded_eur"] == "2000" and rows["bruno@example.com"]["no_shows"] == "1"
    assert rows["carla@example.com"]["total_spend_eur"] == "0" and rows["carla@example.com"]["cancelled"] == "1"
    assert all(line["archived"] == "false" and line["tags"] == "" for line in lines)
    other = (await seeded.get("/api/customers/export.csv", seeded.b)).text
    assert "bruno@example.com" not in other and other.count("\r\n") == 2


async def test_query_strings_the_list_cannot_use_are_refused(stack):
    auth = stack.auth(unique("ex_"))
    for params in ({"q": "a\x00b"}, {"q": "x" * 201}, {"email": "a\x00@example.com"}, {"email": "x" * 321},
                   {"sort": "nothing"}, {"order": "sideways"}, {"limit": 0}, {"limit": 501}):
        r = await stack.api.get("/api/customers", params=params, headers=auth)
        assert r.status_code == 422, (params, r.status_code)
    assert (await stack.api.get("/api/customers", params={"q": ""}, headers=auth)).status_code == 200


async def test_the_list_is_the_document_its_response_model_gives(seeded):
    """The list is written straight from its rows (`api.schemas.customer_list_json`): the same
    document, value for value and string for string, as the response model built by `summary`."""
    from api.schemas import CustomerList, customer_list_json, summary
    from projections import queries

    engine = queries.make_engine(seeded.stack.settings.database_url)
    try:
        async with engine.connect() as conn:
            page = await queries.list_customers(conn, queries.ListQuery(seeded.a, limit=4))
    finally:
        await engine.dispose()
    want = CustomerList(customers=[summary(r) for r in page["rows"]], total=page["total"],
                        next_cursor=page["next_cursor"], prev_cursor=page["prev_cursor"], as_of=page["as_of"])
    assert json.loads(customer_list_json(page)) == want.model_dump(mode="json")
    body = (await seeded.get("/api/customers", limit=4)).json()
    assert body["customers"] and body == CustomerList.model_validate(body).model_dump(mode="json")


async def test_a_total_is_counted_once_per_generation_of_the_experts_rows(seeded):
    """Turning pages costs no count while nothing of the expert changed; a booking changes the
    generation, and the next page counts again. SQLite keeps no generations: it always counts."""
    stack, expert = seeded.stack, unique("ex_")
    totals = stack.api_app.state.totals

    async def book(n: int) -> None:
        r = await stack.post_bookings([s.booking_created(expert, unique("m_"), f"p{n}@example.com", f"P {n}",
                                                         NOW + timedelta(days=n))])
        assert r.status_code == 202, r.text

    async def total() -> int:
        r = await seeded.get("/api/customers", expert, limit=1)
        assert r.status_code == 200, r.text
        return r.json()["total"]

    await book(1)
    await eventually(lambda: _equals(total, 1))
    before = totals.hits
    assert await total() == 1 and await total() == 1
    assert totals.hits - before == (2 if stack.backend == "postgresql" else 0)
    await book(2)
    await eventually(lambda: _equals(total, 2))  # a new generation: counted again


async def test_insights_are_made_once_per_generation_of_the_experts_rows(seeded):
    """Reloading the insights makes no figures while nothing of the expert changed (kept per
    generation, as the list's totals); a booking changes the generation and the figures, and the
    CSV export reads the same kept figures. SQLite keeps nothing: it reads every time."""
    stack, expert = seeded.stack, unique("ex_")
    kept = stack.api_app.state.insights
    when = NOW + timedelta(days=1)
    month = when.strftime("%Y-%m")

    async def book(n: int) -> None:
        r = await stack.post_bookings([s.booking_created(expert, unique("m_"), f"i{n}@example.com", f"I {n}", when)])
        assert r.status_code == 202, r.text

    async def booked() -> int:
        r = await seeded.get("/api/insights", expert, **{"from": month, "to": month})
        assert r.status_code == 200, r.text
        return r.json()["months"][0]["booked"]

    await book(1)
    await eventually(lambda: _equals(booked, 1))
    before = kept.hits
    assert await booked() == 1 and await booked() == 1
    r = await seeded.get("/api/insights/export.csv", expert, **{"from": month, "to": month})
    assert r.status_code == 200 and r.text.splitlines()[1].endswith(",1"), r.text
    assert kept.hits - before == (3 if stack.backend == "postgresql" else 0)
    await book(2)
    await eventually(lambda: _equals(booked, 2))  # a new generation: made again
    assert await booked() == 2


async def _equals(read, want) -> bool:
    return await read() == want
