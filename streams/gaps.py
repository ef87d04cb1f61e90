"""The gap guard: the first records of a partition since an assignment must follow what the
database holds, or they are left for a re-read from the database's offset."""

from __future__ import annotations

import logging
from typing import Any

import faust

from projections.projector import Projector

log = logging.getLogger("customers.worker")


class GapGuard:
    """Records reach the projection only in each partition's order, without a hole.

    The first records of a partition since an assignment must follow what the database holds
    (`verified` maps the partitions checked since to the offset their next record must have,
    emptied on every assignment by `streams.rebalance`); after that, each partition's records must
    follow the last one passed on. A record past that point (Faust's own seek to Kafka's committed
    offset landing after ours, records fetched before a seek arriving after it) would make the
    projection skip what lies between, for good: its records are left out and the partition is
    sought back to the first offset missing. Kafka's offsets are consecutive here (no compaction, no transactions); only
    records the retention removed may be missing, and those are not waited for."""

    def __init__(self, app: faust.App, projector: Projector) -> None:
        self.app, self.projector = app, projector
        self.verified: dict[Any, int] = {}  # partition checked since the assignment -> its next record's offset

    async def without_gaps(self, batch: list) -> list:
        """The batch without the records that do not follow what came before them: those of a
        partition starting past the database's offset, or jumping past its last record. Each such
        partition is sought back to where it must resume, and its records of this batch left for
        the re-read."""
        firsts: dict[Any, int] = {}
        for event in batch:
            tp = event.message.tp
            if tp not in self.verified:
                firsts[tp] = min(firsts.get(tp, event.message.offset), event.message.offset)
        behind: set = set()
        if firsts:
            stored = await self.projector.stored_offsets()
            earliest = await self.app.consumer.earliest_offsets(*firsts)
            for tp, first in firsts.items():
                resume = max(stored.get((tp.topic, tp.partition), -1) + 1, earliest.get(tp, 0))
                if first > resume:
                    log.warning("%s[%s] starts at %s but the database resumes at %s; seeking back",
                                tp.topic, tp.partition, first, resume)
                    await self.app.consumer.seek(tp, resume)
                    behind.add(tp)
                else:
                    self.verified[tp] = first
        kept = []
        for event in batch:
            tp, offset = event.message.tp, event.message.offset
            if tp in behind:
                continue
            expected = self.verified.get(tp, offset)
            if offset > expected and not await self._removed_between(tp, expected, offset):
                log.warning("%s[%s] jumped from %s to %s; seeking back", tp.topic, tp.partition, expected, offset)
                await self.app.consumer.seek(tp, expected)
                behind.add(tp)
                continue
            kept.append(event)
            self.verified[tp] = max(expected, offset + 1)
        return kept

    async def _removed_between(self, tp: Any, expected: int, offset: int) -> bool:
        """The records from `expected` up to `offset` are gone from Kafka (retention removed them)."""
        earliest = await self.app.consumer.earliest_offsets(tp)
        return earliest.get(tp, 0) >= offset
