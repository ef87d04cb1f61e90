"""A new database migrated to head has the schema `projections.tables` describes, on PostgreSQL and
SQLite: the migrations state their own DDL, so this is what keeps the two from drifting apart.

Alembic's autogenerate comparison covers tables, columns (type, nullability, server default),
indexes and unique constraints; it does not compare primary keys, which are checked here
beside it. What the models cannot express is left out, each case named below.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Column, Connection, Index, inspect, text
from sqlalchemy.schema import CreateIndex

from projections import physical
from projections.db import make_engine, migrate
from projections.tables import metadata
from testing.harness import fresh_pg_database

VERSIONED = {table.name for table in physical.VERSIONED}


async def migrated(backend: str):
    url = await fresh_pg_database() if backend == "postgresql" else \
        f"sqlite+aiosqlite:///{Path(tempfile.mkdtemp()) / 'customers.db'}"
    await migrate(url)
    return make_engine(url)


def expression_indexes() -> list[Index]:
    return sorted((ix for table in metadata.tables.values() for ix in table.indexes
                   if not all(isinstance(e, Column) for e in ix.expressions)), key=lambda ix: ix.name)


def differences(conn: Connection) -> list:
    context = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        found = compare_metadata(context, metadata)
    # SQLite's reflection cannot read an index on an expression, so autogenerate skips those
    # (saying so); `test_expression_indexes_are_the_models` checks them from sqlite_master.
    skipped = {ix.name for ix in expression_indexes()} if conn.dialect.name == "sqlite" else set()
    unexplained = [str(w.message) for w in caught if not any(f"index {name}" in str(w.message)
                                                             or f"index '{name}'" in str(w.message)
                                                             for name in skipped)]
    assert unexplained == []
    if conn.dialect.name == "postgresql":
        # The versioned tables are partitioned by version and their secondary indexes belong to
        # each version's partition (`projections.physical` builds them from these same models);
        # the parent has none and a new database has no version yet, so the models' indexes of
        # those tables are absent from the parent by design. Exactly those, nothing else.
        expected = {ix.name for table in physical.VERSIONED for ix in table.indexes}
        ignored = [d for d in found if d[0] == "add_index" and d[1].table.name in VERSIONED]
        assert {d[1].name for d in ignored} == expected
        found = [d for d in found if d not in ignored]
    return found


def primary_keys(conn: Connection) -> dict[str, list[str]]:
    inspector = inspect(conn)
    return {name: inspector.get_pk_constraint(name)["constrained_columns"] for name in metadata.tables}


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
async def test_a_migrated_database_is_what_the_models_describe(backend):
    engine = await migrated(backend)
    async with engine.connect() as conn:
        assert await conn.run_sync(differences) == []
        assert await conn.run_sync(primary_keys) == {
            name: [c.name for c in table.primary_key.columns] for name, table in metadata.tables.items()}
    await engine.dispose()


async def test_expression_indexes_are_the_models():
    """The indexes on an expression (the sorts on a time that may be NULL) as SQLite stores them are the models' own,
    compiled for SQLite; on PostgreSQL it is built per partition from the models themselves."""
    engine = await migrated("sqlite")
    indexes = expression_indexes()
    assert sorted(ix.name for ix in indexes) == ["ix_customers_latest_a", "ix_customers_status"]
    async with engine.connect() as conn:
        stored = {name: sql for name, sql in (await conn.execute(text(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index'"))).all()}
        dialect = conn.dialect
    assert {ix.name: stored.get(ix.name) for ix in indexes} == {
        ix.name: str(CreateIndex(ix).compile(dialect=dialect)).strip() for ix in indexes}
    await engine.dispose()


async def test_versioned_tables_are_partitioned_by_version_on_postgresql():
    """What the models cannot say: on PostgreSQL the versioned tables are LIST partitioned on
    `version` and carry nothing but their primary key; the others are plain tables."""
    engine = await migrated("postgresql")
    async with engine.connect() as conn:
        kinds = dict((await conn.execute(text(
            "SELECT c.relname, c.relkind::text FROM pg_class c WHERE c.relname = ANY(:n)"),
            {"n": list(metadata.tables)})).all())
        keys = dict((await conn.execute(text(
            "SELECT c.relname, pg_get_partkeydef(c.oid) FROM pg_class c WHERE c.relkind = 'p'"))).all())
        indexes = {r.indexname for r in await conn.execute(text(
            "SELECT indexname FROM pg_indexes WHERE tablename = ANY(:n)"), {"n": sorted(VERSIONED)})}
    assert kinds == {name: "p" if name in VERSIONED else "r" for name in metadata.tables}
    assert keys == {name: "LIST (version)" for name in VERSIONED}
    assert indexes == {f"{name}_pkey" for name in VERSIONED}
    await engine.dispose()
