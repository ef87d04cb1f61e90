"""The pages over the real pipeline: sessions (development sign-in or 401), list and detail
content and accessibility landmarks, security headers, and an access log without personal data."""

from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta, timezone
from urllib.parse import unquote

import pytest

from api.auth import COOKIE
from testing import samples as s
from testing.harness import eventually, unique
from tests.integration.test_api_notes import Api

NOW = datetime.now(timezone.utc).replace(microsecond=0)
ORIGIN = {"Origin": "http://test"}


@pytest.fixture(scope="module")
async def site(stack):
    a, b = unique("ex_"), unique("ex_")
    people = [("ana@example.com", "Ana Silva"), ("bruno@example.com", "Bruno Costa"), ("carla@example.com", "Carla")]
    events = [s.booking_created(a, unique("m_"), email, name, NOW + timedelta(days=i + 1), amount=5000 + i * 1000)
              for i, (email, name) in enumerate(people)]
    events.append(s.booking_created(a, unique("m_"), "ana@example.com", "Ana Silva", NOW - timedelta(days=9)))
    events.append(s.booking_created(b, unique("m_"), "zoe@example.com", "Zoe Other", NOW + timedelta(days=1)))
    assert (await stack.post_bookings(events)).status_code == 202
    settings = stack.settings.model_copy(update={"dev_sign_in": True})
    async with Api(settings) as api:
        async def ready():
            body = (await api.client.get("/api/customers", headers=stack.auth(a))).json()
            return body["total"] == 3 and (await api.client.get("/api/customers", headers=stack.auth(b))).json()["total"]

        await eventually(ready)
        yield Site(stack, api, a, b)


class Site:
    def __init__(self, stack, api, a, b) -> None:
        self.stack, self.api, self.a, self.b = stack, api, a, b

    def cookie(self, expert: str | None = None) -> dict:
        return {COOKIE: self.stack.token(expert or self.a)}

    async def page(self, path: str, expert: str | None = None, **params):
        return await self.api.client.get(path, params=params, cookies=self.cookie(expert))


async def test_without_dev_sign_in_pages_answer_401_and_there_is_no_sign_in(stack):
    async with Api(stack.settings) as api:
        r = await api.client.get("/customers")
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert "Sign-in required" in r.text
        assert (await api.client.get("/dev/sign-in")).status_code == 404
        expired = {COOKIE: stack.token("ex_x", ttl_seconds=-60)}
        assert (await api.client.get("/customers", cookies=expired)).status_code == 401


async def test_dev_sign_in_sets_an_httponly_lax_cookie_and_comes_back(site):
    client = site.api.client
    r = await client.get("/customers/c_123?x=1")
    assert r.status_code == 303 and unquote(r.headers["location"]) == "/dev/sign-in?next=/customers/c_123?x=1"
    form = await client.get("/dev/sign-in?next=/customers")
    assert form.status_code == 200 and '<label for="expert_id">' in form.text
    assert (await client.post("/dev/sign-in", data={"expert_id": site.a})).status_code == 403  # no Origin
    r = await client.post("/dev/sign-in", data={"expert_id": site.a, "next": "/customers?q=ana"}, headers=ORIGIN)
    assert r.status_code == 303 and r.headers["location"] == "/customers?q=ana"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=") and "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
    token = cookie.split(";")[0].split("=", 1)[1]
    page = await client.get("/customers", cookies={COOKIE: token})
    assert page.status_code == 200 and "Ana Silva" in page.text
    for evil in ("//evil.example/x", "https://evil.example", "/\\evil.example"):
        r = await client.post("/dev/sign-in", data={"expert_id": site.a, "next": evil}, headers=ORIGIN)
        assert r.headers["location"] == "/customers"
    r = await client.get(f"/dev/sign-in?expert_id={site.a}&next=/customers")
    assert r.status_code == 303 and COOKIE in r.headers["set-cookie"]
    assert (await client.post("/sign-out", cookies={COOKIE: token})).status_code == 403  # no Origin
    out = await client.post("/sign-out", cookies={COOKIE: token}, headers=ORIGIN)
    assert out.status_code == 303 and 'customers_session=""' in out.headers["set-cookie"]


