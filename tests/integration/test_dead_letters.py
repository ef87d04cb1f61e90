"""Dead-letter topics on the real broker: a finite retention (also given to topics made before
it was finite), and `customers dlq list/retry` over every topic that has one."""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from customers import kafka as names
from ops.dlq import letters, retry
from streams.decode import dead_letter
from testing.harness import KAFKA, eventually, settings_for

DAY_MS = 86_400_000


def _settings(**overrides):
    return settings_for("sqlite+aiosqlite:///unused.db", topic_partitions=1, **overrides)


async def _retention(topics: list[str]) -> dict[str, str]:
    """retention.ms of each topic, as the broker answers once the changes have reached it."""
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
    await admin.start()
    try:
        described = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, t, {"retention.ms": None}) for t in topics])
        return {name: dict((e[0], e[1]) for e in entries)["retention.ms"]
                for response in described for _error, _msg, _kind, name, entries in response.resources}
    finally:
        await admin.close()


async def test_dead_letters_are_kept_for_the_configured_days_and_sources_forever():
    settings = _settings(dlq_retention_days=2)
    old_dlq = settings.topic(names.dlq(names.COMMUNICATIONS))
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
    await admin.start()
    try:  # a dead-letter topic made when they were kept forever
        await admin.create_topics([NewTopic(old_dlq, 1, 1, topic_configs=dict(names.FOREVER))])
    finally:
        await admin.close()

    await names.ensure_topics(settings)
    dead = [t for t in names.all_topics(settings) if t.endswith(".dlq")]
    assert len(dead) == len(names.DEAD_LETTERED)

    async def kept(topics: list[str], value: str) -> bool:
        return set((await _retention(topics)).values()) == {value}

    assert await eventually(lambda: kept(dead, str(2 * DAY_MS)), timeout=20)
    assert await kept([t for t in names.all_topics(settings) if t not in dead], "-1")

    await names.ensure_topics(_settings(topic_prefix=settings.topic_prefix))  # the default: 14 days
    assert await eventually(lambda: kept(dead, str(14 * DAY_MS)), timeout=20)


async def test_dlq_list_and_retry_cover_communications_and_email_events():
    settings = _settings()
    await names.ensure_topics(settings)
    originals = {names.COMMUNICATIONS: b'{"type": "message.sent", "broken": true}',
                 names.EMAIL_EVENTS: b'{"type": "email.delivered", "data": {}}'}
    producer = names.new_producer(settings)
    await producer.start()
    try:
        for name, value in originals.items():
            letter = dead_letter(value, ValueError("does not fit"), settings.topic(name), 0, 0)
            await names.publish(producer, settings.topic(names.dlq(name)), [("k", letter)])
    finally:
        await producer.stop()

    listed = await letters(settings)
    assert set(listed) == set(names.DEAD_LETTERED)
    for name in originals:
        assert [item["error"] for item in listed[name]] == ["ValueError: does not fit"]

    sent = await retry(settings)
    assert sent[names.COMMUNICATIONS] == sent[names.EMAIL_EVENTS] == 1
    for name, value in originals.items():
        back = await names.read_all(settings, settings.topic(name))
        assert [r.value for r in back] == [value]
