"""Each projection version in tables of its own on PostgreSQL: a replay's version is built with only
the indexes the projection looks rows up by and gets the readers' ones (and statistics) once; dropping a version drops its tables; a row
of a version without tables is refused; migration 0008 turns a database holding two versions into
partitioned tables row for row, and back. On SQLite a version is dropped with a DELETE."""

from __future__ import annotations

import asyncio
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import BigInteger, Boolean, DateTime, Integer, String, Text, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.types import JSON

from projections import physical
from projections import tables as t
from projections.db import alembic_config, make_engine, migrate
from projections.versions import begin_replay, drop_version, ensure_live, switch_to
from testing.harness import fresh_pg_database

T0 = datetime(2026, 6, 1, 9, tzinfo=timezone.utc)


async def pg_engine():
    url = await fresh_pg_database()
    await migrate(url)
    return make_engine(url)


async def indexes(engine, version: int) -> set[str]:
    async with engine.connect() as conn:
        return await conn.run_sync(physical.indexes_present, version)


async def tables_of(engine, version: int) -> set[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT relname FROM pg_class WHERE relname = ANY(:n)"),
                                  {"n": [physical.partition_name(tb, version) for tb in physical.VERSIONED]})
        return {r.relname for r in rows}


async def kinds(engine) -> dict[str, bytes]:
    """`pg_class.relkind` of each versioned table: r plain, p partitioned."""
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT relname, relkind FROM pg_class WHERE relname = ANY(:n)"),
                                  {"n": [tb.name for tb in physical.VERSIONED]})
        return dict(rows.all())


async def parent_indexes(engine) -> set[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT indexname FROM pg_indexes WHERE tablename = ANY(:n)"),
                                  {"n": [tb.name for tb in physical.VERSIONED]})
        return {r.indexname for r in rows}


def expected_indexes(version: int) -> set[str]:
    return {ix.name for tb in physical.VERSIONED for ix in physical.secondary_indexes(tb, version)}


def pkeys(version: int) -> set[str]:
    return {f"{physical.partition_name(tb, version)}_pkey" for tb in physical.VERSIONED}


def value(column, i: int, version: int):
    """A value of the column's type, distinct per row."""
    kind = column.type
    if isinstance(kind, (t.UTCDateTime, DateTime)):  # the model's type, or a reflected timestamptz
        return T0 + timedelta(minutes=i)
    if isinstance(kind, JSON):
        return {"eur": i, "version": version}
    if isinstance(kind, Boolean):
        return i % 2 == 0
    if isinstance(kind, (Integer, BigInteger)):
        return version if column.name == "version" else i
    if isinstance(kind, (String, Text)):
        return f"{column.name[:6]}-{version}-{i}"[-(getattr(kind, "length", None) or 100):]
    raise AssertionError(f"no sample for {column}")


def sample(table, version: int, n: int) -> list[dict]:
    return [{c.name: value(c, i, version) for c in table.columns} for i in range(n)]


async def every_row(engine) -> dict[str, list]:
    out = {}
    async with engine.connect() as conn:
        for table in physical.VERSIONED:
            rows = await conn.execute(select(table).order_by(*table.primary_key.columns))
            out[table.name] = [tuple(r) for r in rows]
    return out


async def test_a_replay_version_has_only_its_lookup_indexes_until_indexed():
    engine = await pg_engine()
    live = await ensure_live(engine, "g")
    assert await indexes(engine, live) == expected_indexes(live) | pkeys(live)
    version, resumed = await begin_replay(engine, "g")
    assert (version, resumed) == (2, False)
    assert await tables_of(engine, version) == {physical.partition_name(tb, 2) for tb in physical.VERSIONED}
    lookups = {name for name in expected_indexes(version) if name.removesuffix(f"_v{version}") in physical.LOOKUPS}
    assert lookups and lookups != expected_indexes(version)
    assert await indexes(engine, version) == lookups | pkeys(version)  # none of the readers' indexes yet
    assert await parent_indexes(engine) == {f"{tb.name}_pkey" for tb in physical.VERSIONED}  # nothing else

    assert await begin_replay(engine, "g") == (2, True)  # resumed: its tables are there already
    async with engine.begin() as conn:
        await conn.execute(t.meetings.insert(), sample(t.meetings, version, 50))
        await physical.index_version(conn, version)
    assert await indexes(engine, version) == expected_indexes(version) | pkeys(version)
    assert "ix_customers_latest_a_v2" in expected_indexes(version)
    async with engine.connect() as conn:
        analysed = (await conn.execute(text("SELECT reltuples FROM pg_class WHERE relname = 'meetings_v2'"))).scalar()
    assert analysed == 50
    async with engine.begin() as conn:  # again: nothing missing, nothing fails
        await physical.index_version(conn, version)
    await engine.dispose()


