"""A replay killed by SIGKILL in the middle of its bulk fold's COPY, then again in the middle of the
index build that follows it, leaves the live version serving unchanged and a version that a rerun
rebuilds from a clean start: its offsets are only ever written once its tables are whole.

The faults are the test's own (`testing.faulty_replay`); the service has no such switch.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

from sqlalchemy import text

from customers import kafka as names
from projections import tables as t
from projections.db import make_engine
from projections.physical import VERSIONED, partition_name, secondary_indexes
from projections.projector import Projector
from projections.versions import versions
from testing.harness import ARTIFACTS, ROOT, env_for, eventually, unique
from tests.checks import list_matches
from tests.integration.test_rebuild_equals_live import tables
from tests.integration.test_replay import STRIPE_BASE, answers, customers_cmd
from tests.scenario import deliveries, generate, stripe_templates

FAULTY = ROOT / "testing" / "faulty_replay.py"


def faulty_replay(stack, fault: str, *args: str) -> tuple[subprocess.Popen, Path]:
    """`customers replay` under `testing/faulty_replay.py`, leading a process group of its own (so
    the fault kills its fold processes with it)."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"replay-fault-{fault}-{stack.settings.topic_prefix.strip('.')}.log"
    out = open(path, "ab")
    proc = subprocess.Popen([sys.executable, str(FAULTY), fault, "replay", *args], env=env_for(stack.settings),
                            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    out.close()
    return proc, path


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of a process group."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # state, ppid, pgrp, ...
        if int(fields[2]) == pgid and fields[0] != "Z":
            out.append(int(entry.name))
    return out


async def killed(proc: subprocess.Popen, log: Path, said: str) -> None:
    """The faulty replay died by SIGKILL where the fault says, and none of its processes is left."""
    rc = await asyncio.to_thread(proc.wait, 180)
    written = log.read_text(errors="replace")
    assert rc == -signal.SIGKILL, f"replay ended with {rc}, not by SIGKILL; see {log}"
    assert said in written, f"the fault did not fire as expected; see {log}"
    await eventually(lambda: not group_members(proc.pid), timeout=10)


def all_indexes(version: int) -> set[str]:
    """The names of every primary key and secondary index a whole version has."""
    return ({f"{partition_name(tb, version)}_pkey" for tb in VERSIONED}
            | {ix.name for tb in VERSIONED for ix in secondary_indexes(tb, version)})


class Db:
    """What the database holds about versions, their tables and positions."""

    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)

    async def states(self) -> dict[int, str]:
        async with self.engine.connect() as conn:
            return {v["version"]: v["state"] for v in await versions(conn)}

    async def offsets(self, version: int) -> dict:
        return await Projector(self.engine, version=version, id_secret="").stored_offsets()

    async def partitions(self, version: int) -> dict[str, dict]:
        """Each of the version's tables that exists: attached or not, its primary key, its rows."""
        names = [partition_name(tb, version) for tb in VERSIONED]
        async with self.engine.connect() as conn:
            found = (await conn.execute(text(
                "SELECT c.relname, EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = c.oid) AS attached "
                "FROM pg_class c WHERE c.relname = ANY(:n) AND c.relkind = 'r' AND pg_table_is_visible(c.oid)"),
                {"n": names})).all()
            indexes = {r.indexname for r in await conn.execute(text(
                "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() AND tablename = ANY(:n)"),
                {"n": names})}
            out = {}
            for name, attached in found:
                rows = (await conn.execute(text(f'SELECT count(*) FROM "{name}"'))).scalar()
                out[name] = {"attached": attached, "pkey": f"{name}_pkey" in indexes, "rows": rows}
            return out

    async def indexes(self, version: int) -> set[str]:
        async with self.engine.connect() as conn:
            return {r.indexname for r in await conn.execute(text(
                "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() AND tablename = ANY(:n)"),
                {"n": [partition_name(tb, version) for tb in VERSIONED]})}

    async def tables(self, version: int) -> dict[str, list]:
        return await tables(self.engine, version)


