"""Notes: the API publishes commands on the real broker, the worker projects them, the API answers
once the read model shows them (201/204) or with 202 and where to look; 404 across experts;
503 without Kafka. The pages' note forms, behind the session cookie and the origin check."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from api.app import create_app
from api.auth import COOKIE
from testing import samples as s
from testing.harness import asgi_client, eventually, unique
from tests.servers import free_port

NOW = datetime.now(timezone.utc).replace(microsecond=0)


class Api:
    """An app of our own over the stack's database and broker, closed (producer too) at the end."""

    def __init__(self, settings) -> None:
        self.settings = settings
        self.app = create_app(settings)
        self.client = asgi_client(self.app)

    async def __aenter__(self):
        await self.client.__aenter__()
        return self

    async def __aexit__(self, *exc):
        await self.client.__aexit__(*exc)
        await self.app.state.commands.close()
        await self.app.state.engine.dispose()


@pytest.fixture(scope="module")
async def world(stack):
    a, b = unique("ex_"), unique("ex_")
    events = [s.booking_created(a, unique("m_"), "ana@example.com", "Ana Silva", NOW + timedelta(days=2)),
              s.booking_created(b, unique("m_"), "bea@example.com", "Bea Reis", NOW + timedelta(days=3))]
    assert (await stack.post_bookings(events)).status_code == 202
    # a generous bound: the answer comes as soon as the note is visible, this only caps a slow machine
    async with Api(stack.settings.model_copy(update={"notes_visible_wait_seconds": 15})) as api:
        async def ids():
            found = {}
            for expert in (a, b):
                body = (await api.client.get("/api/customers", headers=stack.auth(expert))).json()
                if not body["customers"]:
                    return None
                found[expert] = body["customers"][0]["id"]
            return found

        customer = await eventually(ids)
        yield World(stack, api, a, b, customer)


class World:
    def __init__(self, stack, api, a, b, customer) -> None:
        self.stack, self.api, self.a, self.b, self.customer = stack, api, a, b, customer

    def notes_url(self, expert: str) -> str:
        return f"/api/customers/{self.customer[expert]}/notes"

    async def call(self, method: str, url: str, expert: str, **kw):
        return await self.api.client.request(method, url, headers=self.stack.auth(expert), **kw)


async def test_a_note_is_201_once_visible_then_listed_and_in_the_detail(world):
    r = await world.call("POST", world.notes_url(world.a), world.a, json={"body": "  Prefers mornings.\n"})
    assert r.status_code == 201, r.text
    note = r.json()
    assert note["body"] == "Prefers mornings." and note["id"].startswith("n_")
    assert r.headers["location"] == f"{world.notes_url(world.a)}/{note['id']}"
    assert (await world.call("GET", r.headers["location"], world.a)).json() == note
    listed = (await world.call("GET", world.notes_url(world.a), world.a)).json()["notes"]
    assert note in listed
    detail = (await world.call("GET", f"/api/customers/{world.customer[world.a]}", world.a)).json()
    assert note in detail["notes"]


async def test_notes_are_private_to_the_expert(world):
    note = (await world.call("POST", world.notes_url(world.a), world.a, json={"body": "Private"})).json()
    url = f"{world.notes_url(world.a)}/{note['id']}"
    assert (await world.call("GET", world.notes_url(world.a), world.b)).status_code == 404
    assert (await world.call("GET", url, world.b)).status_code == 404
    assert (await world.call("POST", world.notes_url(world.a), world.b, json={"body": "x"})).status_code == 404
    assert (await world.call("DELETE", url, world.b)).status_code == 404
    # B naming the note under B's own customer does not reach it either
    assert (await world.call("DELETE", f"{world.notes_url(world.b)}/{note['id']}", world.b)).status_code == 404
    assert (await world.call("GET", url, world.a)).status_code == 200
    theirs = (await world.call("GET", world.notes_url(world.b), world.b)).json()["notes"]
    assert all(n["id"] != note["id"] for n in theirs)


