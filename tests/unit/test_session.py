"""The pages' session routes: signing out is a cookie-authenticated write like any other, so
another site cannot post it."""

from __future__ import annotations

import httpx
import pytest

from api.app import create_app
from api.auth import COOKIE, issue_token
from customers.settings import Settings

SETTINGS = Settings(environment="test", auth_jwt_secret="session-unit-secret-0123456789-abcdefghij",
                    database_url="sqlite+aiosqlite:///:memory:")


@pytest.fixture
async def client():
    app = create_app(SETTINGS)
    cookies = {COOKIE: issue_token(SETTINGS, "ex_1")}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://pages.test",
                                 cookies=cookies) as c:
        yield c
    await app.state.engine.dispose()


@pytest.mark.parametrize("headers", [{}, {"Origin": "https://evil.example"}, {"Origin": "null"},
                                     {"Referer": "https://evil.example/customers"}],
                         ids=["no origin", "another origin", "null origin", "another referer"])
async def test_sign_out_from_another_origin_is_403_and_keeps_the_session(client, headers):
    r = await client.post("/sign-out", headers=headers)
    assert r.status_code == 403 and "set-cookie" not in r.headers


@pytest.mark.parametrize("headers", [{"Origin": "http://pages.test"}, {"Referer": "http://pages.test/customers"}])
async def test_sign_out_from_this_origin_clears_the_cookie(client, headers):
    r = await client.post("/sign-out", headers=headers)
    assert r.status_code == 303 and r.headers["location"] == "/customers"
    assert r.headers["set-cookie"].startswith(f'{COOKIE}=""') and "HttpOnly" in r.headers["set-cookie"]
