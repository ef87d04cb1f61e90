"""Kafka plumbing shared by every process: topic names, topic creation, the lazy producer, reads to the end."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Iterable

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import (InvalidReplicationFactorError, KafkaError, MessageSizeTooLargeError,
                             TopicAlreadyExistsError)

from customers.events import parse_booking_event
from customers.settings import Settings

log = logging.getLogger(__name__)

BOOKINGS = "bookings"
STRIPE_EVENTS = "stripe-events"
ACTIVITY = "customer-activity"
COMMANDS = "customer-commands"
COMMUNICATIONS = "communications"  # message.sent, keyed by expert
EMAIL_EVENTS = "email-events"  # verified email-provider webhooks, keyed by the provider's email id
SOURCES = (BOOKINGS, STRIPE_EVENTS, COMMANDS, COMMUNICATIONS, EMAIL_EVENTS)
PROJECTED = (BOOKINGS, ACTIVITY, COMMANDS, COMMUNICATIONS, EMAIL_EVENTS)
# every topic that has a `.dlq` beside it (`customers dlq list/retry` reads them all)
DEAD_LETTERED = (BOOKINGS, STRIPE_EVENTS, ACTIVITY, COMMANDS, COMMUNICATIONS, EMAIL_EVENTS)
FOREVER = {"retention.ms": "-1", "retention.bytes": "-1"}
DAY_MS = 86_400_000
MAX_RECORD_BYTES = 1 << 20  # the producer's max_request_size (and the broker's default message.max.bytes)


def dlq(name: str) -> str:
    return f"{name}.dlq"


def all_topics(settings: Settings) -> list[str]:
    return [settings.topic(n) for n in DEAD_LETTERED + tuple(dlq(n) for n in DEAD_LETTERED)]


def dead_letter_retention(settings: Settings) -> dict[str, str]:
    """A dead-letter topic keeps its letters `DLQ_RETENTION_DAYS` (they hold personal data)."""
    return {"retention.ms": str(round(settings.dlq_retention_days * DAY_MS)), "retention.bytes": "-1"}


def topic_configs(settings: Settings, name: str) -> dict[str, str]:
    retention = dead_letter_retention(settings) if name.endswith(".dlq") else dict(FOREVER)
    return {**retention, "min.insync.replicas": str(settings.topic_min_insync_replicas)}


class ClusterRefusal(KafkaError):
    """A broker problem the settings explain (the intake answers 503 and logs it; the worker stops):
    its message alone, without the class's name in front."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else type(self).__name__


class UnderReplicated(ClusterRefusal):
    """Topics the service uses hold fewer replicas than TOPIC_REPLICATION_FACTOR: refused at start-up
    (a lost broker would lose their records), never silently used."""

    def __init__(self, topics: dict[str, int], wanted: int) -> None:
        self.topics, self.wanted = topics, wanted
        listed = "; ".join(f"{name} has {n} replica{'s' if n != 1 else ''}" for name, n in sorted(topics.items()))
        super().__init__(f"{listed}; TOPIC_REPLICATION_FACTOR is {wanted}. Add replicas to these topics "
                         f"(kafka-reassign-partitions) or set TOPIC_REPLICATION_FACTOR to what the cluster has")


class TooFewBrokers(ClusterRefusal):
    """The cluster cannot hold the replicas the settings ask for."""


