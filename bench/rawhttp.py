"""A lean HTTP/1.1 keep-alive client for load generation on a small machine.

httpx costs about a millisecond of CPU per request, which on two cores would measure the
client as much as the server. This client writes pre-built requests on persistent connections
and parses only the status line, `Content-Length` and the body.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator


def request_bytes(method: str, path: str, host: str, headers: dict[str, str] | None = None,
                  body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, host: str, port: int) -> "Connection":
        reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
        return cls(reader, writer)

    async def send(self, raw: bytes) -> tuple[int, bytes]:
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        chunked = False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if chunked:
            body = b""
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
                chunk = await self.reader.readexactly(size + 2)
                if size == 0:
                    break
                body += chunk[:-2]
            return status, body
        return status, await self.reader.readexactly(length) if length else b""

    def close(self) -> None:
        self.writer.close()


class Pool:
    """Persistent connections shared by concurrent senders (one request at a time each)."""

    def __init__(self, host: str, port: int, size: int) -> None:
        self.host, self.port, self.size = host, port, size
        self._idle: asyncio.Queue[Connection] = asyncio.Queue()
        self._opened = 0

    async def send(self, raw: bytes) -> tuple[int, bytes]:
        if self._idle.empty() and self._opened < self.size:
            self._opened += 1
            conn = await Connection.open(self.host, self.port)
        else:
            conn = await self._idle.get()
        try:
            result = await conn.send(raw)
        except BaseException:
            conn.close()
            self._opened -= 1
            raise
        self._idle.put_nowait(conn)
        return result

    def close(self) -> None:
        while not self._idle.empty():
            self._idle.get_nowait().close()


@dataclass
class LoadResult:
    ok: int = 0
    failed: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0


async def closed_loop(host: str, port: int, requests: Iterator[bytes], *, concurrency: int, duration: float,
                      ok: Callable[[int], bool] = lambda s: 200 <= s < 300, warmup: float = 1.0) -> LoadResult:
    """`concurrency` connections each sending back to back for `duration` s (after a warm-up)."""
    result = LoadResult()
    counting = False
    stop_at = 0.0

    async def one() -> None:
        conn = await Connection.open(host, port)
        try:
            while True:
                now = time.perf_counter()
                if stop_at and now >= stop_at:
                    return
                raw = next(requests)
                started = time.perf_counter()
                status, _ = await conn.send(raw)
                if counting and time.perf_counter() < stop_at:
                    result.statuses[status] = result.statuses.get(status, 0) + 1
                    if ok(status):
                        result.ok += 1
                        result.latencies_ms.append((time.perf_counter() - started) * 1000)
                    else:
                        result.failed += 1
        finally:
            conn.close()

    tasks = [asyncio.create_task(one()) for _ in range(concurrency)]
    await asyncio.sleep(warmup)
    counting, begun = True, time.perf_counter()
    stop_at = begun + duration
    await asyncio.sleep(duration)
    result.seconds = time.perf_counter() - begun
    await asyncio.gather(*tasks, return_exceptions=True)
    return result
