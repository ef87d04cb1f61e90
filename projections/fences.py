"""The fences of a write from a state held in memory (`projections.live`): a partition's stored
offset compared and set, and the generations of the scopes a batch's rows belong to, checked and
bumped, in the writing transaction. Any writer of a version's rows on PostgreSQL bumps the
generations of what it changes (the sweep too), so a worker holding those rows sees that its
copy is stale before it writes from it. PostgreSQL only."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

Tp = tuple[str, int]


class Stale(Exception):
    """Another writer changed what this engine holds: the scopes named, or (`partitions`) a
    partition's offset, since this engine read or wrote them."""

    def __init__(self, scopes: set[str] = frozenset(), partitions: set[Tp] = frozenset()) -> None:
        super().__init__(f"{len(scopes)} scopes, {len(partitions)} partitions changed by another writer")
        self.scopes, self.partitions = set(scopes), set(partitions)


async def _driver(conn: AsyncConnection) -> Any:
    await conn.execute(text("SELECT 1"))  # the transaction is open before the driver is used directly
    return (await conn.get_raw_connection()).driver_connection


async def read_generations(conn: AsyncConnection, version: int, scopes: set[str]) -> dict[str, int]:
    """The stored generation of each scope (absent: 0), as `conn`'s snapshot sees them."""
    if not scopes:
        return {}
    raw = await _driver(conn)
    found = {r[0]: r[1] for r in await raw.fetch(
        "SELECT scope, generation FROM projection_generations WHERE version = $1 AND scope = ANY($2::text[])",
        version, sorted(scopes))}
    return {s: found.get(s, 0) for s in scopes}


async def bump_generations(conn: AsyncConnection, version: int, expected: dict[str, int] | None,
                           scopes: set[str]) -> dict[str, int]:
    """Lock the scopes' generations, check them against `expected` (None: no check, as the sweep
    does) and add one to each. Returns the new generations; raises `Stale` on a mismatch."""
    if not scopes:
        return {}
    raw = await _driver(conn)
    ordered = sorted(scopes)
    stored = {r[0]: r[1] for r in await raw.fetch(
        "SELECT scope, generation FROM projection_generations WHERE version = $1 AND scope = ANY($2::text[]) "
        "ORDER BY scope FOR UPDATE", version, ordered)}
    if expected is not None:
        stale = {s for s in ordered if stored.get(s, 0) != expected.get(s, 0)}
        if stale:
            raise Stale(stale)
    rows = await raw.fetch(
        "INSERT INTO projection_generations (version, scope, generation) "
        "SELECT $1, s, 1 FROM unnest($2::text[]) AS s "
        "ON CONFLICT (version, scope) DO UPDATE SET generation = projection_generations.generation + 1 "
        "RETURNING scope, generation", version, ordered)
    bumped = {r[0]: r[1] for r in rows}
    if expected is not None:  # a row another writer inserted after the check above
        stale = {s for s in ordered if bumped.get(s) != expected.get(s, 0) + 1}
        if stale:
            raise Stale(stale)
    return bumped


async def move_offsets(conn: AsyncConnection, version: int, expected: dict[Tp, int],
                       new: dict[Tp, tuple[int, datetime | None]]) -> None:
    """Compare-and-set of the partitions' stored offsets: each must be `expected` (absent: -1)."""
    if not new:
        return
    raw = await _driver(conn)
    tps = sorted(new)
    topics, parts = [tp[0] for tp in tps], [tp[1] for tp in tps]
    stored = {(r[0], r[1]): r[2] for r in await raw.fetch(
        'SELECT topic, "partition", "offset" FROM projection_offsets WHERE version = $1 AND '
        '(topic, "partition") IN (SELECT * FROM unnest($2::text[], $3::int[])) ORDER BY topic, "partition" '
        "FOR UPDATE", version, topics, parts)}
    stale = {tp for tp in tps if stored.get(tp, -1) != expected.get(tp, -1)}
    if stale:
        raise Stale(partitions=stale)
    new_tps = [tp for tp in tps if tp not in stored]
    if new_tps:  # a row another writer inserts meanwhile is not overwritten: this batch is stale
        inserted = await raw.fetch(
            'INSERT INTO projection_offsets (version, topic, "partition", "offset", event_time) '
            "SELECT $1, * FROM unnest($2::text[], $3::int[], $4::bigint[], $5::timestamptz[]) "
            'ON CONFLICT DO NOTHING RETURNING topic, "partition"',
            version, [tp[0] for tp in new_tps], [tp[1] for tp in new_tps], [new[tp][0] for tp in new_tps],
            [new[tp][1] for tp in new_tps])
        if lost := set(new_tps) - {(r[0], r[1]) for r in inserted}:
            raise Stale(partitions=lost)
    old = [tp for tp in tps if tp in stored]
    if old:
        await raw.execute(
            'UPDATE projection_offsets AS o SET "offset" = u.o, event_time = COALESCE(u.at, o.event_time) '
            "FROM unnest($2::text[], $3::int[], $4::bigint[], $5::timestamptz[]) AS u(t, p, o, at) "
            'WHERE o.version = $1 AND o.topic = u.t AND o."partition" = u.p',
            version, [tp[0] for tp in old], [tp[1] for tp in old], [new[tp][0] for tp in old],
            [new[tp][1] for tp in old])


async def check_epoch(conn: AsyncConnection, version: int, scope: str, seen: int, partitions: set[Tp]) -> None:
    """`scope`'s generation must still be `seen` (the erasures' epoch: a batch loaded before an
    erasure and written after it may have read what the erasure removed): else `Stale`."""
    if (await read_generations(conn, version, {scope}))[scope] != seen:
        raise Stale(partitions=partitions)
