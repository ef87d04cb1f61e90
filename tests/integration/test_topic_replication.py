"""Replication is configured, never assumed: the topics the service creates get
TOPIC_REPLICATION_FACTOR and TOPIC_MIN_INSYNC_REPLICAS, and topics that hold fewer replicas
than configured are refused at start-up, by name, on the real (one-broker) cluster."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from customers import kafka as names
from testing.harness import KAFKA, ROOT, env_for, settings_for


def _settings(**overrides):
    return settings_for("sqlite+aiosqlite:///unused.db", topic_partitions=1, **overrides)


async def _describe(topics: list[str]) -> tuple[dict[str, int], dict[str, str]]:
    """Each topic's replicas (its least replicated partition) and min.insync.replicas."""
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
    await admin.start()
    try:
        replicas = {t["topic"]: min(len(p["replicas"]) for p in t["partitions"])
                    for t in await admin.describe_topics(topics)}
        described = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, t, {"min.insync.replicas": None}) for t in topics])
        insync = {name: dict((e[0], e[1]) for e in entries)["min.insync.replicas"]
                  for response in described for _error, _msg, _kind, name, entries in response.resources}
        return replicas, insync
    finally:
        await admin.close()


async def _create(name: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, 1, 1, topic_configs=dict(names.FOREVER))])
        for _ in range(100):  # listed once the broker's metadata has it (what `ensure_topics` reads first)
            if name in await admin.list_topics():
                break
            await asyncio.sleep(0.1)
    finally:
        await admin.close()


def test_the_defaults_are_a_three_broker_cluster_and_impossible_settings_are_refused():
    from customers.settings import Settings

    fields = Settings.model_fields
    assert (fields["topic_replication_factor"].default, fields["topic_min_insync_replicas"].default) == (3, 2)
    with pytest.raises(ValueError, match="TOPIC_MIN_INSYNC_REPLICAS \\(3\\) is more than TOPIC_REPLICATION_FACTOR \\(2\\)"):
        _settings(topic_replication_factor=2, topic_min_insync_replicas=3)


async def test_topics_are_created_with_the_configured_replicas():
    settings = _settings()  # the local cluster: one broker, said explicitly
    await names.ensure_topics(settings)
    replicas, insync = await _describe(names.all_topics(settings))
    assert set(replicas.values()) == {1} and set(insync.values()) == {"1"}
    assert len(replicas) == len(names.all_topics(settings))


async def test_more_replicas_than_brokers_is_a_clear_refusal_that_creates_nothing():
    settings = _settings(topic_replication_factor=3, topic_min_insync_replicas=2)
    with pytest.raises(names.TooFewBrokers, match="fewer brokers than TOPIC_REPLICATION_FACTOR \\(3\\)"):
        await names.ensure_topics(settings, timeout=20)
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
    await admin.start()
    try:
        assert not set(names.all_topics(settings)) & set(await admin.list_topics())
    finally:
        await admin.close()


async def test_an_existing_topic_with_fewer_replicas_is_refused_by_name():
    low = _settings()
    bookings = low.topic(names.BOOKINGS)
    await _create(bookings)  # as a broker's auto-creation, or an older version, would have made it
    wanted = _settings(topic_prefix=low.topic_prefix, topic_replication_factor=2, topic_min_insync_replicas=1)
    with pytest.raises(names.UnderReplicated) as refused:
        await names.ensure_topics(wanted, timeout=20)
    assert refused.value.topics == {bookings: 1}
    assert f"{bookings} has 1 replica; TOPIC_REPLICATION_FACTOR is 2" in str(refused.value)


async def test_a_topic_made_with_a_lower_min_insync_gets_the_configured_one():
    settings = _settings()
    await _create(settings.topic(names.COMMANDS))  # no min.insync.replicas of its own: the broker's
    raised = _settings(topic_prefix=settings.topic_prefix, topic_replication_factor=1, topic_min_insync_replicas=1)
    await names.ensure_topics(raised)
    _replicas, insync = await _describe([settings.topic(names.COMMANDS)])
    assert insync == {settings.topic(names.COMMANDS): "1"}


def test_the_worker_refuses_to_start_on_under_replicated_topics():

    low = _settings()
    asyncio.run(names.ensure_topics(low))  # every topic with one replica
    wanted = settings_for(f"sqlite+aiosqlite:///{ROOT / 'test-artifacts' / (low.topic_prefix + 'db')}",
                          topic_partitions=1, topic_prefix=low.topic_prefix, topic_replication_factor=2,
                          topic_min_insync_replicas=1)
    done = subprocess.run([sys.executable, "-m", "ops", "worker", "--metrics-port", "0"], env=env_for(wanted),
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert f"refusing to start: {low.topic(names.BOOKINGS)} has 1 replica" in done.stderr
    assert "TOPIC_REPLICATION_FACTOR is 2" in done.stderr


async def test_the_intake_answers_503_and_logs_the_refusal(caplog):
    from datetime import datetime, timedelta, timezone

    from testing import samples as s
    from testing.harness import asgi_client, unique
    from webhooks.app import create_app as create_intake

    low = _settings()
    await names.ensure_topics(low)
    wanted = _settings(topic_prefix=low.topic_prefix, topic_replication_factor=2, topic_min_insync_replicas=1)
    app = create_intake(wanted)
    try:
        async with asgi_client(app) as intake:
            event = s.booking_created(unique("ex_"), unique("m_"), "ana@example.com", "Ana",
                                      datetime.now(timezone.utc) + timedelta(days=3))
            r = await intake.post("/events/bookings", json=[event],
                                  headers={"Authorization": f"Bearer {wanted.ingest_token}"})
    finally:
        await app.state.intake.close()
    assert r.status_code == 503 and r.headers["retry-after"] == "5"
    assert f"refusing to publish: {low.topic(names.BOOKINGS)} has 1 replica" in caplog.text
