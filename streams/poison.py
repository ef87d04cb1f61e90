"""Poison handling, shared by the worker's `project` agent and `customers replay`.

One record that cannot be decoded or applied must never stop a stream:

* a record that does not decode (not JSON, not the schema) goes to `<topic>.dlq` at once, and
  its position is still recorded, so the partition moves past it;
* a batch that fails for another reason than a database outage is applied again one record at
  a time; a record failing `max_attempts` times goes to `<topic>.dlq` with the error and its
  origin, then its position alone is recorded;
* while the database is unreachable nothing is dead-lettered: the outage is waited out
  (the retry policy is `streams.retry`).

The letter is sent (and acknowledged by Kafka) before the position that skips the record is
committed, so a crash in between sends the letter again rather than losing the record.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable

from customers import kafka as names
from projections.projector import Applied, Position, Projector, VersionChanged
from streams.decode import dead_letter, decoder_for
from streams.retry import apply_with_retry

log = logging.getLogger("customers.poison")

@dataclass(frozen=True)
class Source:
    """A record as Kafka delivered it: what is decoded, and what a dead letter keeps."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: datetime | None = None

    @property
    def position(self) -> Position:
        return Position(self.topic, self.partition, self.offset, self.timestamp)


def kafka_time(millis: int | None) -> datetime | None:
    return datetime.fromtimestamp(millis / 1000, tz=timezone.utc) if millis else None


Send = Callable[[str, bytes | None, bytes], Awaitable[Any]]  # (topic, key, value), acknowledged


class Applier:
    """Decodes records and applies them through `projector`, dead-lettering what cannot be.

    `send` publishes a letter and returns once Kafka acknowledged it; `applied(result, seconds,
    records)` and `dead_lettered(topic)` are told of every committed batch and every letter.
    """

    def __init__(self, projector: Projector, send: Send, *, prefix: str, max_attempts: int,
                 applied: Callable[[Applied, float, int], None] | None = None,
                 dead_lettered: Callable[[str], None] | None = None) -> None:
        self.projector, self.send, self.prefix, self.max_attempts = projector, send, prefix, max_attempts
        self.applied = applied or (lambda *_: None)
        self.dead_lettered = dead_lettered or (lambda _topic: None)

    async def decode(self, records: list[Source]) -> list[tuple[Source, Any]]:
        """Each record with its decoded item; one that does not decode is dead-lettered (item None)."""
        out = []
        for record in records:
            try:
                item = decoder_for(record.topic, self.prefix)(record.value)
            except ValueError as exc:  # pydantic's ValidationError is a ValueError
                await self.to_dlq(record, exc)
                item = None
            out.append((record, item))
        return out

    async def apply(self, decoded: list[tuple[Source, Any]]) -> None:
        """Apply a batch; when it fails for a reason other than an outage, one record at a time.

        `VersionChanged` is raised as it comes: nothing of the refused batch was written.
        """
        try:
            await self.apply_with_retry([(r.position, item) for r, item in decoded], attempts=1)
            return
        except VersionChanged:
            raise
        except Exception as exc:
            log.warning("batch failed (%s); applying its records one by one", type(exc).__name__)
        for record, item in decoded:
            try:
                await self.apply_with_retry([(record.position, item)], attempts=self.max_attempts)
            except VersionChanged:
                raise
            except Exception as exc:  # poison: park it, record its offset, keep the partition flowing
                await self.to_dlq(record, exc)
                await self.apply_with_retry([(record.position, None)], attempts=self.max_attempts)

    async def apply_with_retry(self, batch: list[tuple[Position, Any]], *, attempts: int) -> None:
        await apply_with_retry(self.projector, batch, attempts=attempts, applied=self.applied)

    async def to_dlq(self, record: Source, error: BaseException) -> None:
        value = dead_letter(record.value, error, record.topic, record.partition, record.offset)
        await self.send(names.dlq(record.topic), record.key, value)
        self.dead_lettered(record.topic)
        log.warning("dead-lettered %s[%s]@%s: %s", record.topic, record.partition, record.offset,
                    type(error).__name__)
