"""Bearer tokens with a shared secret (HS256): what is accepted, and everything refused with 401;
the admin role; the origin check of cookie-authenticated writes."""

from __future__ import annotations

import base64
import json
import time

import httpx
import jwt
import pytest
from fastapi import FastAPI, HTTPException
from starlette.requests import Request

from api.auth import COOKIE, AdminDep, PrincipalDep, TokenVerifier, issue_token, same_origin
from customers.settings import Settings

SECRET = "unit-test-secret-0123456789-abcdefghijklmnopqrstuvwxyz-0123456789-abcdef"


def settings(**kw) -> Settings:
    return Settings(environment="test", auth_jwt_secret=SECRET, **kw)


def token(claims: dict | None = None, *, key: str = SECRET, alg: str = "HS256", **headers) -> str:
    now = int(time.time())
    body = {"sub": "ex_1", "iat": now, "exp": now + 600, **(claims or {})}
    return jwt.encode({k: v for k, v in body.items() if v is not None}, key, algorithm=alg, headers=headers or None)


def unsigned(claims: dict) -> str:
    part = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).decode().rstrip("=")  # noqa: E731
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def refused(verifier: TokenVerifier, raw: str) -> bool:
    with pytest.raises(HTTPException) as caught:
        verifier.verify(raw)
    return caught.value.status_code == 401 and caught.value.headers == {"WWW-Authenticate": "Bearer"}


def test_a_valid_token_names_the_expert_and_roles():
    verifier = TokenVerifier(settings())
    p = verifier.verify(token({"roles": ["admin", "support"]}))
    assert p.expert_id == "ex_1" and p.is_admin and p.roles == {"admin", "support"}
    assert verifier.verify(token({"roles": "admin"})).is_admin
    assert not verifier.verify(issue_token(settings(), "ex_2")).is_admin


@pytest.mark.parametrize("raw", [
    pytest.param(unsigned({"sub": "ex_1", "exp": int(time.time()) + 600}), id="alg none"),
    pytest.param(token({"exp": int(time.time()) - 60}), id="expired"),
    pytest.param(token({"nbf": int(time.time()) + 120}), id="not yet valid"),
    pytest.param(token(key="another-secret-0123456789-abcdefghijkl"), id="signed with another key"),
    pytest.param(token({"exp": None}), id="no expiry"),
    pytest.param(token({"sub": None}), id="no subject"),
    pytest.param(token({"sub": "  "}), id="blank subject"),
    pytest.param(token(alg="HS512"), id="algorithm not accepted"),
    pytest.param("not-a-token", id="garbage"),
    pytest.param("", id="empty"),
])
def test_refused_tokens_get_401(raw):
    assert refused(TokenVerifier(settings()), raw)


def test_a_tampered_payload_is_refused():
    head, _, sig = token().split(".")
    forged = base64.urlsafe_b64encode(json.dumps(
        {"sub": "ex_other", "exp": int(time.time()) + 600}).encode()).decode().rstrip("=")
    assert refused(TokenVerifier(settings()), f"{head}.{forged}.{sig}")


def test_issuer_and_audience_are_checked_when_configured():
    verifier = TokenVerifier(settings(auth_jwt_issuer="https://id.example", auth_jwt_audience="customers"))
    good = {"iss": "https://id.example", "aud": "customers"}
    assert verifier.verify(token(good)).expert_id == "ex_1"
    assert verifier.verify(issue_token(verifier.settings, "ex_9")).expert_id == "ex_9"
    for claims in ({"iss": "https://evil.example", "aud": "customers"}, {"iss": "https://id.example", "aud": "other"},
                   {"aud": "customers"}, {"iss": "https://id.example"}):
        assert refused(verifier, token(claims)), claims


def test_hs256_is_refused_when_only_jwks_is_configured():
    verifier = TokenVerifier(Settings(environment="test", auth_jwks_url="http://127.0.0.1:9/jwks.json"))
    assert refused(verifier, token())


def app_with_routes() -> FastAPI:
    app = FastAPI()
    app.state.verifier = TokenVerifier(settings())

    @app.get("/admin/ping")
    async def admin_ping(principal: AdminDep) -> dict:
        return {"expert": principal.expert_id}

    @app.post("/write")
    async def write(principal: PrincipalDep) -> dict:
        return {"expert": principal.expert_id}

    return app


