"""Each projection version in tables of its own (PostgreSQL).

Every versioned read-model table is partitioned by LIST on `version`: queries keep naming the
parent (`meetings … WHERE version = 3`, which the planner prunes to one partition), and
`meetings_v3` holds version 3's rows. The primary key is the parent's; the secondary indexes are
each partition's own. A replay's bulk fold COPYs into bare tables (not attached, no key, no index,
a CHECK on the version: `create_bare_version`) and then builds their keys and indexes and attaches
them, once (`finish_bare_version`); a version built batch by batch has only the indexes the
projection looks rows up by (`LOOKUPS`) until `index_version`. A retired version goes with a DROP
rather than a DELETE of every row.

A partition is made with CREATE TABLE … LIKE and ATTACH, and removed with DETACH … CONCURRENTLY
and DROP: none of them takes the lock on the parent that would stop the readers and the worker of
the other versions (CREATE TABLE … PARTITION OF and a plain DROP would). There is no DEFAULT
partition: a row of a version without tables is an error, not a row in the wrong place.

SQLite keeps plain tables holding every version, with their indexes: there, creating and indexing
a version do nothing and dropping one is a DELETE.

The functions take a synchronous connection (migrations) or an async one (the service).
"""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import Connection, Index, MetaData, Table, delete, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.schema import CreateIndex

from projections import tables as t

VERSIONED: tuple[Table, ...] = (t.meetings, t.payments, t.payment_aliases, t.customers, t.notes,
                                t.stripe_events_applied, t.projection_offsets, t.field_definitions,
                                t.customer_profiles, t.customer_tags, t.customer_field_values, t.communications,
                                t.email_reports, t.insight_counts, t.customer_insights, t.customer_merges)


# The indexes the projection itself looks rows up by (linking evidence, a customer's history, an
# erasure's email hash): a version being built has these from the start, or every batch would scan
# its tables. The others serve readers (sorts, search, the sweep) and wait until the replay is done.
LOOKUPS = frozenset({
    "ix_meetings_customer", "ix_meetings_pi", "ix_meetings_cs", "ix_meetings_booked", "ix_meetings_email_hash",
    "ix_payments_customer", "ix_payments_cs", "ix_payments_unlinked", "ix_payments_email_hash",
    "ix_payments_meeting", "ix_payments_booking_hint", "ix_payment_aliases_payment", "ix_customers_email_hash",
    "ix_notes_customer", "ix_customer_profiles_email_hash", "ix_communications_provider",
    "ix_communications_email_hash", "ix_customer_merges_survivor", "ix_customer_merges_email_hash",
})


def partition_name(table: Table | str, version: int) -> str:
    return f"{getattr(table, 'name', table)}_v{int(version)}"


def secondary_indexes(table: Table, version: int) -> list[Index]:
    """The secondary indexes of `table`'s partition for `version`: the model's, named `<name>_v<N>`."""
    part = table.to_metadata(MetaData(), name=partition_name(table, version))
    indexes = sorted(part.indexes, key=lambda ix: ix.name)
    for ix in indexes:
        ix.name = f"{ix.name}_v{int(version)}"
    return indexes


# Room left on each page for a row's next version, so that an update which changes no indexed
# column stays on its page (a HOT update: no index entry written). The tables the worker updates
# in place: a payment's state, a customer's figures, a contribution, an insight sum, an offset.
FILLFACTOR = {"customers": 80, "meetings": 85, "payments": 70, "customer_insights": 70, "insight_counts": 70,
              "projection_offsets": 50, "customer_profiles": 80, "email_reports": 80}


def set_fillfactor(conn: Connection, name: str, table: Table) -> None:
    if table.name in FILLFACTOR:
        conn.execute(text(f"ALTER TABLE {_q(conn, name)} SET (fillfactor = {FILLFACTOR[table.name]})"))


async def create_version(conn: AsyncConnection, version: int, *, indexed: bool) -> None:
    """The version's partitions, with the indexes the projection looks rows up by (`LOOKUPS`), and
    the readers' ones too when `indexed`; what exists is kept."""
    await conn.run_sync(create_version_sync, version, indexed=indexed)


