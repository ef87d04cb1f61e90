"""The Faust application, alone in its module. Built by `create_app`; nothing happens at import."""

from __future__ import annotations

import os
import sys
from typing import NoReturn

import faust

from customers.settings import Settings


def restart_process() -> NoReturn:
    """Start this `customers` command again in the same process (same pid, fresh state)."""
    os.execv(sys.executable, [sys.executable, "-m", "customers", *sys.argv[1:]])


def create_app(settings: Settings, *, group: str | None = None) -> faust.App:
    return faust.App(
        group or settings.consumer_group,
        broker=[f"kafka://{h.strip()}" for h in settings.kafka_bootstrap_servers.split(",")],
        store="memory://",
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=settings.topic_partitions,
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        broker_commit_interval=1.0,
        web_enabled=False,
        stream_wait_empty=False,
        stream_buffer_maxsize=8192,
        broker_session_timeout=settings.kafka_session_timeout,
        broker_heartbeat_interval=max(1.0, settings.kafka_session_timeout / 4),
    )
