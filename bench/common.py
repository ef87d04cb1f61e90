"""What every benchmark shares: isolated settings, a throw-away database, processes, statistics.

Each benchmark runs under its own `TOPIC_PREFIX` (`bench<hex>.`) and its own PostgreSQL database
(`customers_bench_<hex>`), dropped at the end. Topics stay on the broker.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

from customers.settings import Settings
from streams.metrics import peak_rss_mb  # noqa: F401  (the fold processes report theirs so too)
from testing.harness import (ARTIFACTS, KAFKA, ROOT, ServiceProcess, WorkerProcess, create_pg_database,  # noqa: F401
                             env_for, free_port, settings_for, stop_process)

PG_ADMIN = os.environ.get("TEST_PG_URL", "postgresql://customers:customers@127.0.0.1:5432/customers")
RESULTS = ROOT / "bench" / "results"
# The service's own defaults (the test harness shortens some of them for quicker tests).
PRODUCTION_TIMINGS = {name: Settings.model_fields[name].default
                      for name in ("worker_batch_size", "worker_batch_window", "kafka_session_timeout")}


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def sqlalchemy_url(name: str) -> str:
    return PG_ADMIN.replace("postgresql://", "postgresql+asyncpg://").rsplit("/", 1)[0] + f"/{name}"


def asyncpg_url(name: str) -> str:
    return PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"


async def create_database() -> str:
    return await create_pg_database("customers_bench_")


async def drop_database(name: str, attempts: int = 30) -> None:
    """Drop it, retrying for a while: on a shared machine PostgreSQL may be restarting."""
    import asyncpg

    for attempt in range(attempts):
        try:
            conn = await asyncpg.connect(PG_ADMIN)
            try:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await conn.close()
            return
        except (OSError, asyncpg.PostgresError):
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(2)


async def infrastructure_ready(settings_kafka: str = KAFKA, timeout: float = 180.0) -> bool:
    """Wait until PostgreSQL answers and Kafka serves metadata (others may restart them)."""
    import asyncpg
    from aiokafka.admin import AIOKafkaAdminClient

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = await asyncpg.connect(PG_ADMIN, timeout=5)
            await conn.fetchval("SELECT 1")
            await conn.close()
            admin = AIOKafkaAdminClient(bootstrap_servers=settings_kafka, request_timeout_ms=5000)
            await admin.start()
            try:
                await admin.list_topics()
            finally:
                await admin.close()
            return True
        except Exception:  # noqa: BLE001 - anything means not ready yet
            await asyncio.sleep(3)
    return False


def bench_settings(database_url: str, **overrides: Any) -> Settings:
    """Test-grade secrets, a unique topic prefix, and the service's production timings."""
    values = {**PRODUCTION_TIMINGS, "topic_prefix": unique("bench") + ".", **overrides}
    return settings_for(database_url, **values)


@asynccontextmanager
async def bench_database(**overrides: Any) -> AsyncIterator[tuple[str, Settings]]:
    """A fresh, migrated database and settings pointing at it; the database is dropped after."""
    from projections.db import migrate

    name = await create_database()
    try:
        url = sqlalchemy_url(name)
        await migrate(url)
        yield name, bench_settings(url, **overrides)
    finally:
        await drop_database(name)


def start_worker(settings: Settings, name: str = "bench-worker", metrics_port: int = 0) -> WorkerProcess:
    return WorkerProcess(settings, name=name, metrics_port=metrics_port).start()


def mean_batch(metrics_port: int) -> float | None:
    """The mean records per applied batch so far, from a worker's /metrics."""
    import urllib.request
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return None
    values = {}
    for line in text.splitlines():
        for name in ("customers_apply_batch_size_sum", "customers_apply_batch_size_count"):
            if line.startswith(name + " "):
                values[name] = float(line.split()[1])
    count = values.get("customers_apply_batch_size_count")
    return round(values["customers_apply_batch_size_sum"] / count, 1) if count else None


def stop_worker(worker: WorkerProcess) -> None:
    """Stop the worker (its Faust folder is under WORKER_DATA_DIR, outside the working tree)."""
    worker.stop()


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def summary_ms(values_ms: list[float]) -> dict[str, float]:
    return {"n": len(values_ms), "p50_ms": round(percentile(values_ms, 50), 2),
            "p90_ms": round(percentile(values_ms, 90), 2), "p99_ms": round(percentile(values_ms, 99), 2),
            "max_ms": round(max(values_ms), 2) if values_ms else float("nan")}


@dataclass
class Row:
    """One line of the results table: a figure, its baseline in the same run, and the goal."""

    benchmark: str
    metric: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_label: str = ""
    ratio: float | None = None  # value relative to the baseline, oriented so that bigger is better
    goal: str = ""
    met: bool | None = None
    attainment: float | None = None  # the figure against its goal: 1 or more means the goal is met
    note: str = ""


