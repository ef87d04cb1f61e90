"""Adaptive batches for the worker's agents: as large as the backlog, as quick as one record.

Faust's `take_events` waits for a full buffer or for the whole window, so a lone record waits
the window out, and while a batch is being applied its processor blocks the stream, so nothing
is read ahead. `batches` reads the agent's channel queue directly instead:

* it waits for the first record, then takes every record already queued, up to `max_size`;
* when the queue runs dry before the batch is full, it lingers `window` seconds once and takes
  what came meanwhile (0, the default: not at all), so a lone record is applied as it arrives;
* while the caller applies a batch, Faust's fetcher keeps filling the queue, so under load the
  next batch is whatever arrived meanwhile: small batches when traffic is light, large ones
  when it is heavy, with no tuning.

When the worker stops, Faust ends the stream's waiting getter with `StopAsyncIteration`; the
batches end there, as the stream does, instead of the agent crashing on its way out.

Each record of a batch is acknowledged (Faust's ack: its offset becomes committable to Kafka)
only when the caller asks for the next batch, that is after it finished with this one.
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator


def _take_queued(queue: Any, batch: list, max_size: int) -> None:
    while len(batch) < max_size:
        try:
            batch.append(queue.get_nowait())
        except asyncio.QueueEmpty:
            return


async def batches(channel: Any, max_size: int, window: float = 0.0, *, ack: bool = True) -> AsyncIterator[list]:
    """Yield lists of Faust events from `channel`; each list is acknowledged once the next is asked
    for (without `ack`, the caller acknowledges them itself)."""
    queue = aiter(channel).queue  # the subscribed iterator's queue, as Faust's own take_events reads
    while True:
        try:
            batch = [await queue.get()]
        except StopAsyncIteration:  # the stream is stopping (Faust ends its getters so): end the batches
            return
        _take_queued(queue, batch, max_size)
        if window > 0 and len(batch) < max_size:
            await asyncio.sleep(window)  # one linger, then whatever came meanwhile
            _take_queued(queue, batch, max_size)
        yield batch
        # reached only when the caller asks for the next batch: a batch that raised is not acked
        if ack:
            for event in batch:
                event.ack()


def waiting(channel: Any) -> int:
    """Records the channel holds already (the next batch's, when the caller is busy)."""
    return aiter(channel).queue.qsize()