async def test_admin_routes_need_the_admin_role():
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app_with_routes()), base_url="http://t") as c:
        assert (await c.get("/admin/ping")).status_code == 401
        plain = {"Authorization": f"Bearer {issue_token(settings(), 'ex_1')}"}
        assert (await c.get("/admin/ping", headers=plain)).status_code == 403
        admin = {"Authorization": f"Bearer {issue_token(settings(), 'ex_1', roles=['admin'])}"}
        assert (await c.get("/admin/ping", headers=admin)).json() == {"expert": "ex_1"}


async def test_cookie_writes_must_come_from_this_origin():
    cookie = {COOKIE: issue_token(settings(), "ex_1")}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app_with_routes()), base_url="http://t",
                                 cookies=cookie) as c:
        assert (await c.post("/write")).status_code == 403
        assert (await c.post("/write", headers={"Origin": "http://evil.example"})).status_code == 403
        assert (await c.post("/write", headers={"Origin": "null"})).status_code == 403
        assert (await c.post("/write", headers={"Origin": "http://t"})).status_code == 200
        assert (await c.post("/write", headers={"Referer": "http://t/customers/x"})).status_code == 200
        assert (await c.post("/write", headers={"Referer": "http://t.evil.example/"})).status_code == 403
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app_with_routes()), base_url="http://t") as c:
        # a bearer header is never sent by a browser on its own: no origin needed
        bearer = {"Authorization": f"Bearer {issue_token(settings(), 'ex_1')}"}
        assert (await c.post("/write", headers=bearer)).status_code == 200


def request(headers: dict[str, str], scheme: str = "https", host: str = "app.example") -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in {"host": host, **headers}.items()]
    return Request({"type": "http", "method": "POST", "scheme": scheme, "path": "/", "query_string": b"",
                    "headers": raw, "server": (host, 443)})


def test_same_origin_compares_scheme_and_host():
    assert same_origin(request({"origin": "https://app.example"}))
    assert same_origin(request({"origin": "HTTPS://APP.EXAMPLE"}))
    assert not same_origin(request({"origin": "http://app.example"}))
    assert not same_origin(request({"origin": "https://app.example.evil"}))
    assert not same_origin(request({}))


@pytest.mark.parametrize("roles", [{"admin": False}, {"admin": True}, 5, True, 1.5, ["admin", 5], [["admin"]],
                                   ["admin", None], {}],
                         ids=["object false", "object true", "number", "boolean", "float", "list with number",
                              "nested list", "list with null", "empty object"])
def test_roles_other_than_strings_are_401_not_admin(roles):
    assert refused(TokenVerifier(settings()), token({"roles": roles}))


@pytest.mark.parametrize("roles,admin", [(None, False), ([], False), ("admin", True), (["support"], False),
                                         (["admin"], True), ("", False)])
def test_roles_absent_one_string_or_a_list_of_strings(roles, admin):
    assert TokenVerifier(settings()).verify(token({"roles": roles} if roles is not None else {})).is_admin is admin


@pytest.mark.parametrize("sub", ["ex\x00", "ex\ud800", "x" * 201, 5, ["ex_1"], {"id": "ex_1"}],
                         ids=["NUL", "lone surrogate", "too long", "number", "list", "object"])
def test_a_subject_that_cannot_name_an_expert_is_401(sub):
    assert refused(TokenVerifier(settings()), token({"sub": sub}))


@pytest.mark.parametrize("header", ["Bearer ünïcode".encode("latin-1"), b"Bearer \xff\xfe\xfd",
                                    b"Bearer \xe2\x82\xac.\xe2\x82\xac.\xe2\x82\xac", "Bäsic x".encode("latin-1")])
async def test_authorization_with_non_ascii_characters_is_401(header):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app_with_routes()), base_url="http://t") as c:
        r = await c.get("/admin/ping", headers={"Authorization": header})
        assert r.status_code == 401
        cookie = {"Cookie": f"{COOKIE}=".encode() + header}
        assert (await c.get("/admin/ping", headers=cookie)).status_code == 401