async def test_replay_killed_in_copy_and_in_index_build_then_rebuilt(pg_stack):
    stack = pg_stack
    assert stack.settings.topic_partitions >= 4  # several shares, folded in processes of their own
    scenario = generate(150, seed=17, templates=stripe_templates(STRIPE_BASE), prefix=unique("k") + "_", experts=3,
                        customers_per_expert=20)
    for kind, event in deliveries(scenario, seed=19):
        r = await (stack.post_bookings([event]) if kind == "booking" else stack.post_stripe(event))
        assert r.status_code in (200, 202)
    await eventually(lambda: list_matches(stack, scenario), timeout=120, interval=1)

    db = Db(stack.settings.database_url)
    try:
        assert await db.states() == {1: "live"}
        before, live_before = await answers(stack, scenario.experts), await db.tables(1)
        assert live_before["customers"] and live_before["meetings"] and live_before["payments"]

        async def live_unchanged() -> None:
            states = await db.states()
            assert [v for v, s in states.items() if s == "live"] == [1]
            assert await db.tables(1) == live_before
            assert await answers(stack, scenario.experts) == before
            assert stack.worker.alive()

        # (a) killed with the fold's first chunk sent, the share's COPY transaction still open
        proc, log = faulty_replay(stack, "copy")
        await killed(proc, log, "after the first chunk")
        assert await db.states() == {1: "live", 2: "building"}
        assert await db.offsets(2) == {}  # nothing says version 2 holds anything
        bare = await db.partitions(2)
        assert set(bare) == {partition_name(tb, 2) for tb in VERSIONED}  # made bare for the COPY
        assert not any(p["attached"] for p in bare.values()), bare  # bare, as for the COPY:
        assert await db.indexes(2) == set()  # no key, no index
        assert all(p["rows"] == 0 for p in bare.values()), bare  # the open COPY went with its transaction
        await live_unchanged()

        # (b) rerun, killed again while `finish_bare_version` builds the keys and indexes
        proc, log = faulty_replay(stack, "index", "--grace", "1")
        await killed(proc, log, "while building indexes")
        assert await db.states() == {1: "live", 2: "building"}  # the same version, resumed
        assert await db.offsets(2) == {}  # written only once `finish_bare_version` has returned
        bare = await db.partitions(2)
        assert set(bare) == {partition_name(tb, 2) for tb in VERSIONED}
        assert not any(p["attached"] for p in bare.values()), bare  # attaching comes after every index
        # in the middle of the build: the two or more it had finished are there, most are not
        built = await db.indexes(2)
        assert built < all_indexes(2) and len(built) >= 2, sorted(built)
        # the fold's COPY had committed: the bare tables hold the whole history's rows
        assert bare[partition_name(t.customers, 2)]["rows"] == len(live_before["customers"]), bare
        assert bare[partition_name(t.meetings, 2)]["rows"] == len(live_before["meetings"]), bare
        await live_unchanged()

        # (c) a plain replay starts version 2 again from a clean fold and switches to it
        done = customers_cmd(stack, "replay", "--grace", "1", log="replay-after-crashes")
        assert await asyncio.to_thread(done.wait, 240) == 0
        assert await db.states() == {1: "removed", 2: "live"}
        assert await db.partitions(1) == {}  # the old version's tables are dropped
        whole = await db.partitions(2)
        assert set(whole) == {partition_name(tb, 2) for tb in VERSIONED}
        assert all(p["attached"] and p["pkey"] for p in whole.values()), whole
        assert all_indexes(2) <= await db.indexes(2)
        ends = await names.end_offsets(stack.settings, [stack.settings.topic(n) for n in names.PROJECTED])
        assert {tp: o + 1 for tp, o in (await db.offsets(2)).items()} == {tp: e for tp, e in ends.items() if e}
        after = await db.tables(2)
        for name in live_before:
            assert after[name] == live_before[name], name  # table by table, the rebuilt model is the live one
        assert await answers(stack, scenario.experts) == before
        assert stack.worker.alive()
    finally:
        await db.engine.dispose()
