"""The gap guard (`streams.gaps`): each partition's records reach the projection in order and
without a hole, whatever Faust's or Kafka's seeks did in between."""

from __future__ import annotations

from collections import namedtuple
from types import SimpleNamespace

import pytest

from streams.gaps import GapGuard

TP = namedtuple("TP", "topic partition")
A, B = TP("t.customer-activity", 0), TP("t.bookings", 3)


class Consumer:
    def __init__(self) -> None:
        self.seeks: list[tuple[TP, int]] = []
        self.earliest = 0

    async def earliest_offsets(self, *tps: TP) -> dict[TP, int]:
        return {tp: self.earliest for tp in tps}

    async def seek(self, tp: TP, offset: int) -> None:
        self.seeks.append((tp, offset))


class Projector:
    def __init__(self, stored: dict) -> None:
        self.stored = stored

    async def stored_offsets(self) -> dict:
        return dict(self.stored)


def records(tp: TP, *offsets: int) -> list:
    return [SimpleNamespace(message=SimpleNamespace(tp=tp, offset=o)) for o in offsets]


def offsets(batch: list) -> list[tuple[TP, int]]:
    return [(e.message.tp, e.message.offset) for e in batch]


@pytest.fixture
def guard() -> GapGuard:
    return GapGuard(SimpleNamespace(consumer=Consumer()), Projector({(A.topic, A.partition): 4, (B.topic, B.partition): -1}))


async def test_a_partition_that_jumps_ahead_after_its_check_is_sought_back_to_its_next_record(guard):
    """Faust's own seek to Kafka's committed offset landing after the check: the records past
    the hole are left out and the partition goes back to the first one missing."""
    consumer = guard.app.consumer
    assert offsets(await guard.without_gaps(records(A, 5, 6, 7) + records(B, 0, 1))) == \
        [(A, 5), (A, 6), (A, 7), (B, 0), (B, 1)]
    assert offsets(await guard.without_gaps(records(A, 20, 21) + records(B, 2))) == [(B, 2)]
    assert consumer.seeks == [(A, 8)]
    assert offsets(await guard.without_gaps(records(A, 22) + records(A, 8, 9))) == []  # late ones, still ahead
    assert consumer.seeks == [(A, 8), (A, 8)]
    assert offsets(await guard.without_gaps(records(A, 8, 9, 10))) == [(A, 8), (A, 9), (A, 10)]


async def test_a_hole_inside_a_batch_keeps_what_comes_before_it(guard):
    await guard.without_gaps(records(A, 5))
    assert offsets(await guard.without_gaps(records(A, 6, 7, 30, 31) + records(B, 0))) == [(A, 6), (A, 7), (B, 0)]
    assert guard.app.consumer.seeks == [(A, 8)]


async def test_records_again_below_the_next_pass_for_the_projection_to_skip(guard):
    await guard.without_gaps(records(A, 5, 6, 7))
    assert offsets(await guard.without_gaps(records(A, 6, 7, 8))) == [(A, 6), (A, 7), (A, 8)]
    assert guard.app.consumer.seeks == []


async def test_records_the_retention_removed_are_not_waited_for(guard):
    await guard.without_gaps(records(A, 5))
    guard.app.consumer.earliest = 40
    assert offsets(await guard.without_gaps(records(A, 40, 41))) == [(A, 40), (A, 41)]
    assert guard.app.consumer.seeks == []


async def test_the_first_records_since_an_assignment_follow_the_database(guard):
    """Past the database's offset: sought back to it; checked again after every assignment."""
    assert offsets(await guard.without_gaps(records(A, 9, 10))) == []
    assert guard.app.consumer.seeks == [(A, 5)]
    assert offsets(await guard.without_gaps(records(A, 5, 6))) == [(A, 5), (A, 6)]
    guard.verified.clear()  # an assignment (`streams.rebalance`)
    guard.projector.stored[(A.topic, A.partition)] = 30  # another worker applied it meanwhile
    assert offsets(await guard.without_gaps(records(A, 7))) == [(A, 7)]  # below: the projection skips it
    assert offsets(await guard.without_gaps(records(A, 8, 12))) == [(A, 8)]
    assert guard.app.consumer.seeks == [(A, 5), (A, 9)]
