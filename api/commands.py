"""Writes of the read API become commands on `customer-commands`; the worker projects them.

The producer (`customers.kafka.LazyProducer`) starts on the first write, so the API serves reads
while Kafka is away; a write that Kafka cannot take raises `CommandsUnavailable` (the routes
answer 503).
"""

from __future__ import annotations

import logging
from typing import Any

from customers.kafka import COMMANDS, LazyProducer
from customers.settings import Settings

log = logging.getLogger(__name__)


class CommandsUnavailable(RuntimeError):
    pass


class CommandBus:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.producer = LazyProducer(settings, timeout=settings.kafka_publish_timeout_seconds)

    async def send(self, command: Any) -> None:
        """Publish one command keyed by its expert (an erasure by its email hash); returns once
        Kafka acknowledged it (acks=all)."""
        try:
            await self.producer.publish(self.settings.topic(COMMANDS),
                                        [(command.kafka_key, command.model_dump_json().encode())])
        except Exception as exc:
            log.warning("command not acknowledged: %s", type(exc).__name__)
            raise CommandsUnavailable("Kafka did not acknowledge the command") from exc

    async def close(self) -> None:
        await self.producer.close()