async def ensure_topics(settings: Settings, timeout: float | None = 60.0) -> None:
    """Create every topic the service uses (idempotent). Source topics are retained forever,
    dead-letter topics `DLQ_RETENTION_DAYS`; a dead-letter topic made with another retention gets
    this one.

    Waits for the broker for `timeout` seconds (None: until it answers, with a warning every 30 s).
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers, request_timeout_ms=10_000)
    started = asyncio.get_running_loop().time()
    warned = started
    while True:
        try:
            await admin.start()
            break
        except Exception as exc:
            now = asyncio.get_running_loop().time()
            if timeout is not None and now - started > timeout:
                raise
            if now - warned >= 30:
                log.warning("Kafka unreachable for %.0f s (%s); still waiting", now - started, type(exc).__name__)
                warned = now
            await asyncio.sleep(1)
    try:
        existing = set(await admin.list_topics())
        ours = all_topics(settings)
        await _check_replicas(admin, settings, [n for n in ours if n in existing])
        wanted = [
            NewTopic(name, num_partitions=settings.topic_partitions,
                     replication_factor=settings.topic_replication_factor,
                     topic_configs=topic_configs(settings, name))
            for name in ours if name not in existing
        ]
        if wanted:
            try:
                response = await admin.create_topics(wanted)
            except TopicAlreadyExistsError:
                response = None
            _refused_creation(response, settings)
        await _align_configs(admin, settings, [n for n in ours if n in existing])
    finally:
        await admin.close()


async def _check_replicas(admin: AIOKafkaAdminClient, settings: Settings, names: list[str]) -> None:
    """Refuse topics (made by hand, by an older version, by a broker's auto-creation) that hold
    fewer replicas than configured: each partition counts, the least replicated one decides."""
    if not names:
        return
    found = {}
    for topic in await admin.describe_topics(names):
        partitions = topic.get("partitions") or []
        if partitions:
            found[topic["topic"]] = min(len(p["replicas"]) for p in partitions)
    short = {name: n for name, n in found.items() if n < settings.topic_replication_factor}
    if short:
        raise UnderReplicated(short, settings.topic_replication_factor)


def _refused_creation(response, settings: Settings) -> None:
    """A creation the cluster refused for want of brokers is the settings' fault: say which."""
    errors = [(error[0], error[1]) for error in getattr(response, "topic_errors", None) or ()
              if error[1] not in (0, TopicAlreadyExistsError.errno)]  # (topic, code[, message])
    if not errors:
        return
    if any(code == InvalidReplicationFactorError.errno for _, code in errors):
        raise TooFewBrokers(f"the cluster has fewer brokers than TOPIC_REPLICATION_FACTOR "
                            f"({settings.topic_replication_factor}): could not create {errors[0][0]}")
    raise KafkaError(f"could not create topics: {errors}")


async def _align_configs(admin: AIOKafkaAdminClient, settings: Settings, names: list[str]) -> None:
    """Give existing topics the settings the service makes them with: a dead-letter topic its
    retention (made before it was finite, or with another `DLQ_RETENTION_DAYS`), every topic at
    least TOPIC_MIN_INSYNC_REPLICAS (a higher one, set by an operator, is kept). Altering replaces
    a topic's own settings by these, the only ones the service gives a topic. A broker that
    refuses is logged, never fatal: the topics work either way."""
    if not names:
        return
    try:
        described = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, n, dict.fromkeys(topic_configs(settings, n))) for n in names])
        changes = {}
        for response in described:
            for error, _msg, _kind, name, entries in response.resources:
                if error:
                    continue
                have = {e[0]: e[1] for e in entries}
                wanted = topic_configs(settings, name)
                held = have.get("min.insync.replicas") or "1"
                if held.isdigit() and int(held) > settings.topic_min_insync_replicas:
                    wanted["min.insync.replicas"] = held
                if {k: have.get(k) for k in wanted} != wanted:
                    changes[name] = wanted
        if not changes:
            return
        altered = await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, n, c) for n, c in changes.items()])
        refused = [(name, msg or error) for response in altered for error, msg, _kind, name in response.resources
                   if error]
    except KafkaError as exc:
        refused = [(", ".join(names), type(exc).__name__)]
    for name, why in refused:
        log.warning("could not set the configuration of topic %s: %s", name, why)


def new_producer(settings: Settings, **kw) -> AIOKafkaProducer:
    """An idempotent producer that waits for every in-sync replica (acks=all)."""
    kw.setdefault("request_timeout_ms", 10_000)
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        acks="all",
        enable_idempotence=True,
        linger_ms=2,
        max_request_size=MAX_RECORD_BYTES,
        **kw,
    )


async def publish(producer: AIOKafkaProducer, topic: str, items: Iterable[tuple[str | bytes | None, bytes]]) -> None:
    """Send (key, value) pairs and return only when Kafka acknowledged every one of them."""
    futures = [await producer.send(topic, key=key.encode() if isinstance(key, str) else key, value=value)
               for key, value in items]
    await asyncio.gather(*futures)


