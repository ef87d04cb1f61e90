"""Engine creation, schema migrations and dialect-neutral upserts."""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator, Iterable, Iterator, Sequence

import msgspec
from sqlalchemy import JSON, BigInteger, Boolean, Integer, Table, bindparam, event, func, select, text, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

_json = msgspec.json.Encoder().encode
MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def make_engine(url: str, **kw: Any) -> AsyncEngine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 30}, **kw)

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn, _record):  # pragma: no cover - trivial
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    kw.setdefault("pool_size", 10)
    kw.setdefault("pool_pre_ping", True)
    return create_async_engine(url, **kw)


# what an unreachable database raises: waited out, never a reason to dead-letter
TRANSIENT = (OperationalError, InterfaceError, ConnectionError, OSError, asyncio.TimeoutError)


async def reachable(engine: AsyncEngine, timeout: float = 5.0) -> bool:
    """Whether the database answers `select 1` within `timeout` seconds, whatever the failure."""
    try:
        async with engine.connect() as conn:
            await asyncio.wait_for(conn.execute(text("select 1")), timeout)
        return True
    except Exception:  # noqa: BLE001 - unreachable, whatever the reason
        return False


def alembic_config(url: str):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url)
    return cfg


def migrate_sync(url: str) -> None:
    from alembic import command

    command.upgrade(alembic_config(url), "head")


async def migrate(url: str) -> None:
    await asyncio.to_thread(migrate_sync, url)


@asynccontextmanager
async def one_at_a_time(url: str, what: str) -> AsyncIterator[None]:
    """One process at a time in this block, across every process on the database `url`.

    Workers started together (two in one consumer group) would otherwise migrate the schema and
    create the first version at the same moment. PostgreSQL: a session advisory lock on a
    connection of its own; SQLite: an exclusive lock on a file beside the database.
    """
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if not path or path == ":memory:":
            yield
            return
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with open(f"{path}.{what}.lock", "a+") as handle:
            await asyncio.to_thread(fcntl.flock, handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        return
    key = int.from_bytes(hashlib.blake2b(f"customers:{what}".encode(), digest_size=8).digest(), "big", signed=True)
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
            await conn.commit()
            try:
                yield
            finally:
                await conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                await conn.commit()
    finally:
        await engine.dispose()


def upsert(conn: AsyncConnection, table: Table, rows: Sequence[dict], keys: Iterable[str]):
    """INSERT ... ON CONFLICT (keys) DO UPDATE, for PostgreSQL and SQLite alike."""
    keys = list(keys)
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(table)
    columns = [c for c in rows[0].keys() if c not in keys]
    if columns:
        stmt = stmt.on_conflict_do_update(
            index_elements=keys, set_={c: stmt.excluded[c] for c in columns}
        )
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=keys)
    return conn.execute(stmt, list(rows))


