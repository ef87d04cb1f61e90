"""A replay that stops after its fold committed (offsets written, before the switch) resumes: the
rerun folds nothing again, catches up the tail with the worker's batches, and switches."""

import json
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from customers import kafka as names
from projections import tables as t
from projections.db import make_engine, migrate
from projections.versions import versions
from streams import replay as rp
from testing import samples as s
from testing.harness import fresh_pg_database, settings_for, unique
from tests.integration.test_replay_poison import NOW, produce


async def test_a_replay_stopped_after_its_fold_resumes_from_its_offsets(monkeypatch):
    settings = settings_for(await fresh_pg_database(), topic_partitions=2)
    await migrate(settings.database_url)
    await names.ensure_topics(settings)
    expert = unique("ex_")
    first = [s.booking_created(expert, f"m_{i}", f"a{i}@example.com", f"A{i}", NOW + timedelta(days=i + 1))
             for i in range(5)]
    await produce(settings, names.BOOKINGS, [(expert, json.dumps(b).encode()) for b in first])

    async def stop(*_args, **_kw):
        raise RuntimeError("stopped before the switch")
    hand_over = rp._hand_over
    monkeypatch.setattr(rp, "_hand_over", stop)
    with pytest.raises(RuntimeError):
        await rp.replay(settings, grace=0, switch_lag=0)
    monkeypatch.setattr(rp, "_hand_over", hand_over)

    later = [s.booking_created(expert, f"m_{i}", f"a{i}@example.com", f"A{i}", NOW + timedelta(days=i + 1))
             for i in range(5, 8)]  # arrived after the fold: the tail
    await produce(settings, names.BOOKINGS, [(expert, json.dumps(b).encode()) for b in later])

    progress = await rp.replay(settings, grace=0, switch_lag=0)
    assert progress.resumed and progress.switched and progress.version == 2
    assert progress.fold is None  # nothing folded again
    engine = make_engine(settings.database_url)
    try:
        async with engine.connect() as conn:
            assert {v["version"]: v["state"] for v in await versions(conn)} == {1: "removed", 2: "live"}
            m = t.meetings.c
            count = (await conn.execute(select(func.count()).where(m.version == 2, m.expert_id == expert))).scalar()
            assert count == 8
    finally:
        await engine.dispose()