async def create_bare_version(conn: AsyncConnection, version: int) -> None:
    """The version's tables for a bulk fold's COPY: not attached, no primary key, no index, only
    a CHECK that every row is the version's (so attaching them later needs no scan).
    `finish_bare_version` makes them whole. SQLite: nothing to do."""
    await conn.run_sync(_create_bare_sync, version)


def _create_bare_sync(conn: Connection, version: int) -> None:
    if conn.dialect.name != "postgresql":
        return
    for table in _parents(conn):
        name = partition_name(table, version)
        conn.execute(text(f"CREATE TABLE IF NOT EXISTS {_q(conn, name)} (LIKE {_q(conn, table.name)} INCLUDING DEFAULTS, "
                          f"CONSTRAINT {_q(conn, name + '_is_version')} CHECK (version = {int(version)}))"))
        set_fillfactor(conn, name, table)


async def finish_bare_version(engine: AsyncEngine, version: int, connections: int = 2) -> int:
    """Give a bulk-filled version its primary keys and every secondary index, built on
    `connections` connections at once (each takes the next, biggest tables first), analyse its
    tables, and attach them to their parents. Idempotent. Returns the number of statements run."""
    if engine.dialect.name != "postgresql":
        return 0
    async with engine.connect() as conn:
        work = await conn.run_sync(_unfinished_sync, version)
    pending = list(work)

    async def builder() -> None:
        async with engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text("SET maintenance_work_mem = '256MB'"))
            while pending:
                statement = pending.pop(0)
                await conn.run_sync(lambda c: c.execute(statement))
    await asyncio.gather(*(builder() for _ in range(max(1, connections))))
    async with engine.begin() as conn:
        await conn.run_sync(_attach_sync, version)
    return len(work)


def _unfinished_sync(conn: Connection, version: int) -> list:
    """The primary keys and secondary indexes the version's tables lack, the biggest tables' first,
    then an ANALYZE of each table."""
    have = indexes_present(conn, version)
    order = {name: i for i, name in enumerate(BIG_FIRST)}
    out = []
    for table in _parents(conn):
        name = partition_name(table, version)
        if f"{name}_pkey" not in have and not _attached(conn, name):
            keys = ", ".join(_q(conn, c.name) for c in table.primary_key.columns)
            out.append((table.name, text(f"ALTER TABLE {_q(conn, name)} ADD CONSTRAINT {_q(conn, name + '_pkey')} "
                                         f"PRIMARY KEY ({keys})")))
        out += [(table.name, CreateIndex(ix, if_not_exists=True)) for ix in secondary_indexes(table, version)
                if ix.name not in have]
    out = [statement for _name, statement in sorted(out, key=lambda x: order.get(x[0], len(order)))]
    return out + [text(f"ANALYZE {_q(conn, partition_name(tb, version))}") for tb in _parents(conn)]


