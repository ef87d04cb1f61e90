"""Request bodies held to a size, for the intake and the read API alike.

A body above the limit is refused before it is read in full or parsed: from its `Content-Length`
at once, or, sent in chunks, as soon as the bytes received pass the limit. Before the 413 goes
out, the rest of the body is read and thrown away (at most `DRAIN_BYTES`, for at most
`DRAIN_SECONDS`): a server that answers and closes while the client is still sending makes the
client's system reset the connection, and the client never reads the answer. A body declared
larger than that bound is not read at all: the 413 goes at once and the connection closes.

Error messages show user input shortened (`shorten`), never in full.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Iterable

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse

DRAIN_BYTES = 16 << 20
DRAIN_SECONDS = 10.0
SHOWN_CHARS = 64
CLOSE = {"Connection": "close"}


def shorten(text: str, limit: int = SHOWN_CHARS) -> str:
    """`text` as an error message may show it: its first `limit` characters and an ellipsis, and
    anything UTF-8 cannot carry (a lone surrogate) replaced."""
    text = text if len(text) <= limit else text[:limit] + "…"
    return text.encode("utf-8", "replace").decode("utf-8")


def shown_errors(errors: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Validation errors as a response may show them: the names in `loc` shortened, and the
    offending `input` left out unless it is short."""
    shown = []
    for error in errors:
        error = dict(error)
        error["loc"] = [shorten(part) if isinstance(part, str) else part for part in error.get("loc", ())]
        error["msg"] = shorten(str(error.get("msg", "")), 300)
        if "input" in error:
            try:
                # strict JSON: an infinite or NaN number cannot be shown (nor sent back at all)
                text = json.dumps(error["input"], default=str, ensure_ascii=False, allow_nan=False)
                short = len(text) <= SHOWN_CHARS and bool(text.encode("utf-8"))
            except (TypeError, ValueError):  # UnicodeEncodeError included
                short = False
            if not short:
                del error["input"]
        shown.append(error)
    return shown


async def drain(receive, received: int = 0) -> bool:
    """Read and throw away the rest of a request body, `received` bytes of it already read; whether
    the whole body was read within `DRAIN_BYTES` in all and `DRAIN_SECONDS`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DRAIN_SECONDS
    while received <= DRAIN_BYTES:
        try:
            message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0.001))
        except asyncio.TimeoutError:
            return False
        if message["type"] != "http.request":  # the client went away
            return False
        received += len(message.get("body", b""))
        if not message.get("more_body", False):
            return True
    return False


class BodyLimit:
    """Caps request bodies at `max_bytes` (plain ASGI), on `paths`, or on every path when None."""

    def __init__(self, app, max_bytes: int, paths: Iterable[str] | None = None) -> None:
        self.app, self.max_bytes = app, max_bytes
        self.paths = frozenset(paths) if paths is not None else None

    def _too_large(self) -> str:
        return f"the body is larger than {self.max_bytes} bytes"

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or (self.paths is not None and scope["path"] not in self.paths):
            return await self.app(scope, receive, send)
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and not declared.isdigit():
            return await JSONResponse({"detail": "bad Content-Length"}, 400, CLOSE)(scope, receive, send)
        if declared is not None and int(declared) > self.max_bytes:
            read_all = int(declared) <= DRAIN_BYTES and await drain(receive)
            response = JSONResponse({"detail": self._too_large()}, 413, None if read_all else CLOSE)
            return await response(scope, receive, send)
        received = 0

        async def counted():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:  # stop here: the route answers 413
                    read_all = not message.get("more_body", False) or await drain(receive, received)
                    raise HTTPException(413, self._too_large(), None if read_all else CLOSE)
            return message

        await self.app(scope, counted, send)
