"""Reading whole topics back, for tests that check what the service published."""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient

from customers.kafka import read_all as _read_all
from customers.settings import Settings


async def topic_names(bootstrap: str, prefix: str) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return sorted(t for t in await admin.list_topics() if t.startswith(prefix))
    finally:
        await admin.close()


async def read_all(bootstrap: str, topic: str) -> list:
    return await _read_all(Settings(environment="test", kafka_bootstrap_servers=bootstrap), topic)