async def test_dropping_a_version_drops_its_tables_and_nothing_else():
    engine = await pg_engine()
    await ensure_live(engine, "g")
    version, _ = await begin_replay(engine, "g")
    async with engine.begin() as conn:
        for v in (1, version):
            for table in physical.VERSIONED:
                await conn.execute(table.insert(), sample(table, v, 5))
        await physical.index_version(conn, version)
        await switch_to(conn, version)
    with pytest.raises(ValueError):
        await drop_version(engine, version)
    await drop_version(engine, 1)
    assert await tables_of(engine, 1) == set()
    rows = await every_row(engine)
    assert all(len(r) == 5 and {x[0] for x in r} == {2} for r in rows.values()), rows
    await drop_version(engine, 1)  # again: nothing left to drop
    async with engine.begin() as conn:
        pv = t.projection_versions.c
        states = dict((await conn.execute(select(pv.version, pv.state))).all())
    assert states == {1: "removed", 2: "live"}
    await engine.dispose()


async def test_a_row_of_a_version_without_tables_is_refused():
    engine = await pg_engine()
    await ensure_live(engine, "g")
    with pytest.raises(IntegrityError, match="no partition"):
        async with engine.begin() as conn:
            await conn.execute(t.meetings.insert(), sample(t.meetings, 7, 1))
    await engine.dispose()


async def test_on_sqlite_dropping_a_version_deletes_its_rows():
    url = f"sqlite+aiosqlite:///{Path(tempfile.mkdtemp()) / 'customers.db'}"
    await migrate(url)
    engine = make_engine(url)
    await ensure_live(engine, "g")
    version, _ = await begin_replay(engine, "g")
    async with engine.begin() as conn:
        for v in (1, version):
            for table in physical.VERSIONED:
                await conn.execute(table.insert(), sample(table, v, 3))
        await physical.index_version(conn, version)
        await switch_to(conn, version)
    await drop_version(engine, 1)
    rows = await every_row(engine)
    assert all(len(r) == 3 and {x[0] for x in r} == {2} for r in rows.values()), rows
    await engine.dispose()


# the versioned tables as they stood at revision 0007, before 0008 partitioned them
AT_0007 = ("meetings", "payments", "payment_aliases", "customers", "notes", "stripe_events_applied",
           "projection_offsets")


async def reflected(engine, names) -> list:
    """The tables as the database holds them now (their columns at this revision)."""
    from sqlalchemy import MetaData, Table

    meta = MetaData()
    async with engine.connect() as conn:
        return await conn.run_sync(lambda sync: [Table(n, meta, autoload_with=sync) for n in names])


async def rows_of(engine, tables) -> dict[str, list]:
    out = {}
    async with engine.connect() as conn:
        for table in tables:
            rows = await conn.execute(select(table).order_by(*table.primary_key.columns))
            out[table.name] = [tuple(r) for r in rows]
    return out


async def relkinds(engine, names) -> dict[str, bytes]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT relname, relkind FROM pg_class WHERE relname = ANY(:n)"),
                                  {"n": list(names)})
        return dict(rows.all())


async def index_names(engine, names) -> set[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT indexname FROM pg_indexes WHERE tablename = ANY(:n)"), {"n": list(names)})
        return {r.indexname for r in rows}


async def test_migration_0008_partitions_two_versions_row_for_row_and_back():
    url = await fresh_pg_database()
    config = alembic_config(url)
    await _alembic(command.upgrade, config, "0007")
    engine = make_engine(url)
    assert await relkinds(engine, AT_0007) == {name: b"r" for name in AT_0007}
    tables = await reflected(engine, AT_0007)
    secondary = await index_names(engine, AT_0007) - {f"{name}_pkey" for name in AT_0007}
    async with engine.begin() as conn:
        await conn.execute(t.projection_versions.insert(), [
            {"version": v, "state": state, "consumer_group": f"g-v{v}", "created_at": T0, "swept_until": T0}
            for v, state in ((2, "live"), (3, "building"), (4, "removed"))])
        for table in tables:
            for v in (1, 2):  # 1: rows of a version no longer listed
                await conn.execute(table.insert(), sample(table, v, 40))
    before = await rows_of(engine, tables)
    await engine.dispose()  # the migration renames the tables under any cached statement

    await _alembic(command.upgrade, config, "0008")
    engine = make_engine(url)
    assert await rows_of(engine, await reflected(engine, AT_0007)) == before
    assert await relkinds(engine, AT_0007) == {name: b"p" for name in AT_0007}
    for v in (1, 2, 3):  # a partition for each version with rows or not removed, each indexed as before
        parts = [f"{name}_v{v}" for name in AT_0007]
        assert await index_names(engine, parts) == {f"{ix}_v{v}" for ix in secondary} | {f"{p}_pkey" for p in parts}
    assert await relkinds(engine, [f"{name}_v4" for name in AT_0007]) == {}
    assert await index_names(engine, AT_0007) == {f"{name}_pkey" for name in AT_0007}
    await engine.dispose()

    await _alembic(command.downgrade, config, "0007")
    engine = make_engine(url)
    assert await rows_of(engine, await reflected(engine, AT_0007)) == before
    assert await relkinds(engine, AT_0007) == {name: b"r" for name in AT_0007}
    assert await index_names(engine, AT_0007) == secondary | {f"{name}_pkey" for name in AT_0007}
    await engine.dispose()


async def _alembic(step, config, revision: str) -> None:
    await asyncio.to_thread(step, config, revision)
