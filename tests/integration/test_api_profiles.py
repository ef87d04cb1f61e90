"""Custom fields, tags and archive through the real broker and worker: the API publishes commands,
the worker projects them, the API answers 204 once the read model shows them. Values are checked
against the expert's definitions (422 naming the field, nothing published); the list filters by
tag, by field and by archive; another expert sees none of it; an erasure removes all of it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from testing import samples as s
from customers.ids import email_hash
from projections import tables as t
from projections.db import make_engine
from testing.harness import eventually, unique
from tests.integration.test_api_notes import Api

NOW = datetime.now(timezone.utc).replace(microsecond=0)
DEFINITIONS = [
    {"key": "goal", "label": "Goal", "type": "choice", "choices": ["weight", "sleep", "stress"]},
    {"key": "sessions_planned", "label": "Sessions planned", "type": "number"},
    {"key": "referred", "label": "Referred", "type": "boolean"},
    {"key": "birthday", "label": "Birthday", "type": "date"},
    {"key": "allergies", "label": "Allergies", "type": "text"},
]


@pytest.fixture(scope="module")
async def world(stack):
    a, b = unique("ex_"), unique("ex_")
    people = [("ana@example.com", "Ana Silva"), ("bea@example.com", "Bea Reis"), ("caio@example.com", "Caio Lima")]
    events = [s.booking_created(a, unique("m_"), email, name, NOW + timedelta(days=2 + i))
              for i, (email, name) in enumerate(people)]
    events.append(s.booking_created(b, unique("m_"), "ana@example.com", "Ana Silva", NOW + timedelta(days=3)))
    assert (await stack.post_bookings(events)).status_code == 202
    async with Api(stack.settings.model_copy(update={"notes_visible_wait_seconds": 15})) as api:
        async def ids():
            body = (await api.client.get("/api/customers?limit=10", headers=stack.auth(a))).json()
            other = (await api.client.get("/api/customers", headers=stack.auth(b))).json()
            if len(body["customers"]) < 3 or not other["customers"]:
                return None
            return {c["email"]: c["id"] for c in body["customers"]}, other["customers"][0]["id"]

        mine, theirs = await eventually(ids)
        yield World(stack, api, a, b, mine, theirs)


class World:
    def __init__(self, stack, api, a, b, mine, theirs) -> None:
        self.stack, self.api, self.a, self.b, self.mine, self.theirs = stack, api, a, b, mine, theirs

    async def call(self, method: str, url: str, expert: str | None = None, **kw):
        return await self.api.client.request(method, url, headers=self.stack.auth(expert or self.a), **kw)

    async def detail(self, email: str) -> dict:
        return (await self.call("GET", f"/api/customers/{self.mine[email]}")).json()

    async def listed(self, query: str = "", expert: str | None = None) -> list[str]:
        r = await self.call("GET", f"/api/customers?limit=50{query}", expert)
        assert r.status_code == 200, r.text
        return sorted(c["email"] for c in r.json()["customers"])


async def test_definitions_round_trip_and_are_the_experts_own(world):
    assert (await world.call("GET", "/api/custom-fields")).json() == []
    r = await world.call("PUT", "/api/custom-fields", json=DEFINITIONS)
    assert r.status_code == 204, r.text
    assert (await world.call("GET", "/api/custom-fields")).json() == DEFINITIONS
    assert (await world.call("GET", "/api/custom-fields", world.b)).json() == []


@pytest.mark.parametrize("body, field", [
    ([{"key": "Goal", "label": "x", "type": "text"}], "key"),
    ([{"key": "goal", "label": "x", "type": "colour"}], "type"),
    ([{"key": "goal", "label": "x", "type": "choice"}], "choice"),
    ([{"key": "goal", "label": "x", "type": "text"}, {"key": "goal", "label": "y", "type": "text"}], "distinct"),
    ([{"key": f"k{i}", "label": "x", "type": "text"} for i in range(51)], "51"),
])
async def test_bad_definitions_are_422(world, body, field):
    r = await world.call("PUT", "/api/custom-fields", json=body)
    assert r.status_code == 422, r.text
    assert field.lower() in r.text.lower()


async def test_field_values_are_checked_set_cleared_hidden_and_restored(world):
    assert (await world.call("PUT", "/api/custom-fields", json=DEFINITIONS)).status_code == 204
    ana = world.mine["ana@example.com"]
    for values, field in (({"goal": "flying"}, "goal"), ({"sessions_planned": "six"}, "sessions_planned"),
                          ({"referred": "yes"}, "referred"), ({"birthday": "1990-02-30"}, "birthday"),
                          ({"nickname": "A"}, "nickname")):
        r = await world.call("PUT", f"/api/customers/{ana}/fields", json=values)
        assert r.status_code == 422, r.text
        assert field in r.text
    assert (await world.detail("ana@example.com"))["fields"] == {}  # nothing of the refused ones
    r = await world.call("PUT", f"/api/customers/{ana}/fields",
                         json={"goal": "sleep", "sessions_planned": 6, "referred": True, "birthday": "1990-02-28",
                               "allergies": "  peanuts  "})
    assert r.status_code == 204, r.text
    assert (await world.detail("ana@example.com"))["fields"] == {
        "goal": "sleep", "sessions_planned": 6, "referred": True, "birthday": "1990-02-28", "allergies": "peanuts"}
    assert (await world.call("PUT", f"/api/customers/{ana}/fields", json={"allergies": None})).status_code == 204
    assert "allergies" not in (await world.detail("ana@example.com"))["fields"]
    # a definition removed hides its value; defined again, the value is back
    without_goal = [d for d in DEFINITIONS if d["key"] != "goal"]
    assert (await world.call("PUT", "/api/custom-fields", json=without_goal)).status_code == 204
    assert "goal" not in (await world.detail("ana@example.com"))["fields"]
    assert (await world.call("PUT", "/api/custom-fields", json=DEFINITIONS)).status_code == 204
    assert (await world.detail("ana@example.com"))["fields"]["goal"] == "sleep"


async def test_tags_and_field_filters_and_the_archive(world):
    assert (await world.call("PUT", "/api/custom-fields", json=DEFINITIONS)).status_code == 204
    ana, bea, caio = (world.mine[e] for e in ("ana@example.com", "bea@example.com", "caio@example.com"))
    assert (await world.call("PUT", f"/api/customers/{ana}/tags", json=[" VIP ", "vip", "Sleep  Clinic"])).status_code == 204
    assert (await world.call("PUT", f"/api/customers/{bea}/tags", json=["vip"])).status_code == 204
    assert (await world.detail("ana@example.com"))["tags"] == ["sleep clinic", "vip"]
    r = await world.call("PUT", f"/api/customers/{caio}/tags", json=["x" * 41])
    assert r.status_code == 422 and "tags" in r.text
    assert (await world.call("PUT", f"/api/customers/{caio}/tags", json=[f"t{i}" for i in range(21)])).status_code == 422

    assert await world.listed("&tag=vip") == ["ana@example.com", "bea@example.com"]
    assert await world.listed("&tag=vip&tag=sleep%20clinic") == ["ana@example.com"]
    assert await world.listed("&tag=VIP") == ["ana@example.com", "bea@example.com"]
    assert await world.listed("&tag=nobody") == []
    listed = (await world.call("GET", "/api/customers?tag=vip")).json()
    assert listed["total"] == 2 and all("vip" in c["tags"] for c in listed["customers"])

    assert (await world.call("PUT", f"/api/customers/{bea}/fields",
                             json={"goal": "stress", "referred": False, "sessions_planned": 4.0})).status_code == 204
    assert (await world.call("PUT", f"/api/customers/{caio}/fields", json={"goal": "stress"})).status_code == 204
    assert await world.listed("&field.goal=stress") == ["bea@example.com", "caio@example.com"]
    assert await world.listed("&field.goal=stress&field.referred=false") == ["bea@example.com"]
    assert await world.listed("&field.sessions_planned=4") == ["bea@example.com"]
    assert await world.listed("&field.goal=stress&tag=vip") == ["bea@example.com"]
    for bad in ("&field.nope=1", "&field.goal=flying", "&field.sessions_planned=many"):
        r = await world.call("GET", f"/api/customers?{bad[1:]}")
        assert r.status_code == 400 and bad[1:].split("=")[0] in r.text, r.text

    assert (await world.call("POST", f"/api/customers/{caio}/archive")).status_code == 204
    assert await world.listed() == ["ana@example.com", "bea@example.com"]
    assert await world.listed("&archived=true") == ["caio@example.com"]
    assert (await world.call("GET", "/api/customers?archived=false")).json()["total"] == 2
    found = (await world.call("GET", "/api/customers?email=caio@example.com")).json()["customers"]
    assert [c["archived"] for c in found] == [True]  # a look-up by email finds the archived too
    assert (await world.detail("caio@example.com"))["archived"] is True
    for sort in ("name", "first_seen", "appointments", "total_spend", "last_appointment"):
        assert await world.listed(f"&archived=true&sort={sort}") == ["caio@example.com"]
    assert (await world.call("POST", f"/api/customers/{caio}/unarchive")).status_code == 204
    assert await world.listed() == ["ana@example.com", "bea@example.com", "caio@example.com"]


async def test_another_experts_customer_is_404_and_their_list_unchanged(world):
    for method, path, body in (("PUT", "fields", {"goal": "sleep"}), ("PUT", "tags", ["vip"]),
                               ("POST", "archive", None)):
        r = await world.call(method, f"/api/customers/{world.theirs}/{path}", json=body)
        assert r.status_code == 404, r.text
    theirs = (await world.call("GET", "/api/customers", world.b)).json()["customers"]
    assert theirs[0]["tags"] == [] and theirs[0]["archived"] is False
    assert (await world.call("GET", "/api/customers?tag=vip", world.b)).json()["customers"] == []


async def test_an_erasure_removes_the_profile_tags_and_values(world):
    person = "dora@example.com"
    assert (await world.stack.post_bookings([s.booking_created(world.a, unique("m_"), person, "Dora Dias",
                                                               NOW + timedelta(days=9))])).status_code == 202
    cid = await eventually(lambda: _id_of(world, person))
    assert (await world.call("PUT", "/api/custom-fields", json=DEFINITIONS)).status_code == 204
    assert (await world.call("PUT", f"/api/customers/{cid}/tags", json=["erase-me"])).status_code == 204
    assert (await world.call("PUT", f"/api/customers/{cid}/fields", json={"allergies": "dust"})).status_code == 204
    assert (await world.call("POST", f"/api/customers/{cid}/archive")).status_code == 204
    r = await world.api.client.post("/admin/erasures", json={"email": person},
                                    headers=world.stack.auth("ops", roles=["admin"]))
    assert r.status_code == 202, r.text
    engine = make_engine(world.stack.settings.database_url)
    h = email_hash(world.stack.settings.customer_id_secret, person)

    async def gone():
        async with engine.connect() as conn:
            left = 0
            for table in (t.customer_profiles, t.customer_tags, t.customer_field_values):
                left += (await conn.execute(select(func.count()).select_from(table).where(
                    table.c.customer_id == cid))).scalar()
            left += (await conn.execute(select(func.count()).select_from(t.customer_profiles).where(
                t.customer_profiles.c.email_hash == h))).scalar()
            return left == 0 or None
    try:
        assert await eventually(gone)
    finally:
        await engine.dispose()
    assert await world.listed("&tag=erase-me") == []
    assert await world.listed("&archived=true&field.allergies=dust") == []


async def _id_of(world, email: str):
    found = (await world.call("GET", f"/api/customers?email={email}")).json()["customers"]
    return found[0]["id"] if found else None


async def test_the_export_has_one_line_per_customer_with_tags_and_a_column_per_field(world):
    import csv
    import io

    assert (await world.call("PUT", "/api/custom-fields", json=DEFINITIONS)).status_code == 204
    ana = world.mine["ana@example.com"]
    assert (await world.call("PUT", f"/api/customers/{ana}/tags", json=["vip", "export"])).status_code == 204
    assert (await world.call("PUT", f"/api/customers/{ana}/fields", json={"referred": True})).status_code == 204
    r = await world.call("GET", "/api/customers/export.csv")
    lines = list(csv.DictReader(io.StringIO(r.text, newline="")))
    assert [k for k in lines[0] if k.startswith("field_")] == [f"field_{d['key']}" for d in DEFINITIONS]
    rows = {line["email"]: line for line in lines}
    assert len(rows) == len(lines)
    assert rows["ana@example.com"]["tags"] == "export; vip" and rows["ana@example.com"]["field_referred"] == "true"
