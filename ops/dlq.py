"""`customers dlq list|retry`: look at dead letters, and send them back to where they came from.

Retried letters are remembered by a consumer group of their own (`<prefix>customers-dlq-retry`),
so a retry sends each letter once; a letter that fails again comes back as a new one.
"""

from __future__ import annotations

import json
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from customers import kafka as names
from customers.settings import Settings

DEAD_LETTERED = names.DEAD_LETTERED  # every topic with a `.dlq`


def _letter(record) -> dict[str, Any]:
    body = json.loads(record.value)
    return {"partition": record.partition, "offset": record.offset, "key": (record.key or b"").decode(),
            "origin": body.get("origin"), "error": body.get("error"), "value": body.get("value")}


async def letters(settings: Settings, topic: str | None = None) -> dict[str, list[dict]]:
    out = {}
    for name in ([topic] if topic else DEAD_LETTERED):
        records = await names.read_all(settings, settings.topic(names.dlq(name)))
        out[name] = [_letter(r) for r in records]
    return out


async def retry(settings: Settings, topic: str | None = None) -> dict[str, int]:
    """Publish every letter not retried before back to its origin topic, then remember it."""
    group = f"{settings.topic_prefix}customers-dlq-retry"
    sent: dict[str, int] = {}
    async with names.LazyProducer(settings, timeout=60.0) as producer:
        for name in ([topic] if topic else DEAD_LETTERED):
            dlq_topic = settings.topic(names.dlq(name))
            committed = await _committed(settings, group, dlq_topic)
            records = await names.read_all(settings, dlq_topic, start=committed)
            for r in records:
                letter = _letter(r)
                value = letter["value"]
                raw = value.encode() if isinstance(value, str) else json.dumps(value).encode()
                await producer.publish(letter["origin"]["topic"], [(r.key, raw)])
            if records:
                await _commit(settings, group, {TopicPartition(dlq_topic, r.partition): r.offset + 1 for r in records})
            sent[name] = len(records)
    return sent


async def _committed(settings: Settings, group: str, topic: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap_servers, group_id=group,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        out = {}
        for tp in tps:
            offset = await consumer.committed(tp)
            if offset is not None:
                out[tp.partition] = offset
        return out
    finally:
        await consumer.stop()


async def _commit(settings: Settings, group: str, offsets: dict[TopicPartition, int]) -> None:
    newest: dict[TopicPartition, int] = {}
    for tp, off in offsets.items():
        newest[tp] = max(off, newest.get(tp, 0))
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, group_id=group,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(newest))
        await consumer.commit({tp: OffsetAndMetadata(off, "") for tp, off in newest.items()})
    finally:
        await consumer.stop()
