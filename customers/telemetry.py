"""FastAPI's own OpenTelemetry instrumentation: off unless `HTTP_TELEMETRY` asks for it.

FastAPI (0.165 and later) instruments every request natively, and to know whether to it looks up
the tracer, meter and logger providers on every request, a few environment look-ups each, even
when none is configured: 4 % of the intake's CPU under load. The service's own metrics are
Prometheus' (`/metrics`); an operator who sends traces sets `HTTP_TELEMETRY=true`.
"""

from __future__ import annotations

import inspect
from typing import Any

from fastapi import FastAPI

from customers.settings import Settings

_OFF = {"tracing": False, "metrics": False, "logs": False, "operation_spans": False}


def fastapi_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments of `FastAPI(...)` for these settings (none for a FastAPI without native
    telemetry, or with `HTTP_TELEMETRY` on)."""
    if settings.http_telemetry or "telemetry" not in inspect.signature(FastAPI.__init__).parameters:
        return {}
    return {"telemetry": dict(_OFF)}