def insert_new(conn: AsyncConnection, table: Table, rows: Sequence[dict], keys: Iterable[str]):
    """INSERT ... ON CONFLICT (keys) DO NOTHING: rows whose key exists are left as they are."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return conn.execute(dialect.insert(table).on_conflict_do_nothing(index_elements=list(keys)), list(rows))


def in_tuples(dialect: str, columns: Sequence, rows: Iterable[tuple]):
    """`(a, b, ...) IN rows`, written so that PostgreSQL plans it well for thousands of rows.

    A literal row list becomes an OR of thousands of conditions there, whose planning alone
    takes longer than the look-ups; one array per column, zipped by `unnest`, is a single
    semi-join whatever the count (and one statement text, so prepared statements are reused).
    SQLite handles the literal row list well.
    """
    rows = list(rows)
    if dialect != "postgresql":
        return tuple_(*columns).in_(rows)
    arrays = [bindparam(None, [row[i] for row in rows], type_=postgresql.ARRAY(col.type))
              for i, col in enumerate(columns)]
    return tuple_(*columns).in_(select(*[func.unnest(a) for a in arrays]))


def any_of(dialect: str, column, values: Iterable):
    """`column IN values`; on PostgreSQL one array parameter (`= ANY`), whatever the count."""
    values = list(values)
    if dialect != "postgresql":
        return column.in_(values)
    return column == func.any(bindparam(None, values, type_=postgresql.ARRAY(column.type)))


def _pg_array_type(column) -> str:
    """The PostgreSQL element type an `unnest` array of this column is sent as (JSON: as text)."""
    from projections.tables import UTCDateTime

    kind = column.type
    if isinstance(kind, UTCDateTime):
        return "timestamptz"
    if isinstance(kind, BigInteger):
        return "int8"
    if isinstance(kind, Integer):
        return "int4"
    if isinstance(kind, Boolean):
        return "bool"
    return "text"


async def bulk_upsert(conn: AsyncConnection, table: Table, rows: Sequence[dict], keys: Sequence[str], *,
                      update: bool = True) -> None:
    """Write many rows in one statement: insert, or update the row whose key exists.

    On PostgreSQL the rows travel as one array per column, zipped by `unnest`, and a row equal
    to the stored one is not written again (`IS DISTINCT FROM`: no dead tuple, no WAL). With
    `update=False` an existing row is left as it is. SQLite gets one multi-row upsert.
    """
    if not rows:
        return
    if conn.dialect.name != "postgresql":
        await (upsert(conn, table, rows, keys) if update else insert_new(conn, table, rows, keys))
        return
    names = list(rows[0].keys())
    params, arrays, selects = {}, [], []
    for i, name in enumerate(names):
        column = table.c[name]
        values = [r[name] for r in rows]
        if isinstance(column.type, JSON):
            values = [None if v is None else _json(v).decode() for v in values]
            selects.append(f"u.c{i}::json")
        else:
            selects.append(f"u.c{i}")
        params[f"c{i}"] = values
        arrays.append(f"CAST(:c{i} AS {_pg_array_type(column)}[])")

    def distinct(n: str) -> str:
        if isinstance(table.c[n].type, JSON):
            return f'{table.name}."{n}"::jsonb IS DISTINCT FROM EXCLUDED."{n}"::jsonb'
        return f'{table.name}."{n}" IS DISTINCT FROM EXCLUDED."{n}"'

    quoted = ", ".join(f'"{n}"' for n in names)
    aliases = ", ".join(f"c{i}" for i in range(len(names)))
    sql = (f'INSERT INTO {table.name} ({quoted}) SELECT {", ".join(selects)} '
           f'FROM unnest({", ".join(arrays)}) AS u({aliases}) ON CONFLICT ({", ".join(keys)}) ')
    others = [n for n in names if n not in keys]
    if update and others:
        sql += ("DO UPDATE SET " + ", ".join(f'"{n}" = EXCLUDED."{n}"' for n in others)
                + " WHERE " + " OR ".join(distinct(n) for n in others))
    else:
        sql += "DO NOTHING"
    await conn.execute(text(sql), params)


async def add_counts(conn: AsyncConnection, table: Table, rows: Sequence[dict], keys: Sequence[str]) -> None:
    """Add each row's `value` to the stored one (a missing row counts as 0); `label` replaced when
    given. One statement: on PostgreSQL the rows travel as one array per column, zipped by
    `unnest`, as in `bulk_upsert`. A sum that comes back to 0 stays as a row of 0 (readers skip
    it), so that no second statement has to look for them."""
    if not rows:
        return
    if conn.dialect.name != "postgresql":
        stmt = sqlite.insert(table)
        stmt = stmt.on_conflict_do_update(index_elements=list(keys), set_={
            "value": table.c.value + stmt.excluded.value,
            "label": func.coalesce(stmt.excluded.label, table.c.label)})
        await conn.execute(stmt, list(rows))
        return
    names = list(rows[0].keys())
    params = {f"c{i}": [r[n] for r in rows] for i, n in enumerate(names)}
    arrays = ", ".join(f"CAST(:c{i} AS {_pg_array_type(table.c[n])}[])" for i, n in enumerate(names))
    quoted = ", ".join(f'"{n}"' for n in names)
    aliases = ", ".join(f"c{i}" for i in range(len(names)))
    sql = (f"INSERT INTO {table.name} ({quoted}) SELECT {aliases} FROM unnest({arrays}) AS u({aliases}) "
           f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET value = {table.name}.value + EXCLUDED.value, "
           f"label = coalesce(EXCLUDED.label, {table.name}.label)")
    await conn.execute(text(sql), params)


async def copy_rows(conn: AsyncConnection, table: Table, columns: Sequence[str], records: Iterable[tuple], *,
                    into: str | None = None, chunk: int = 50_000) -> int:
    """Append rows (tuples of `columns`' values; JSON columns as Python values) to `table`, or to
    its partition `into`, in the caller's transaction: COPY on PostgreSQL, sent in chunks of
    `chunk` rows; one multi-row INSERT per chunk on SQLite. Returns the number of rows."""
    written = 0
    if conn.dialect.name != "postgresql":
        json_at = [i for i, name in enumerate(columns) if isinstance(table.c[name].type, JSON)]
        for part in _chunks(records, chunk):
            if json_at:  # a value held as its JSON (`msgspec.Raw`) goes through the dialect decoded
                part = [_decoded(record, json_at) for record in part]
            await conn.execute(table.insert(), [dict(zip(columns, record)) for record in part])
            written += len(part)
        return written
    await conn.execute(text("SELECT 1"))  # the transaction is open before the driver is used directly
    adapted = await conn.get_raw_connection()
    raw = adapted.driver_connection
    if any(isinstance(table.c[name].type, JSON) for name in columns):
        # JSON values go as they are and are encoded by the driver (msgspec), in binary COPY
        await raw.set_type_codec("json", schema="pg_catalog", encoder=_json, decoder=bytes.decode, format="binary")
    try:
        for part in _chunks(records, chunk):
            await raw.copy_records_to_table(into or table.name, records=part, columns=list(columns))
            written += len(part)
    finally:  # the connection goes back to the pool as the dialect made it (JSON decoded by it)
        await conn.dialect.setup_asyncpg_json_codec(adapted.dbapi_connection)
    return written


def _decoded(record: tuple, at: list[int]) -> tuple:
    values = list(record)
    for i in at:
        if type(values[i]) is msgspec.Raw:
            values[i] = msgspec.json.decode(values[i])
    return tuple(values)


def _chunks(rows: Iterable, size: int) -> Iterator[list]:
    part: list = []
    for row in rows:
        part.append(row)
        if len(part) >= size:
            yield part
            part = []
    if part:
        yield part
