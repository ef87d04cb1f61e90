"""Bodies held to a size at every door that takes one, in process: the intake's four endpoints and
the read API; the rest of a refused body drained (boundedly) before the 413; arrays capped; no
long input echoed back in an error."""

from __future__ import annotations

import base64
import json

import httpx
import pytest

from api.app import create_app as create_api
from api.auth import issue_token
from api.profiles import Invalid, checked_values
from customers import bodies
from customers.bodies import BodyLimit, shorten, shown_errors
from customers.commands import MAX_FIELDS
from customers.settings import Settings
from tests.unit.test_intake_guards import AUTH, Intake, booking

RESEND = "whsec_" + base64.b64encode(b"unit-resend-signing-key-0123").decode()
JWT = "unit-jwt-secret-" + "x" * 32


def message(n: int) -> dict:
    return {"type": "message.sent", "event_id": f"msg-unit-{n}", "schema_version": 1, "expert_id": "ex_1",
            "customer": {"email": "ana@example.com"}, "meeting_id": None, "channel": "email",
            "kind": "reminder", "subject": f"Message {n}", "provider_message_id": f"re_{n}",
            "occurred_at": "2026-05-01T10:00:00+00:00"}


async def post(intake: Intake, path: str, content, headers: dict | None = None) -> httpx.Response:
    async with intake.client() as client:
        return await client.post(path, content=content, headers={**AUTH, "svix-id": "msg_1",
                                                                 "svix-timestamp": "1", "svix-signature": "v1,x",
                                                                 **(headers or {})})


# The intake

@pytest.mark.parametrize("path", ["/webhooks/resend", "/events/messages", "/events/bookings", "/webhooks/stripe"])
async def test_every_intake_endpoint_refuses_a_body_declared_over_the_limit(path):
    intake = Intake(intake_max_body_bytes=4096, resend_webhook_secret=RESEND)
    r = await post(intake, path, b"[" + b" " * 5000 + b"]")
    assert r.status_code == 413 and "4096" in r.json()["detail"]
    assert intake.producer.sent == []


@pytest.mark.parametrize("path", ["/webhooks/resend", "/events/messages"])
async def test_a_chunked_body_is_refused_on_the_new_endpoints_without_being_parsed(path):
    intake = Intake(intake_max_body_bytes=4096, resend_webhook_secret=RESEND)

    async def chunks():
        yield b"["
        for _ in range(100):
            yield json.dumps(message(1)).encode() + b","
        yield json.dumps(message(2)).encode() + b"]"

    r = await post(intake, path, chunks())
    assert r.status_code == 413 and intake.producer.sent == []


async def test_messages_per_request_are_capped_and_nothing_of_a_larger_batch_is_published():
    intake = Intake(intake_max_events=10)
    r = await post(intake, "/events/messages", json.dumps([message(n) for n in range(11)]).encode())
    assert r.status_code == 413 and "10 events" in r.json()["detail"]
    r = await post(intake, "/events/bookings", json.dumps([booking() for _ in range(11)]).encode())
    assert r.status_code == 413
    assert intake.producer.sent == []
    r = await post(intake, "/events/messages", json.dumps([message(n) for n in range(10)]).encode())
    assert r.status_code == 202 and len(intake.producer.sent) == 10


def test_the_default_cap_of_events_per_request():
    assert Settings(environment="test").intake_max_events == 500


# Draining: the sender reads the answer

class Exchange:
    """A request body in chunks to a `BodyLimit`ed app; what the app was handed and what it sent."""

    def __init__(self, chunks: list[bytes], declared: int | None) -> None:
        self.chunks, self.read, self.sent, self.reached = list(chunks), 0, [], 0
        self.headers = [(b"content-length", str(declared).encode())] if declared is not None else []

    async def receive(self):
        if not self.chunks:
            return {"type": "http.disconnect"}
        self.read += 1
        chunk = self.chunks.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(self.chunks)}

    async def send(self, message):
        if message["type"] == "http.response.start":
            self.read_before_answer = self.read
        self.sent.append(message)

    async def run(self, max_bytes: int) -> tuple[int, dict]:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import PlainTextResponse
        from starlette.routing import Route

        async def endpoint(request: Request):
            self.reached += len(await request.body())
            return PlainTextResponse("ok")

        app = BodyLimit(Starlette(routes=[Route("/", endpoint, methods=["POST"])]), max_bytes=max_bytes)
        scope = {"type": "http", "method": "POST", "path": "/", "headers": self.headers, "query_string": b"",
                 "http_version": "1.1", "scheme": "http", "server": ("t", 80), "root_path": ""}
        await app(scope, self.receive, self.send)
        start = self.sent[0]
        return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}


async def test_a_body_declared_too_large_is_read_to_its_end_before_the_413():
    exchange = Exchange([b"x" * 1000] * 30, declared=30_000)
    status, headers = await exchange.run(max_bytes=4096)
    assert status == 413 and exchange.read_before_answer == 30 and exchange.reached == 0
    assert headers.get("connection") != "close"  # all of it read: the connection can serve another request


