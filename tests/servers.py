"""`customers api` (and `customers webhooks`) as real uvicorn processes on free loopback ports, for
browsers and fuzzers (`testing.harness.ServiceProcess`, shared with the benchmarks)."""

from __future__ import annotations

from customers.settings import Settings
from testing.harness import ServiceProcess, free_port  # noqa: F401 - free_port for the tests that import it


class ApiProcess(ServiceProcess):
    command = "api"

    def __init__(self, settings: Settings, name: str = "api") -> None:
        super().__init__(settings, self.command, name=name)


class IntakeProcess(ApiProcess):
    command = "webhooks"
