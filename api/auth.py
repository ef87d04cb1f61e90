"""Bearer tokens: HS256 with a shared secret, or RS256 keys from a JWKS endpoint.

The `sub` claim is the expert id; an `admin` entry in `roles` opens `/admin/...`.
Tokens without a signature (`alg: none`), expired, not yet valid or badly signed are refused.

The pages carry the same token in an HttpOnly, SameSite=Lax cookie. A request that changes
something and authenticates with that cookie must also come from this origin: its `Origin`
header (or, without one, its `Referer`) must name the host it was sent to. Requests that carry
the token in an `Authorization` header need no such check: a browser never adds that header
on its own.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlsplit

import jwt
from fastapi import Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer

from customers.settings import Settings

COOKIE = "customers_session"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

bearer_scheme = HTTPBearer(auto_error=False, description="A JWT whose `sub` is the expert id")
cookie_scheme = APIKeyCookie(name=COOKIE, auto_error=False, description="The pages' session: the same JWT")


@dataclass(frozen=True)
class Principal:
    expert_id: str
    roles: frozenset[str]

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles


class TokenVerifier:
    """Checks tokens. The JWKS key set is cached for `jwks_lifespan` seconds; a token naming an
    unknown `kid` makes it refetch the set, at most once per `jwks_cooldown` seconds."""

    def __init__(self, settings: Settings, *, jwks_lifespan: float = 300, jwks_cooldown: float = 30) -> None:
        self.settings = settings
        # No per-kid cache: a key removed from the set stops working when the set is refetched.
        self._jwks = jwt.PyJWKClient(settings.auth_jwks_url, cache_keys=False, lifespan=jwks_lifespan,
                                     cooldown_duration=jwks_cooldown, timeout=5) \
            if settings.auth_jwks_url else None
        self.offline = self._jwks is None  # no check ever waits on the network

    def _key(self, token: str, header: dict):
        alg = header.get("alg")
        if alg == "HS256" and self.settings.auth_jwt_secret:
            return self.settings.auth_jwt_secret, ["HS256"]
        if alg == "RS256" and self._jwks is not None:
            try:
                return self._jwks.get_signing_key_from_jwt(token).key, ["RS256"]
            except jwt.PyJWKClientError as exc:
                raise jwt.InvalidTokenError(f"no signing key: {exc}") from exc
        raise jwt.InvalidAlgorithmError(f"algorithm {alg!r} is not accepted")

    def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
            key, algorithms = self._key(token, header)
            claims = jwt.decode(
                token, key, algorithms=algorithms,
                audience=self.settings.auth_jwt_audience or None,
                issuer=self.settings.auth_jwt_issuer or None,
                options={"require": ["sub", "exp"], "verify_aud": bool(self.settings.auth_jwt_audience)},
                leeway=5,
            )
        except (jwt.PyJWTError, ValueError) as exc:
            raise unauthorized("invalid token") from exc
        if not _expert_id(claims["sub"]):
            raise unauthorized("invalid token")
        return Principal(expert_id=claims["sub"], roles=_roles(claims.get("roles")))


def _expert_id(sub) -> bool:
    """A `sub` that can name an expert in the read model: text of 1-200 characters, no NUL."""
    if not isinstance(sub, str) or not sub.strip() or len(sub) > 200 or "\x00" in sub:
        return False
    try:
        sub.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate
        return False
    return True


def _roles(claim) -> frozenset[str]:
    """`roles`: absent, one string, or a list of strings; any other shape is not a token of ours."""
    if claim is None:
        return frozenset()
    if isinstance(claim, str):
        return frozenset([claim])
    if isinstance(claim, list) and all(isinstance(role, str) for role in claim):
        return frozenset(claim)
    raise unauthorized("invalid token")


def unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": "Bearer"})


def issue_token(settings: Settings, expert_id: str, *, roles: list[str] | None = None,
                ttl_seconds: int = 12 * 3600) -> str:
    """An HS256 token for development and tests."""
    if not settings.auth_jwt_secret:
        raise ValueError("AUTH_JWT_SECRET is not set")
    now = int(time.time())
    claims = {"sub": expert_id, "iat": now, "nbf": now, "exp": now + ttl_seconds, "roles": roles or []}
    if settings.auth_jwt_issuer:
        claims["iss"] = settings.auth_jwt_issuer
    if settings.auth_jwt_audience:
        claims["aud"] = settings.auth_jwt_audience
    return jwt.encode(claims, settings.auth_jwt_secret, algorithm="HS256")


def same_origin(request: Request) -> bool:
    """Whether the request says it comes from a page of this very origin."""
    claimed = request.headers.get("origin")
    if not claimed or claimed == "null":
        referer = urlsplit(request.headers.get("referer", ""))
        claimed = f"{referer.scheme}://{referer.netloc}" if referer.netloc else None
    if not claimed:
        return False
    return claimed.lower() == f"{request.url.scheme}://{request.url.netloc}".lower()


async def _verifier(request: Request) -> TokenVerifier:
    return request.app.state.verifier  # built by `api.app.create_app`


VerifierDep = Annotated[TokenVerifier, Depends(_verifier)]


def principal_from(request: Request, bearer: HTTPAuthorizationCredentials | None,
                   verifier: TokenVerifier) -> Principal:
    """The caller, from the `Authorization` header or else the session cookie (origin-checked)."""
    if bearer is not None:
        return verifier.verify(bearer.credentials)
    token = request.cookies.get(COOKIE)
    if not token:
        raise unauthorized("a bearer token is required")
    principal = verifier.verify(token)
    if request.method not in SAFE_METHODS and not same_origin(request):
        raise HTTPException(403, "cross-origin request refused")
    return principal


async def current_principal(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    _cookie: Annotated[str | None, Depends(cookie_scheme)],
    verifier: VerifierDep,
) -> Principal:
    """A shared secret's check is arithmetic, done here; with a JWKS key set a check may fetch the
    set over the network, so it runs in a worker thread, off the event loop."""
    if verifier.offline:
        return principal_from(request, bearer, verifier)
    return await run_in_threadpool(principal_from, request, bearer, verifier)


def admin_principal(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
    if not principal.is_admin:
        raise HTTPException(403, "the admin role is required")
    return principal


PrincipalDep = Annotated[Principal, Depends(current_principal)]
AdminDep = Annotated[Principal, Depends(admin_principal)]
