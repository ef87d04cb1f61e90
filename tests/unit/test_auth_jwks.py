"""RS256 tokens checked against a JWKS served from 127.0.0.1: the key set is cached, an unknown
`kid` refetches it (at most once per cooldown), and a key dropped from the set stops working."""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import HTTPException

from api.auth import TokenVerifier
from customers.settings import Settings

ISSUER, AUDIENCE = "https://clerk.example.test", "customers-api"


class Key:
    def __init__(self) -> None:
        self.kid = uuid.uuid4().hex[:12]
        self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwk(self) -> dict:
        data = jwt.algorithms.RSAAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        return {**data, "kid": self.kid, "use": "sig", "alg": "RS256"}

    def sign(self, sub: str = "ex_rs", **claims) -> str:
        now = int(time.time())
        body = {"sub": sub, "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 600, **claims}
        return jwt.encode(body, self.private, algorithm="RS256", headers={"kid": self.kid})


class JWKSServer:
    """A JWKS endpoint on a free loopback port; `keys` can be swapped to rotate."""

    def __init__(self, keys: list[Key]) -> None:
        self.keys, self.fetches = keys, 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                outer.fetches += 1
                body = json.dumps({"keys": [k.jwk() for k in outer.keys]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/.well-known/jwks.json"

    def __enter__(self) -> "JWKSServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def keys() -> tuple[Key, Key]:
    return Key(), Key()


def verifier_for(server: JWKSServer, **kw) -> TokenVerifier:
    settings = Settings(environment="test", auth_jwks_url=server.url, auth_jwt_issuer=ISSUER,
                        auth_jwt_audience=AUDIENCE)
    return TokenVerifier(settings, **kw)


def accepted(verifier: TokenVerifier, token: str) -> bool:
    try:
        verifier.verify(token)
        return True
    except HTTPException as exc:
        assert exc.status_code == 401
        return False


def wait_until(check, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_rs256_tokens_and_cached_key_set(keys):
    old, _ = keys
    with JWKSServer([old]) as server:
        verifier = verifier_for(server)
        for _ in range(5):
            assert verifier.verify(old.sign()).expert_id == "ex_rs"
        assert server.fetches == 1  # the set is cached
        assert not accepted(verifier, old.sign(iss="https://evil.example"))
        assert not accepted(verifier, old.sign(aud="another-api"))
        assert not accepted(verifier, old.sign(exp=int(time.time()) - 60))
        assert not accepted(verifier, old.sign(nbf=int(time.time()) + 120))
        # a token signed by a key that is not in the set, under a kid that is
        stranger = Key()
        stranger.kid = old.kid
        assert not accepted(verifier, stranger.sign())


def test_rotation_refetches_on_unknown_kid_and_drops_the_old_key(keys):
    old, new = keys
    with JWKSServer([old]) as server:
        verifier = verifier_for(server, jwks_cooldown=1.0)
        assert accepted(verifier, old.sign())
        server.keys = [new]  # the provider rotates; the old key is withdrawn
        assert not accepted(verifier, new.sign())  # within the cooldown the cached set stands
        wait_until(lambda: accepted(verifier, new.sign()))
        assert server.fetches == 2
        assert not accepted(verifier, old.sign())  # gone from the refetched set: refused at once
        assert server.fetches == 2  # and it did not refetch again within the cooldown


def test_unknown_kids_cannot_make_it_hammer_the_endpoint(keys):
    old, _ = keys
    with JWKSServer([old]) as server:
        verifier = verifier_for(server, jwks_cooldown=30)
        assert accepted(verifier, old.sign())
        forged = Key()
        for _ in range(20):
            forged.kid = uuid.uuid4().hex[:12]
            assert not accepted(verifier, forged.sign())
        assert server.fetches <= 2


def test_the_cached_set_expires(keys):
    old, new = keys
    with JWKSServer([old, new]) as server:
        verifier = verifier_for(server, jwks_lifespan=0.3)
        assert accepted(verifier, old.sign())
        server.keys = [new]  # the old key is withdrawn; no token names an unknown kid
        wait_until(lambda: not accepted(verifier, old.sign()))
        assert accepted(verifier, new.sign()) and server.fetches >= 2
