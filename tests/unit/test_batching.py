"""The worker's adaptive batches (`streams.batching`): sized by the backlog, acked after use."""

from __future__ import annotations

import asyncio

from streams.batching import batches


class _Event:
    def __init__(self, n: int) -> None:
        self.n, self.acked = n, False

    def ack(self) -> bool:
        self.acked = True
        return True


class _Channel:
    """What `batches` uses of a Faust channel: `aiter()` giving something with a queue."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue = asyncio.Queue()

    def __aiter__(self) -> "_Channel":
        return self

    async def __anext__(self) -> _Event:  # never called: batches reads the queue
        raise AssertionError("the queue is read directly")


async def test_a_lone_record_is_yielded_at_once_without_a_window() -> None:
    channel = _Channel()
    it = batches(channel, 100, 0.0)
    channel.queue.put_nowait(_Event(1))
    loop = asyncio.get_running_loop()
    started = loop.time()
    batch = await asyncio.wait_for(it.__anext__(), 1)
    assert [e.n for e in batch] == [1]
    assert loop.time() - started < 0.05


async def test_a_backlog_becomes_one_batch_up_to_the_size() -> None:
    channel = _Channel()
    for n in range(250):
        channel.queue.put_nowait(_Event(n))
    it = batches(channel, 100, 0.0)
    sizes = [len(await it.__anext__()) for _ in range(3)]
    assert sizes == [100, 100, 50]


async def test_records_are_acked_only_when_the_next_batch_is_asked_for() -> None:
    channel = _Channel()
    events = [_Event(n) for n in range(3)]
    for e in events:
        channel.queue.put_nowait(e)
    it = batches(channel, 2, 0.0)
    first = await it.__anext__()
    assert not any(e.acked for e in first)  # being applied: not committable yet
    await it.__anext__()
    assert all(e.acked for e in first)
    assert not events[2].acked


async def test_a_batch_whose_caller_failed_is_never_acked() -> None:
    channel = _Channel()
    event = _Event(1)
    channel.queue.put_nowait(event)
    it = batches(channel, 10, 0.0)
    await it.__anext__()
    await it.aclose()  # the agent raised out of its loop
    assert not event.acked


async def test_the_window_gathers_what_arrives_while_it_lingers() -> None:
    channel = _Channel()
    channel.queue.put_nowait(_Event(1))
    loop = asyncio.get_running_loop()
    loop.call_later(0.02, channel.queue.put_nowait, _Event(2))
    it = batches(channel, 10, 0.1)
    batch = await asyncio.wait_for(it.__anext__(), 1)
    assert [e.n for e in batch] == [1, 2]


async def test_a_stopping_stream_ends_the_batches_instead_of_crashing_the_agent() -> None:
    """On shutdown Faust fails the waiting getter of the stream's queue with StopAsyncIteration
    (mode's ThrowableQueue.throw): the batches end as an iteration does, acking what was applied."""
    from mode.utils.queues import FlowControlEvent, ThrowableQueue

    channel = _Channel()
    channel.queue = ThrowableQueue(flow_control=FlowControlEvent(initially_suspended=False))
    applied = _Event(1)
    channel.queue.put_nowait(applied)
    seen = []

    async def agent() -> None:
        async for batch in batches(channel, 10, 0.0):
            seen.extend(batch)

    task = asyncio.create_task(agent())
    await asyncio.sleep(0.01)  # the batch applied, the batches waiting on the queue again
    await channel.queue.throw(StopAsyncIteration())
    await asyncio.wait_for(task, 1)  # ends, no RuntimeError("async generator raised StopAsyncIteration")
    assert seen == [applied] and applied.acked