async def test_list_page_is_accessible_and_searchable(site):
    r = await site.page("/customers")
    html = r.text
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
    assert 'class="skip-link" href="#main"' in html and '<main id="main"' in html
    assert '<label for="q">' in html and "<caption" in html and html.count('<th scope="col"') == 7
    assert 'aria-sort="descending"' in html  # the default sort, newest first
    assert "3 customers" in html and "Ana Silva" in html and "Zoe" not in html
    assert html.count('data-label="Total spend">—</td>') == 3  # prices booked are not spend: nothing paid
    assert '/static/search.js' in html and "https://" not in html  # nothing from elsewhere
    searched = (await site.page("/customers", q="BRUNO")).text
    assert "Bruno Costa" in searched and "Ana Silva" not in searched and "1 customer matching" in searched
    by_name = (await site.page("/customers", sort="name", order="asc", limit=1)).text
    assert "Ana Silva" in by_name and "Bruno Costa" not in by_name and 'rel="next"' in by_name
    cursor = re.search(r'rel="next" href="/customers\?([^"]+)"', by_name).group(1).replace("&amp;", "&")
    second = (await site.api.client.get(f"/customers?{cursor}", cookies=site.cookie())).text
    assert "Bruno Costa" in second and 'rel="prev"' in second
    stale = await site.api.client.get("/customers?sort=name&cursor=garbage", cookies=site.cookie())
    assert stale.status_code == 303 and "cursor" not in stale.headers["location"]


async def test_detail_page_shows_person_stats_appointments_and_notes_form(site):
    ana = (await site.api.client.get("/api/customers", params={"email": "ana@example.com"},
                                     headers=site.stack.auth(site.a))).json()["customers"][0]
    html = (await site.page(f"/customers/{ana['id']}")).text
    for text in ("Ana Silva", "ana@example.com", "Quick stats", "Appointments", "No-shows", "Session time",
                 "Total spend", "Your revenue", "Refunded", "Upcoming", "Past and cancelled", "Payments",
                 "No payments yet.", "Notes", '<label for="note-body">Add a note</label>',
                 f'action="/customers/{ana["id"]}/notes"', "Completed", "Consultation"):
        assert text in html, text
    missing = await site.page("/customers/c_" + "f" * 32)
    assert missing.status_code == 404 and "Customer not found" in missing.text
    assert (await site.page(f"/customers/{ana['id']}", site.b)).status_code == 404


async def test_security_headers_on_pages_and_api(site):
    for r in (await site.page("/customers"), await site.api.client.get("/api/customers", headers=site.stack.auth(site.a))):
        assert "default-src 'self'" in r.headers["content-security-policy"]
        assert r.headers["x-content-type-options"] == "nosniff" and r.headers["x-frame-options"] == "DENY"


async def test_access_log_names_routes_never_emails_or_tokens(site, caplog):
    token = site.stack.token(site.a)
    with caplog.at_level(logging.INFO, logger="api.access"):
        await site.api.client.get("/api/customers", params={"email": "ana@example.com", "q": "secret@example.com"},
                                  headers={"Authorization": f"Bearer {token}"})
        await site.api.client.get("/customers", params={"q": "ana@example.com"}, cookies={COOKIE: token})
        await site.api.client.get("/api/customers/ana@example.com", headers={"Authorization": f"Bearer {token}"})
    lines = [r.getMessage() for r in caplog.records if r.name == "api.access"]
    assert len(lines) == 3
    assert lines[0].startswith("GET /api/customers 200 ") and lines[1].startswith("GET /customers 200 ")
    assert lines[2].startswith("GET /api/customers/{customer_id} 404 ")
    text = "\n".join(lines)
    assert "@" not in text and "example.com" not in text and token not in text and token[:20] not in text


async def test_the_page_shows_only_messages_the_service_wrote(site):
    ana = (await site.api.client.get("/api/customers", params={"email": "ana@example.com"},
                                     headers=site.stack.auth(site.a))).json()["customers"][0]
    page = f"/customers/{ana['id']}"
    forged = await site.page(page, notice="invalid", problem="your card was declined, call +1 555 0100")
    assert forged.status_code == 200 and "declined" not in forged.text and "555" not in forged.text
    assert "That could not be saved." in forged.text
    assert "call us" not in (await site.page(page, notice="call us now")).text

    r = await site.api.client.post(f"{page}/tags", data={"tags": "x" * 41}, cookies=site.cookie(), headers=ORIGIN)
    assert r.status_code == 303 and "problem=tag-length" in r.headers["location"]
    shown = await site.api.client.get(r.headers["location"].split("#")[0], cookies=site.cookie())
    assert "That could not be saved: each tag must be 1 to 40 characters." in shown.text


async def test_insights_months_are_real_months_on_the_page_and_the_api(site):
    for params in ({"from": "0000-01", "to": "0000-12"}, {"to": "0000-05"}, {"from": "0000-12"}):
        r = await site.page("/insights", **params)
        assert r.status_code == 303 and r.headers["location"] == "/insights", params
        api = await site.api.client.get("/api/insights", params=params, headers=site.stack.auth(site.a))
        assert api.status_code == 422 and next(iter(params)) in api.text, params
    early = await site.api.client.get("/api/insights", params={"to": "0001-05"}, headers=site.stack.auth(site.a))
    assert early.status_code == 200 and early.json()["from"] == "0001-01" and early.json()["to"] == "0001-05"
    assert (await site.page("/insights", to="0001-05")).status_code == 200
    assert (await site.page("/insights", **{"from": "9999-12"})).status_code == 200
