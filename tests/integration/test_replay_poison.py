"""A replay meets records it cannot apply: it dead-letters them, like the worker, and finishes."""

import json
from datetime import datetime, timedelta, timezone

from sqlalchemy import select

from customers import kafka as names
from testing import samples as s
from ops.dlq import letters
from projections import tables as t
from projections.db import make_engine, migrate
from projections.versions import versions
from streams.replay import replay
from testing.harness import fresh_pg_database, settings_for, unique

NOW = datetime.now(timezone.utc).replace(microsecond=0)


async def produce(settings, topic: str, items: list[tuple[str, bytes]]) -> None:
    producer = names.new_producer(settings)
    await producer.start()
    try:
        await names.publish(producer, settings.topic(topic), items)
    finally:
        await producer.stop()


async def test_a_replay_dead_letters_what_it_cannot_apply_and_finishes():
    settings = settings_for(await fresh_pg_database(), topic_partitions=1, dlq_max_attempts=2)
    await migrate(settings.database_url)
    await names.ensure_topics(settings)
    expert = unique("ex_")
    good = [s.booking_created(expert, f"m_{i}", f"g{i}@example.com", f"G{i}", NOW + timedelta(days=i + 1))
            for i in range(6)]
    # decodes, but the database refuses it: a note id longer than its column
    bad_note = {"type": "note.added", "command_id": unique("c"), "occurred_at": s.iso(NOW), "note_id": "n_" + "x" * 300,
                "expert_id": expert, "customer_id": "c_" + "0" * 32, "body": "hello", "created_at": s.iso(NOW)}
    await produce(settings, names.BOOKINGS, [(expert, json.dumps(g).encode()) for g in good[:3]]
                  + [(expert, b"{not json")] + [(expert, json.dumps(g).encode()) for g in good[3:]])
    await produce(settings, names.COMMANDS, [(expert, json.dumps(bad_note).encode())])

    progress = await replay(settings, grace=0, switch_lag=0)

    assert progress.switched and progress.done == progress.total == 8
    engine = make_engine(settings.database_url)
    try:
        async with engine.connect() as conn:
            assert {v["version"]: v["state"] for v in await versions(conn)} == {1: "removed", 2: "live"}
            m = t.meetings.c
            projected = (await conn.execute(select(m.meeting_id).where(m.version == 2, m.expert_id == expert))).scalars()
            assert sorted(projected) == [f"m_{i}" for i in range(6)]
            assert (await conn.execute(select(t.notes).where(t.notes.c.version == 2))).first() is None
    finally:
        await engine.dispose()

    dead = await letters(settings)
    assert [d["origin"]["offset"] for d in dead["bookings"]] == [3]
    assert [(d["origin"]["topic"], d["value"]["note_id"]) for d in dead["customer-commands"]] == [
        (settings.topic(names.COMMANDS), bad_note["note_id"])]
    assert "value too long" in dead["customer-commands"][0]["error"]
