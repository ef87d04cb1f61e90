"""Writes of the read API become commands on `customer-commands`; the worker projects them.

The producer starts on the first write, so the API serves reads while Kafka is away; a write
that Kafka cannot take raises `CommandsUnavailable` (the routes answer 503).
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaProducer

from customers.kafka import COMMANDS, ensure_topics, new_producer, publish
from customers.settings import Settings
from customers.commands import CustomerErased, NoteAdded, NoteDeleted

log = logging.getLogger(__name__)


class CommandsUnavailable(RuntimeError):
    pass


class CommandBus:
    def __init__(self, settings: Settings, *, timeout: float = 10.0) -> None:
        self.settings = settings
        self.timeout = timeout
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def _started(self) -> AIOKafkaProducer:
        async with self._lock:
            if self._producer is not None:
                return self._producer
            producer = new_producer(self.settings, request_timeout_ms=int(self.timeout * 1000))
            try:
                await asyncio.wait_for(producer.start(), self.timeout)
                await ensure_topics(self.settings, timeout=self.timeout)
            except Exception as exc:
                log.warning("command producer could not start: %s", type(exc).__name__)
                await _quietly_stop(producer)
                raise CommandsUnavailable("Kafka is not reachable") from exc
            self._producer = producer
            return producer

    async def send(self, command: NoteAdded | NoteDeleted | CustomerErased) -> None:
        """Publish one command keyed by its expert (an erasure by its email hash); returns once
        Kafka acknowledged it (acks=all)."""
        producer = await self._started()
        value = command.model_dump_json().encode()
        key = command.email_hash if isinstance(command, CustomerErased) else command.expert_id
        try:
            await asyncio.wait_for(
                publish(producer, self.settings.topic(COMMANDS), [(key, value)]), self.timeout)
        except Exception as exc:
            log.warning("command not acknowledged: %s", type(exc).__name__)
            await self.close()  # a producer that lost its sequence never recovers; start afresh next time
            raise CommandsUnavailable("Kafka did not acknowledge the command") from exc

    async def close(self) -> None:
        async with self._lock:
            if self._producer is not None:
                await _quietly_stop(self._producer)
                self._producer = None


async def _quietly_stop(producer: AIOKafkaProducer) -> None:
    try:
        await producer.stop()
    except Exception:  # a producer that never started has nothing to flush
        pass
