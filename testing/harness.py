"""Test harness: real processes on the real broker and databases, isolated by topic prefix."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

from customers.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
KAFKA = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
PG_ADMIN = os.environ.get("TEST_PG_URL", "postgresql://customers:customers@127.0.0.1:5432/customers")
ARTIFACTS = ROOT / "test-artifacts"


def unique(prefix: str = "t") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


CREATED: list[str] = []  # the databases this process created (`drop_created` drops them)


async def create_pg_database(prefix: str = "customers_it_") -> str:
    """A new, empty PostgreSQL database; returns its name."""
    import asyncpg

    name = unique(prefix)
    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    CREATED.append(name)
    return name


async def drop_created() -> int:
    """Drop the databases this process created (the workers still connected to them are
    disconnected): a test run leaves no database behind. Returns how many went."""
    import asyncpg

    if not CREATED:
        return 0
    conn = await asyncpg.connect(PG_ADMIN)
    dropped = 0
    try:
        while CREATED:
            name = CREATED.pop()
            try:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                dropped += 1
            except asyncpg.PostgresError:  # a database still in use elsewhere: left for the next run
                pass
    finally:
        await conn.close()
    return dropped


async def fresh_pg_database() -> str:
    """A new, empty PostgreSQL database for one test module; returns its SQLAlchemy URL."""
    name = await create_pg_database()
    return PG_ADMIN.replace("postgresql://", "postgresql+asyncpg://").rsplit("/", 1)[0] + f"/{name}"


# a Svix signing secret: whsec_ and base64 of the key
RESEND_SECRET = "whsec_" + base64.b64encode(b"test-resend-signing-key-0123456").decode()


PREFIXES: set[str] = set()  # the topic prefixes this process handed out (`delete_created_topics`)


def settings_for(database_url: str, **overrides) -> Settings:
    values = dict(
        environment="test",
        kafka_bootstrap_servers=KAFKA,
        database_url=database_url,
        topic_prefix=unique("it") + ".",
        auth_jwt_secret="test-jwt-secret-0123456789-abcdefghijkl",
        ingest_token="test-ingest-token",
        stripe_webhook_secret="whsec_test_primary,whsec_test_secondary",
        resend_webhook_secret=RESEND_SECRET,
        customer_id_secret="test-customer-id-secret",
        worker_batch_window=0.0,
        kafka_session_timeout=6.0,
        # the local broker is one: said explicitly, as the service's defaults are a cluster's (3 and 2)
        topic_replication_factor=1,
        topic_min_insync_replicas=1,
    )
    values.update(overrides)
    PREFIXES.add(values["topic_prefix"])
    return Settings(**values)


async def delete_created_topics() -> int:
    """Delete the local broker's topics named with a prefix this process handed out: a test run
    leaves no topic behind (a broker keeps every partition's files open, and thousands of them
    left by run after run exhaust its open files). Returns how many went."""
    from aiokafka.admin import AIOKafkaAdminClient

    if not PREFIXES:
        return 0
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA, request_timeout_ms=30_000)
    await admin.start()
    try:
        prefixes = tuple(PREFIXES)
        names = [name for name in await admin.list_topics() if name.startswith(prefixes)]
        for start in range(0, len(names), 200):
            await admin.delete_topics(names[start:start + 200])
        PREFIXES.clear()
        return len(names)
    finally:
        await admin.close()


def env_for(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "TOPIC_", "STRIPE_", "AUTH_"))}
    for name, value in settings.model_dump().items():
        if value is not None:  # unset stays unset
            env[name.upper()] = str(value).lower() if isinstance(value, bool) else str(value)
    env["PYTHONPATH"] = str(ROOT)
    return env


class WorkerProcess:
    """`customers worker` as a real child process, so tests can kill it like an operator would.

    With `kill_after_batches`, the worker kills itself by SIGKILL after that many database
    commits (`testing.faulty_worker`)."""

    def __init__(self, settings: Settings, name: str = "worker", metrics_port: int = 0,
                 kill_after_batches: int = 0) -> None:
        self.settings, self.name, self.metrics_port = settings, name, metrics_port
        self.kill_after_batches = kill_after_batches
        ARTIFACTS.mkdir(exist_ok=True)
        self.log_path = ARTIFACTS / f"{name}-{settings.topic_prefix.strip('.')}.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "WorkerProcess":
        log = open(self.log_path, "ab")
        command = (["-m", "testing.faulty_worker", "--kill-after-batches", str(self.kill_after_batches)]
                   if self.kill_after_batches else ["-m", "ops", "worker"])
        self.proc = subprocess.Popen([sys.executable, *command, "--metrics-port", str(self.metrics_port)],
                                     env=env_for(self.settings), stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        return self

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def alive(self) -> bool:
        return bool(self.proc) and self.proc.poll() is None


async def eventually(check, timeout: float = 60.0, interval: float = 0.2):
    """Poll `check` (sync or async) until it returns a truthy value or the deadline passes."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if asyncio.iscoroutine(last):
                last = await last
            if last:
                return last
        except AssertionError as exc:
            last = exc
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last: {last!r})")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def metric(text: str, name: str, **labels) -> float:
    """One sample's value from a Prometheus text exposition (0 when absent); labels in any order."""
    import re

    for line in text.splitlines():
        if line.startswith("#"):
            continue
        found = re.fullmatch(r'([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)', line.strip())
        if not found or found.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', found.group(2) or ""))
        if have == {k: str(v) for k, v in labels.items()}:
            return float(found.group(3))
    return 0.0


def asgi_client(app, base: str = "http://test") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base, timeout=30)


class ServiceProcess:
    """`customers <command> --port N` (or `argv`, where `{port}` is replaced) as a child process on
    a free loopback port, up once `/healthz` answers; a context manager that stops it."""

    def __init__(self, settings: Settings, command: str, *, name: str | None = None,
                 extra_env: dict[str, str] | None = None, argv: list[str] | None = None) -> None:
        self.settings, self.command, self.port = settings, command, free_port()
        self.extra_env = extra_env or {}
        self.argv = [a.replace("{port}", str(self.port)) for a in argv] if argv else \
            ["-m", "ops", command, "--port", str(self.port)]
        ARTIFACTS.mkdir(exist_ok=True)
        self.log_path = ARTIFACTS / f"{name or command}-{settings.topic_prefix.strip('.')}.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 60.0) -> "ServiceProcess":
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, *self.argv],
                                     env={**env_for(self.settings), **self.extra_env}, stdout=log,
                                     stderr=subprocess.STDOUT, cwd=ROOT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.command} exited; see {self.log_path}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.command} did not come up; see {self.log_path}")

    def stop(self) -> None:
        stop_process(self.proc)

    def __enter__(self) -> "ServiceProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def stop_process(proc: subprocess.Popen | None, timeout: float = 20.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