@dataclass
class Result:
    name: str
    title: str
    sizes: dict[str, Any] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None


def _stat(pid: int | str) -> tuple[str, float]:
    """A process's command name and user + system CPU seconds so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        head, tail = f.read().rsplit(")", 1)
    fields = tail.split()
    return head.split("(", 1)[1], (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux /proc)."""
    return _stat(pid)[1]


def _processes() -> Iterator[tuple[int, str, float]]:
    """(pid, command name, CPU seconds so far) of every live process."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                name, used = _stat(entry)
            except OSError:  # gone meanwhile
                continue
            yield int(entry), name, used


class StackCpu:
    """CPU seconds used from now on by a worker process (`pid`, this one for an in-process engine),
    every PostgreSQL process and the broker's JVM, polled in a thread: a connection opened and
    closed between two readings (a catch-up's own sessions) still counts. `stop()` gives the totals."""

    def __init__(self, pid: int, interval: float = 0.25) -> None:
        import threading

        self.pid, self.interval = pid, interval
        self.first: dict[int, float] = {}
        self.last: dict[int, tuple[str, float]] = {}
        self._poll(initial=True)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _poll(self, initial: bool = False) -> None:
        for pid, name, used in _processes():
            kind = "worker" if pid == self.pid else {"postgres": "postgres", "java": "broker"}.get(name)
            if kind is not None:
                self.first.setdefault(pid, used if initial else 0.0)
                self.last[pid] = (kind, used)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._poll()

    def stop(self) -> dict[str, float]:
        """The totals since the start; a second call (a `finally` after a run) gives them again."""
        if not self._stop.is_set():
            self._stop.set()
            self._thread.join()
            self._poll()
        out = {"worker": 0.0, "postgres": 0.0, "broker": 0.0}
        for pid, (kind, used) in self.last.items():
            out[kind] += used - self.first[pid]
        return out


def cpu_per_event(used: dict[str, float], records: int) -> dict[str, int]:
    """Microseconds of CPU per record (`used`: `StackCpu.stop()`), per process kind, and their sum:
    two cores carry at most 2,000,000 / total records a second, whatever the overlap."""
    n = max(records, 1)
    out = {k: round(v / n * 1e6) for k, v in used.items()}
    out["total"] = sum(out.values())
    return out


def cores_bound(cpu: dict[str, int], cores: int = 2) -> str:
    total = cpu.get("total")
    return f"{round(cores * 1e6 / total):,}" if total else "?"


class MachineBusy:
    """Share of all CPUs busy (not idle, not waiting on I/O) between start and `share()` (Linux)."""

    @staticmethod
    def _read() -> tuple[int, int]:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        idle = values[3] + values[4]
        return sum(values), idle

    def __init__(self) -> None:
        self.total, self.idle = self._read()

    def share(self) -> float:
        total, idle = self._read()
        spent = total - self.total
        return round(1 - (idle - self.idle) / spent, 2) if spent else 0.0


def machine() -> dict[str, Any]:
    import platform

    load = os.getloadavg()
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "loadavg_at_start": [round(x, 2) for x in load]}


