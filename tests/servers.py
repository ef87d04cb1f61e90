"""`customers api` (and `customers webhooks`) as real uvicorn processes on free loopback ports, for
browsers and fuzzers."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import httpx

from customers.settings import Settings
from testing.harness import ARTIFACTS, ROOT, env_for


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ApiProcess:
    command = "api"

    def __init__(self, settings: Settings, name: str = "api") -> None:
        self.settings, self.port = settings, free_port()
        ARTIFACTS.mkdir(exist_ok=True)
        self.log_path = ARTIFACTS / f"{name}-{settings.topic_prefix.strip('.')}.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "ApiProcess":
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "ops", self.command, "--port", str(self.port)],
                                     env=env_for(self.settings), stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"{self.command} exited; see {self.log_path}"
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"{self.command} did not come up; see {self.log_path}")

    def __exit__(self, *exc) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class IntakeProcess(ApiProcess):
    command = "webhooks"