async def test_a_chunked_body_too_large_is_read_to_its_end_before_the_413():
    exchange = Exchange([b"x" * 1000] * 30, declared=None)
    status, _ = await exchange.run(max_bytes=4096)
    assert status == 413 and exchange.read_before_answer == 30 and exchange.reached == 0


async def test_draining_is_bounded_and_then_the_connection_closes(monkeypatch):
    monkeypatch.setattr(bodies, "DRAIN_BYTES", 10_000)
    exchange = Exchange([b"x" * 1000] * 100, declared=None)
    status, headers = await exchange.run(max_bytes=4096)
    assert status == 413 and exchange.read_before_answer <= 12 and headers["connection"] == "close"
    exchange = Exchange([b"x" * 1000] * 100, declared=100_000)  # declared past the bound: not read at all
    status, headers = await exchange.run(max_bytes=4096)
    assert status == 413 and exchange.read_before_answer == 0 and headers["connection"] == "close"


# The read API

def api_client(**overrides) -> httpx.AsyncClient:
    settings = Settings(environment="test", auth_jwt_secret=JWT, kafka_bootstrap_servers="127.0.0.1:9",
                        database_url="sqlite+aiosqlite:///:memory:", **overrides)
    app = create_api(settings)
    headers = {"Authorization": f"Bearer {issue_token(settings, 'ex_1')}", "Content-Type": "application/json"}
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api", headers=headers)


@pytest.mark.parametrize("method,path,body", [
    ("PUT", "/api/customers/c_1/tags", b'["a' + b" " * 20_000_000 + b'"]'),
    ("PUT", "/api/customers/c_1/fields",
     json.dumps({f"k{i}": 1 for i in range(300_000)}).encode()),
    ("PUT", "/api/custom-fields", b"[" + b" " * 300_000 + b"]"),
    ("POST", "/api/customers/c_1/notes", json.dumps({"body": "x" * 300_000}).encode()),
    ("POST", "/customers/c_1/tags", b"tags=" + b"a" * 300_000),
])
async def test_the_read_api_refuses_a_body_over_its_limit_before_reading_it(method, path, body):
    async with api_client() as client:
        r = await client.request(method, path, content=body)
    assert r.status_code == 413 and str(256 << 10) in r.json()["detail"]
    assert r.headers["x-content-type-options"] == "nosniff"


async def test_the_read_api_counts_a_chunked_body():
    async def chunks():
        for _ in range(100):
            yield b" " * 1000

    async with api_client(api_max_body_bytes=4096) as client:
        r = await client.put("/api/customers/c_1/tags", content=chunks())
    assert r.status_code == 413


def test_the_largest_bodies_the_api_takes_fit_its_default_limit():
    limit = Settings(environment="test").api_max_body_bytes
    assert limit == 256 << 10
    definitions = [{"key": f"k{i:02d}" + "x" * 36, "label": "l" * 80, "type": "choice",
                    "choices": [f"{c:02d}" + "c" * 78 for c in range(50)]} for i in range(MAX_FIELDS)]
    assert len(json.dumps(definitions).encode()) <= limit
    assert len(json.dumps({"body": "\U0001F600" * 10_000}).encode()) <= limit  # a note, escaped


async def test_a_validation_error_does_not_echo_a_long_input():
    async with api_client() as client:
        r = await client.put("/api/customers/c_1/fields", content=json.dumps({"k": ["y" * 50_000]}))
    assert r.status_code == 422 and "yyyy" not in r.text and len(r.content) < 2000


def test_an_unknown_field_key_is_named_shortened():
    with pytest.raises(Invalid) as caught:
        checked_values([], {"k" * 2_000_000: 1})
    assert len(caught.value.field) <= len("fields.") + 65 and caught.value.field.endswith("…")


def test_shortened_errors():
    assert shorten("x" * 64) == "x" * 64 and shorten("x" * 65) == "x" * 64 + "…"
    [error] = shown_errors([{"loc": ("body", "k" * 1000), "msg": "bad", "type": "t", "input": ["y" * 1000]}])
    assert error["loc"] == ["body", "k" * 64 + "…"] and "input" not in error
    [error] = shown_errors([{"loc": ("body",), "msg": "bad", "type": "t", "input": 5}])
    assert error["input"] == 5
    [error] = shown_errors([{"loc": ("body", "\ud800"), "msg": "bad", "type": "t", "input": "\ud800"}])
    assert "input" not in error and json.dumps(error, ensure_ascii=False).encode("utf-8")


async def test_a_validation_error_on_a_lone_surrogate_is_a_422():
    async with api_client() as client:
        r = await client.put("/api/custom-fields", content=b'[{"key": "k", "label": "\\ud800", "type": "text"}]')
    assert r.status_code == 422


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan"), [1, float("inf")], {"a": float("nan")}])
def test_a_refused_number_json_cannot_carry_is_not_shown(value):
    shown = shown_errors([{"type": "model_attributes_type", "loc": ("body", 1), "msg": "Input should be an object",
                           "input": value}])
    assert "input" not in shown[0]
    json.dumps(shown, allow_nan=False)  # what the response sends: strict JSON