class Profiler:
    """py-spy attached to a child process for a while, writing a flame graph (SVG) and a top list."""

    def __init__(self, pid: int, name: str, seconds: float, rate: int = 199) -> None:
        self.pid, self.name, self.seconds, self.rate = pid, name, seconds, rate
        self.proc: subprocess.Popen | None = None
        self.raw = ARTIFACTS / f"profile-{name}.txt"

    @staticmethod
    def available() -> bool:
        return shutil.which("py-spy") is not None and os.environ.get("BENCH_PROFILE", "1") != "0"

    def start(self) -> "Profiler":
        if not self.available():
            return self
        ARTIFACTS.mkdir(exist_ok=True)
        self.proc = subprocess.Popen(
            ["py-spy", "record", "--pid", str(self.pid), "--duration", str(int(self.seconds)), "--rate",
             str(self.rate), "--format", "raw", "--output", str(self.raw), "--nonblocking",
             # BENCH_PROFILE_GIL=1: only the thread holding the interpreter lock (where Python's CPU goes)
             *(["--gil"] if os.environ.get("BENCH_PROFILE_GIL") == "1" else [])],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return self

    def finish(self, top: int = 12) -> dict[str, Any] | None:
        if self.proc is None:
            return None
        try:
            self.proc.wait(self.seconds + 30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return None
        if not self.raw.exists():
            return None
        return summarise_profile(self.raw.read_text(), top)


IDLE = ("select (selectors.py)", "Runner.run (asyncio/runners.py)", "Condition.wait (threading.py)",
        "_wait (asyncio/tasks.py)", "run_forever (asyncio/base_events.py)")
ENTRY = ("(ops/cli.py)", "(ops/__main__.py)", "run (streams/worker.py)")
OURS = ("(projections/", "(streams/", "(api/", "(webhooks/", "(customers/")


def summarise_profile(collapsed: str, top: int = 12) -> dict[str, Any]:
    """From py-spy's collapsed stacks: the share of busy samples (the leaf is not an idle wait)
    per service function (inclusive) and per function of any code (self)."""
    total = busy = 0
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [_frame(f) for f in stack.split(";") if f.strip()]
        if not frames or frames[-1].endswith(IDLE):
            continue
        busy += n
        for frame in set(frames):
            if any(k in frame for k in OURS) and not frame.endswith(ENTRY):
                inclusive[frame] = inclusive.get(frame, 0) + n
        own[frames[-1]] = own.get(frames[-1], 0) + n

    def share(d: dict[str, int]) -> list[dict[str, Any]]:
        return [{"function": k, "share": round(v / busy, 3)}
                for k, v in sorted(d.items(), key=lambda kv: -kv[1])[:top]] if busy else []

    return {"samples": total, "busy_share": round(busy / total, 3) if total else 0.0,
            "inclusive_ours": share(inclusive), "self_time": share(own)}


def _frame(raw: str) -> str:
    """`function (path/to/file.py:123)` -> `function (package/file.py)`."""
    name, _, where = raw.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    parts = Path(path).parts
    for anchor in ("site-packages", "lib"):
        if anchor in parts:
            parts = parts[len(parts) - parts[::-1].index(anchor):]
            break
    else:
        try:
            parts = Path(path).resolve().relative_to(ROOT).parts
        except ValueError:
            parts = parts[-2:]
    return f"{name} ({'/'.join(parts[-3:])})"


async def wait_for(check, timeout: float, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(interval)
    raise TimeoutError(f"not done within {timeout:.0f}s")


class SqlTimer:
    """Time spent per statement shape (SQLAlchemy cursor executions) in this process, while enabled."""

    def __init__(self) -> None:
        self.stats: dict[str, list[float]] = {}
        self._on = False

    @staticmethod
    def shape(sql: str) -> str:
        import re

        s = re.sub(r"\s+", " ", sql).strip()
        s = re.sub(r"^SELECT .*? FROM", "SELECT … FROM", s)
        s = re.sub(r"^INSERT INTO (\w+) .*? ON CONFLICT", r"INSERT INTO \1 … ON CONFLICT", s)
        s = re.sub(r"DO UPDATE SET .*", "DO UPDATE …", s)
        s = re.sub(r"::(TIMESTAMP WITH(OUT)? TIME ZONE|[A-Z]+(\(\d+\))?)(\[\])?", "", s)
        s = re.sub(r"\(\$\d+(, \$\d+)*\)(, \(\$\d+(, \$\d+)*\))*", "(…)", s)
        s = re.sub(r"\$\d+", "?", s)
        s = re.sub(r"\b(\w+)\.(?=\w)", "", s)  # table qualifiers
        return s[:200]

    def __enter__(self) -> "SqlTimer":
        from sqlalchemy import event
        from sqlalchemy.engine import Engine

        def before(conn, cursor, statement, params, context, executemany):
            conn.info.setdefault("bench_t0", []).append(time.perf_counter())

        def after(conn, cursor, statement, params, context, executemany):
            started = conn.info["bench_t0"].pop()
            entry = self.stats.setdefault(self.shape(statement), [0, 0.0])
            entry[0] += 1
            entry[1] += time.perf_counter() - started

        self._hooks = (before, after)
        event.listen(Engine, "before_cursor_execute", before)
        event.listen(Engine, "after_cursor_execute", after)
        return self

    def __exit__(self, *exc: Any) -> None:
        from sqlalchemy import event
        from sqlalchemy.engine import Engine

        event.remove(Engine, "before_cursor_execute", self._hooks[0])
        event.remove(Engine, "after_cursor_execute", self._hooks[1])

    def top(self, n: int = 8) -> dict[str, Any]:
        total = sum(s for _, s in self.stats.values())
        return {"statements": sum(c for c, _ in self.stats.values()), "seconds": round(total, 2),
                "top": [{"sql": k, "count": c, "seconds": round(s, 2), "ms_each": round(s / c * 1000, 2)}
                        for k, (c, s) in sorted(self.stats.items(), key=lambda kv: -kv[1][1])[:n]]}


def run_async(coro):
    """Run on uvloop when it is installed (as uvicorn does for the services), else asyncio."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)




def reset_peak_rss() -> None:
    """Start this process's peak-memory count afresh (so a figure covers one phase alone)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def emit(result: Result, out: str | None = None) -> None:
    """A benchmark's result as JSON on stdout (its rows, sizes and details), and in `out` if given."""
    text = json.dumps({"rows": [r.__dict__ for r in result.rows], "sizes": result.sizes, "details": result.details},
                      indent=1, default=str)
    if out:
        with open(out, "w") as f:
            f.write(text + "\n")
    print(text)