async def test_delete_is_204_once_gone(world):
    note = (await world.call("POST", world.notes_url(world.a), world.a, json={"body": "Temporary"})).json()
    url = f"{world.notes_url(world.a)}/{note['id']}"
    r = await world.call("DELETE", url, world.a)
    assert r.status_code == 204, r.text
    assert (await world.call("GET", url, world.a)).status_code == 404
    listed = (await world.call("GET", world.notes_url(world.a), world.a)).json()["notes"]
    assert all(n["id"] != note["id"] for n in listed)
    assert (await world.call("DELETE", url, world.a)).status_code == 404


@pytest.mark.parametrize("payload", [{"body": ""}, {"body": "   \n"}, {"body": "a\x00b"}, {"body": "x" * 10_001},
                                     {}, {"body": 5}])
async def test_invalid_notes_are_422(world, payload):
    assert (await world.call("POST", world.notes_url(world.a), world.a, json=payload)).status_code == 422


async def test_unknown_customers_are_404(world):
    for cid in ("c_" + "0" * 32, "not-an-id"):
        r = await world.call("POST", f"/api/customers/{cid}/notes", world.a, json={"body": "x"})
        assert r.status_code == 404


async def test_202_with_location_when_the_read_model_lags(world):
    # commands to a topic no worker reads: accepted by Kafka, never visible
    unread = world.stack.settings.model_copy(update={"topic_prefix": unique("lag") + ".",
                                                     "notes_visible_wait_seconds": 0.3})
    async with Api(unread) as lagging:
        r = await lagging.client.post(world.notes_url(world.a), json={"body": "Later"},
                                      headers=world.stack.auth(world.a))
        assert r.status_code == 202, r.text
        assert r.json()["status"] == "pending"
        location = r.headers["location"]
        assert location == f"{world.notes_url(world.a)}/{r.json()['id']}"
        assert (await lagging.client.get(location, headers=world.stack.auth(world.a))).status_code == 404


async def test_503_when_kafka_is_unavailable(world):
    note = (await world.call("POST", world.notes_url(world.a), world.a, json={"body": "Kept"})).json()
    down = world.stack.settings.model_copy(update={"kafka_bootstrap_servers": f"127.0.0.1:{free_port()}",
                                                   "kafka_publish_timeout_seconds": 2.0})
    async with Api(down) as broken:
        auth = world.stack.auth(world.a)
        r = await broken.client.post(world.notes_url(world.a), json={"body": "Lost?"}, headers=auth)
        assert r.status_code == 503 and r.headers["retry-after"]
        r = await broken.client.delete(f"{world.notes_url(world.a)}/{note['id']}", headers=auth)
        assert r.status_code == 503
        # reads do not need Kafka
        assert (await broken.client.get(world.notes_url(world.a), headers=auth)).status_code == 200


async def test_page_forms_need_the_cookie_and_this_origin(world):
    cid = world.customer[world.a]
    page = f"/customers/{cid}"
    cookie = {COOKIE: world.stack.token(world.a)}
    client = world.api.client
    form = {"body": "From the page <b>bold</b>"}
    assert (await client.post(f"{page}/notes", data=form)).status_code == 401  # no session
    assert (await client.post(f"{page}/notes", data=form, cookies=cookie)).status_code == 403  # no Origin
    assert (await client.post(f"{page}/notes", data=form, cookies=cookie,
                              headers={"Origin": "http://evil.example"})).status_code == 403
    r = await client.post(f"{page}/notes", data=form, cookies=cookie, headers={"Origin": "http://test"})
    assert r.status_code == 303 and r.headers["location"] == f"{page}?notice=added#notes"
    html = (await client.get(page, cookies=cookie)).text
    assert "From the page &lt;b&gt;bold&lt;/b&gt;" in html and "Note added." not in html
    assert "Note added." in (await client.get(f"{page}?notice=added", cookies=cookie)).text
    note_id = next(n["id"] for n in (await world.call("GET", world.notes_url(world.a), world.a)).json()["notes"]
                   if n["body"] == form["body"])
    r = await client.post(f"{page}/notes/{note_id}/delete", cookies=cookie, headers={"Origin": "http://test"})
    assert r.status_code == 303 and "notice=deleted" in r.headers["location"]
    assert "From the page" not in (await client.get(page, cookies=cookie)).text
    # another expert's session cannot post to this customer
    other = {COOKIE: world.stack.token(world.b)}
    r = await client.post(f"{page}/notes", data=form, cookies=other, headers={"Origin": "http://test"})
    assert r.status_code == 404
