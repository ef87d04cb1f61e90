"""FastAPI's native OpenTelemetry is off unless `HTTP_TELEMETRY` asks for it (`customers.telemetry`)."""

import inspect

from fastapi import FastAPI

from customers.settings import Settings
from customers.telemetry import fastapi_options
from webhooks.app import create_app


def test_off_by_default_on_when_asked_and_both_apps_take_it():
    native = "telemetry" in inspect.signature(FastAPI.__init__).parameters
    off = fastapi_options(Settings(environment="test"))
    assert ("telemetry" in off) == native
    assert fastapi_options(Settings(environment="test", http_telemetry=True)) == {}
    if native:
        app = create_app(Settings(environment="test", ingest_token="t" * 32))
        assert not any(app._telemetry[k] for k in ("tracing", "metrics", "logs", "operation_spans"))
        assert not app._native_telemetry.enabled()  # no provider look-up on a request
        on = create_app(Settings(environment="test", ingest_token="t" * 32, http_telemetry=True))
        assert on._telemetry["tracing"] and on._telemetry["metrics"]