def _attached(conn: Connection, name: str) -> bool:
    return conn.execute(text("SELECT EXISTS (SELECT 1 FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                             "WHERE c.relname = :n AND pg_table_is_visible(c.oid))"), {"n": name}).scalar()


def _attach_sync(conn: Connection, version: int) -> None:
    present = _partitions(conn, version)
    for table in _parents(conn):
        name = partition_name(table, version)
        if name in present and present[name] is None:  # its CHECK spares the scan
            conn.execute(text(f"ALTER TABLE {_q(conn, table.name)} ATTACH PARTITION {_q(conn, name)} "
                              f"FOR VALUES IN ({int(version)})"))


# the tables a replay's indexes take longest on, in that order (`finish_bare_version`)
BIG_FIRST = ("customers", "meetings", "payments", "insight_counts", "customer_insights")


async def index_version(conn: AsyncConnection, version: int) -> None:
    """Build the version's missing secondary indexes and analyse its partitions."""
    await conn.run_sync(index_version_sync, version)


async def drop_version_tables(conn: AsyncConnection, version: int) -> None:
    """Remove the version's rows: its partitions on PostgreSQL (`conn` in AUTOCOMMIT, since a
    concurrent DETACH runs outside a transaction), a DELETE on SQLite."""
    await conn.run_sync(drop_version_tables_sync, version)


def _parents(conn: Connection) -> tuple[Table, ...]:
    """The versioned tables whose parent exists: a migration of an older revision sees only the
    tables of its time."""
    names = {r.relname for r in conn.execute(text(
        "SELECT relname FROM pg_class WHERE relname = ANY(:names) AND pg_table_is_visible(oid)"),
        {"names": [tb.name for tb in VERSIONED]})}
    return tuple(tb for tb in VERSIONED if tb.name in names)


def create_version_sync(conn: Connection, version: int, *, indexed: bool) -> None:
    if conn.dialect.name != "postgresql":
        return
    present = _partitions(conn, version)
    for table in _parents(conn):
        name = partition_name(table, version)
        if name not in present:
            conn.execute(text(f"CREATE TABLE IF NOT EXISTS {_q(conn, name)} "
                              f"(LIKE {_q(conn, table.name)} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"))
            set_fillfactor(conn, name, table)
        if present.get(name) is None:
            conn.execute(text(f"ALTER TABLE {_q(conn, table.name)} ATTACH PARTITION {_q(conn, name)} "
                              f"FOR VALUES IN ({int(version)})"))
    _create_indexes(conn, version, only=None if indexed else LOOKUPS)


def index_version_sync(conn: Connection, version: int) -> None:
    if conn.dialect.name != "postgresql":
        return
    _create_indexes(conn, version)
    conn.execute(text("ANALYZE " + ", ".join(_q(conn, partition_name(tb, version)) for tb in _parents(conn))))


def drop_version_tables_sync(conn: Connection, version: int) -> None:
    conn.execute(delete(t.projection_generations).where(t.projection_generations.c.version == version))
    if conn.dialect.name != "postgresql":
        for table in VERSIONED:
            conn.execute(delete(table).where(table.c.version == version))
        return
    present = _partitions(conn, version)
    for table in _parents(conn):
        name = partition_name(table, version)
        if name not in present:
            continue
        pending = present[name]
        if pending is not None:  # attached; FINALIZE ends a concurrent detach that was interrupted
            how = "FINALIZE" if pending else "CONCURRENTLY"
            conn.execute(text(f"ALTER TABLE {_q(conn, table.name)} DETACH PARTITION {_q(conn, name)} {how}"))
        conn.execute(text(f"DROP TABLE IF EXISTS {_q(conn, name)}"))


def indexes_present(conn: Connection, version: int) -> set[str]:
    """Names of the indexes the version's partitions have (primary keys included)."""
    rows = conn.execute(text("SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() "
                             "AND tablename = ANY(:names)"),
                        {"names": [partition_name(tb, version) for tb in VERSIONED]})
    return {r.indexname for r in rows}


def _create_indexes(conn: Connection, version: int, only: frozenset[str] | None = None) -> None:
    have = indexes_present(conn, version)
    suffix = f"_v{int(version)}"
    for table in _parents(conn):
        for ix in secondary_indexes(table, version):
            if only is not None and ix.name.removesuffix(suffix) not in only:
                continue
            if ix.name not in have:
                conn.execute(CreateIndex(ix, if_not_exists=True))


def _partitions(conn: Connection, version: int) -> dict[str, Any]:
    """The version's tables that exist: name -> None when not attached, else whether a detach is pending."""
    rows = conn.execute(text(
        "SELECT c.relname, i.inhdetachpending AS pending FROM pg_class c "
        "LEFT JOIN pg_inherits i ON i.inhrelid = c.oid "
        "WHERE c.relname = ANY(:names) AND c.relkind = 'r' AND pg_table_is_visible(c.oid)"),
        {"names": [partition_name(tb, version) for tb in VERSIONED]})
    return {r.relname: r.pending for r in rows}


def _q(conn: Connection, name: str) -> str:
    return conn.dialect.identifier_preparer.quote(name)
