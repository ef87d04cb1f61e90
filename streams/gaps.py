"""The gap guard: the first records of a partition since an assignment must follow what the
database holds, or they are left for a re-read from the database's offset."""

from __future__ import annotations

import logging
from typing import Any

import faust

from projections.projector import Projector

log = logging.getLogger("customers.worker")


class GapGuard:
    def __init__(self, app: faust.App, projector: Projector) -> None:
        self.app, self.projector = app, projector
        self.verified: set = set()  # partitions whose position was checked since the assignment

    async def without_gaps(self, batch: list) -> list:
        """The batch without the records of partitions that start past the database's offset.

        Such records were fetched from Kafka's committed offset, ahead of the database, before
        `streams.rebalance` moved the partition back: the partition is sought back to the
        database's offset and its records in this batch are left for the re-read.
        """
        firsts: dict[Any, int] = {}
        for event in batch:
            tp = event.message.tp
            if tp not in self.verified:
                firsts[tp] = min(firsts.get(tp, event.message.offset), event.message.offset)
        if not firsts:
            return batch
        stored = await self.projector.stored_offsets()
        earliest = await self.app.consumer.earliest_offsets(*firsts)
        behind = set()
        for tp, first in firsts.items():
            resume = max(stored.get((tp.topic, tp.partition), -1) + 1, earliest.get(tp, 0))
            if first > resume:
                log.warning("%s[%s] starts at %s but the database resumes at %s; seeking back",
                            tp.topic, tp.partition, first, resume)
                await self.app.consumer.seek(tp, resume)
                behind.add(tp)
            else:
                self.verified.add(tp)
        return [e for e in batch if e.message.tp not in behind]
