"""Delivering events through the intake as their senders do: bounded concurrency, every 5xx (or
refused connection) retried with a growing pause, as Stripe retries a webhook."""

from __future__ import annotations

import asyncio
import time
from collections import Counter


class Sender:
    """Counts each answer by the `phase` it came in (the test moves `phase` along its faults)."""

    def __init__(self, stack, concurrency: int = 16) -> None:
        self.stack, self.gate = stack, asyncio.Semaphore(concurrency)
        self.phase = ""
        self.answers: Counter = Counter()  # (phase, status) -> answers
        self.accepted_at: list[float] = []  # time.monotonic() of each 2xx

    @property
    def accepted(self) -> int:
        return len(self.accepted_at)

    @property
    def retried(self) -> int:
        return sum(n for (_, status), n in self.answers.items() if status >= 500)

    async def one(self, kind: str, event: dict) -> None:
        async with self.gate:
            delay = 0.2
            while True:
                try:
                    r = await (self.stack.post_bookings([event]) if kind == "booking"
                               else self.stack.post_stripe(event))
                    status = r.status_code
                except Exception:  # noqa: BLE001 - a failed connection is retried like a 5xx
                    status = 599
                self.answers[(self.phase, status)] += 1
                if status in (200, 202):
                    self.accepted_at.append(time.monotonic())
                    return
                assert status >= 500, f"{status}: rejected a valid event"
                await asyncio.sleep(delay)
                delay = min(delay * 2, 3.0)