class LazyProducer:
    """The one producer of the intake, the API and the command line (acks=all, idempotent).

    It starts on the first publish (the topics are created then too), so a process comes up and
    serves while Kafka is away. The reconnect rule: a publish that Kafka does not acknowledge
    stops the producer, and the next publish starts a fresh one, because an idempotent producer
    that lost its sequence (a broker restart) never recovers. A record too large for Kafka is
    refused without that: the producer is fine, retrying cannot help. Every wait is bounded by
    `timeout` seconds; failures are raised as they come (KafkaError, TimeoutError, OSError).
    """

    def __init__(self, settings: Settings, *, timeout: float = 10.0) -> None:
        self.settings, self.timeout = settings, timeout
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def _started(self) -> AIOKafkaProducer:
        async with self._lock:
            if self._producer is None:
                await asyncio.wait_for(ensure_topics(self.settings, timeout=self.timeout), self.timeout)
                producer = new_producer(self.settings, request_timeout_ms=int(self.timeout * 1000))
                try:
                    await asyncio.wait_for(producer.start(), self.timeout)
                except BaseException:
                    await _quietly_stop(producer)
                    raise
                self._producer = producer
            return self._producer

    async def publish(self, topic: str, items: Iterable[tuple[str | bytes | None, bytes]]) -> None:
        """Publish to `topic` (the full name) and return once Kafka acknowledged every record."""
        producer = await self._started()
        try:
            await asyncio.wait_for(publish(producer, topic, items), self.timeout)
        except MessageSizeTooLargeError:
            raise
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        async with self._lock:
            producer, self._producer = self._producer, None
            if producer is not None:
                await _quietly_stop(producer, self.timeout)

    async def __aenter__(self) -> "LazyProducer":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()


async def _quietly_stop(producer: AIOKafkaProducer, timeout: float = 10.0) -> None:
    try:
        await asyncio.wait_for(producer.stop(), timeout)
    except Exception:  # noqa: BLE001 - a producer that never started or broke has nothing left to flush
        pass


async def produce_booking_events(settings: Settings, events: Iterable[dict]) -> None:
    """For systems that write to Kafka directly: publish validated booking events on `bookings`."""
    parsed = [parse_booking_event(e) for e in events]  # raises before anything is sent
    async with LazyProducer(settings, timeout=60.0) as producer:
        await producer.publish(settings.topic(BOOKINGS),
                               [(e.expert_id, json.dumps(e.model_dump(mode="json")).encode()) for e in parsed])


async def end_offsets(settings: Settings, topics: Iterable[str]) -> dict[tuple[str, int], int]:
    """The high watermark of every partition of `topics` (the offset the next record gets)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    topics = list(topics)
    consumer = AIOKafkaConsumer(*topics, bootstrap_servers=settings.kafka_bootstrap_servers, group_id=None,
                                enable_auto_commit=False, request_timeout_ms=10_000)
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in topics for p in (consumer.partitions_for_topic(t) or ())]
        ends = await consumer.end_offsets(tps) if tps else {}
        return {(tp.topic, tp.partition): off for tp, off in ends.items()}
    finally:
        await consumer.stop()


async def read_all(settings: Settings, topic: str, *, start: dict[int, int] | None = None,
                   timeout: float = 30.0) -> list:
    """Every record of `topic` from its beginning (or `start` per partition) to its end now."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap_servers, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not tps:
            return []
        consumer.unsubscribe()
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, (start or {}).get(tp.partition, 0))
        ends = await consumer.end_offsets(tps)
        records, loop = [], asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async def behind() -> bool:
            return any([await consumer.position(tp) < ends[tp] for tp in tps])

        while await behind():
            if loop.time() > deadline:
                raise TimeoutError(f"could not read {topic} to its end")
            for tp, items in (await consumer.getmany(timeout_ms=500)).items():
                records += [r for r in items if r.offset < ends[tp]]
        return sorted(records, key=lambda r: (r.partition, r.offset))
    finally:
        await consumer.stop()
