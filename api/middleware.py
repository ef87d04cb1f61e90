"""ASGI middleware of the read API: security headers and an access log without personal data.

The access log names the route's template (`/api/customers/{customer_id}`), never the concrete
path or its query string (which may carry an email), and never a header (tokens); what is
written still goes through `scrub`.
"""

from __future__ import annotations

import logging
import time

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from customers.logs import scrub

log = logging.getLogger("api.access")

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
                               "form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}
DOCS = ("/docs", "/redoc")  # FastAPI's interactive docs load their assets from a CDN


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(DOCS):
            return await self.app(scope, receive, send)

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, with_headers)


class AccessLog:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, status = time.perf_counter(), 500

        async def record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record)
        finally:
            route = getattr(scope.get("route"), "path", None) or "(no route)"
            elapsed = (time.perf_counter() - started) * 1000
            log.info(scrub(f"{scope['method']} {route} {status} {elapsed:.1f}ms"))
            metrics = getattr(getattr(scope.get("app"), "state", None), "metrics", None)
            if metrics is not None and route != "(no route)":
                metrics.latency.labels(scope["method"], route, str(status)).observe(elapsed / 1000)
