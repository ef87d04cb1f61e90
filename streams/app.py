"""The Faust application, alone in its module. Built by `create_app`; nothing happens at import."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import NoReturn

import faust

from customers.settings import Settings


def restart_process() -> NoReturn:
    """Start this command again in the same process (same pid, fresh state), exactly as it was
    started (`customers worker`, `python -m ops worker`, or a wrapper the tests run)."""
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])


def data_dir(settings: Settings, app_id: str) -> Path:
    """Faust's folder for this consumer group: under WORKER_DATA_DIR (default: the system's temp
    folder), never the working directory, which Faust would otherwise fill with `<group>-data`."""
    base = Path(settings.worker_data_dir or Path(tempfile.gettempdir()) / "customers-worker")
    base.mkdir(parents=True, exist_ok=True)  # Faust creates only the last level
    return base / app_id


def create_app(settings: Settings, *, group: str | None = None) -> faust.App:
    app_id = group or settings.consumer_group
    return faust.App(
        app_id,
        datadir=data_dir(settings, app_id),
        broker=[f"kafka://{h.strip()}" for h in settings.kafka_bootstrap_servers.split(",")],
        store="memory://",
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=settings.topic_partitions,
        topic_allow_declare=True,
        topic_replication_factor=settings.topic_replication_factor,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        broker_commit_interval=1.0,
        web_enabled=False,
        stream_wait_empty=False,
        stream_buffer_maxsize=8192,
        broker_session_timeout=settings.kafka_session_timeout,
        broker_heartbeat_interval=max(1.0, settings.kafka_session_timeout / 4),
    )
