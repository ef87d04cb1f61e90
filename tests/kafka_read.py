"""Reading whole topics back, for tests that check what the service published."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient


async def topic_names(bootstrap: str, prefix: str) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return sorted(t for t in await admin.list_topics() if t.startswith(prefix))
    finally:
        await admin.close()


async def read_all(bootstrap: str, topic: str, timeout: float = 30.0) -> list:
    """Every record of a topic, from the beginning up to its end when called."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in parts]
        if not tps:
            return []
        ends = await consumer.end_offsets(tps)
        records, deadline = [], asyncio.get_running_loop().time() + timeout
        remaining = {tp for tp in tps if ends[tp] > 0}
        while remaining and asyncio.get_running_loop().time() < deadline:
            for tp, items in (await consumer.getmany(timeout_ms=500)).items():
                records += items
                if items and items[-1].offset + 1 >= ends[tp]:
                    remaining.discard(tp)
        if remaining:
            raise TimeoutError(f"could not read {topic} to its end")
        return records
    finally:
        await consumer.stop()
