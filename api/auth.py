"""Bearer tokens: HS256 with a shared secret, or RS256 keys from a JWKS endpoint.

The `sub` claim is the expert id; an `admin` entry in `roles` opens `/admin/...`.
Tokens without a signature (`alg: none`), expired, not yet valid or badly signed are refused.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated

import jwt
from fastapi import Depends, HTTPException, Request

from customers.settings import Settings

COOKIE = "customers_session"


@dataclass(frozen=True)
class Principal:
    expert_id: str
    roles: frozenset[str]

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles


class TokenVerifier:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._jwks = jwt.PyJWKClient(settings.auth_jwks_url, cache_keys=True, lifespan=3600) \
            if settings.auth_jwks_url else None

    def _key(self, token: str, header: dict):
        alg = header.get("alg")
        if alg == "HS256" and self.settings.auth_jwt_secret:
            return self.settings.auth_jwt_secret, ["HS256"]
        if alg == "RS256" and self._jwks is not None:
            try:
                # PyJWKClient refetches the key set when it meets an unknown `kid`
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
        except jwt.PyJWTError as exc:
            raise HTTPException(401, "invalid token", headers={"WWW-Authenticate": "Bearer"}) from exc
        roles = claims.get("roles") or []
        if isinstance(roles, str):
            roles = [roles]
        return Principal(expert_id=str(claims["sub"]), roles=frozenset(map(str, roles)))


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


def _token_from(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.cookies.get(COOKIE)


def current_principal(request: Request) -> Principal:
    token = _token_from(request)
    if not token:
        raise HTTPException(401, "a bearer token is required", headers={"WWW-Authenticate": "Bearer"})
    return request.app.state.verifier.verify(token)


def admin_principal(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
    if not principal.is_admin:
        raise HTTPException(403, "the admin role is required")
    return principal


PrincipalDep = Annotated[Principal, Depends(current_principal)]
AdminDep = Annotated[Principal, Depends(admin_principal)]
