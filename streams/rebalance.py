"""After a rebalance, the database (not Kafka's committed offset) says where each partition resumes.

Kafka's committed offset trails the database's (records are acknowledged only after their
transaction commits), so normally nothing needs moving: records at or below the stored offset
are skipped by the projector. When Kafka's committed offset is AHEAD of the database (a restored
database, offsets moved by hand), the partition is moved back to the database's.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import faust
from aiokafka.admin import AIOKafkaAdminClient

from customers import kafka as names
from customers.settings import Settings
from projections.projector import Projector

log = logging.getLogger("customers.worker")


async def committed_offsets(settings: Settings, group: str) -> dict[tuple[str, int], int]:
    """The offsets Kafka holds for a consumer group."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items() if meta.offset >= 0}


class ResumeFromDatabase:
    """Connected to the app's `on_partitions_assigned`; `verified` is the gap guard's record of the
    partitions checked since the assignment (`streams.gaps`), emptied on every assignment."""

    def __init__(self, app: faust.App, settings: Settings, projector: Projector, verified: dict) -> None:
        self.app, self.settings, self.projector, self.verified = app, settings, projector, verified
        self._watch: asyncio.Future | None = None
        app.on_partitions_assigned.connect(self.on_assigned)

    async def on_assigned(self, sender: Any = None, assigned: Any = (), **_kw: Any) -> None:
        """Faust seeks every partition to Kafka's committed offset once its recovery finishes, and
        that may happen before or after this handler runs. So the database's offset is first
        committed to Kafka (Faust's own seek then lands on it) and then sought (in case Faust's
        seek came first). Whatever the order, consumption resumes where the database stops.
        """
        self.verified.clear()  # every partition is checked against the database again
        names_projected = {self.settings.topic(n) for n in names.PROJECTED}
        mine = [tp for tp in assigned if tp.topic in names_projected]
        if not mine:
            return
        stored = await self.projector.stored_offsets()
        committed = await committed_offsets(self.settings, self.app.conf.id)
        behind = {}
        for tp in mine:
            resume = stored.get((tp.topic, tp.partition), -1) + 1
            if committed.get((tp.topic, tp.partition), 0) > resume:
                log.warning("kafka is ahead of the database on %s[%s]; resuming at %s",
                            tp.topic, tp.partition, resume)
                await self.app.consumer._commit({tp: resume})
                await self.app.consumer.seek(tp, resume)
                behind[tp] = resume
        if behind:
            self._watch = asyncio.ensure_future(self._keep_back(behind))

    async def _keep_back(self, behind: dict, seconds: float = 60.0) -> None:
        """Until their first records arrive, partitions sought back to the database stay there.

        Faust's own seek after its recovery may read the committed offsets before ours landed and
        move the consumer forward again; with no new records, the first-records guard never sees
        it. So the consumer's position is checked each second and sought back while it is ahead.
        """
        deadline = asyncio.get_running_loop().time() + seconds
        while behind and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(1.0)
            for tp, resume in list(behind.items()):
                if tp in self.verified:
                    del behind[tp]
                    continue
                try:
                    position = await self.app.consumer.position(tp)
                except Exception:  # noqa: BLE001 - reassigned meanwhile: the next assignment checks again
                    del behind[tp]
                    continue
                if position is not None and position > resume:
                    log.warning("%s[%s] moved to %s past the database; back to %s", tp.topic, tp.partition,
                                position, resume)
                    await self.app.consumer._commit({tp: resume})
                    await self.app.consumer.seek(tp, resume)
