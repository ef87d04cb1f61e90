"""Several workers, one read model: what a batch claims, and the locks that hold the claims.

Workers in one consumer group apply batches at the same time, and one customer's rows can be
written from two partitions (a payment fact keyed by its payment id when Stripe's metadata names
no expert, the booking keyed by the expert). Each batch reads rows, merges, and writes them
back, so two batches on the same rows must not overlap. On PostgreSQL they are serialised by
transaction-scoped advisory locks (`pg_advisory_xact_lock`), released when the batch commits
or rolls back:

* the keys: `("expert", version, expert_id)` for an expert's meetings, customer summaries,
  notes, field definitions and customer profiles (field values, tags, archive); `("payment", version, id)` for a payment row and for every id it is known by (intent,
  checkout session, each charge), which is also what bookings name; `("email", version, id)` for
  the delivery reports of a provider email id and the message they update; `("partition", version,
  topic, partition)` for the stored offset of a partition (two owners during a rebalance);
* each key is locked under a stable 64-bit hash of its JSON form, all of them in ascending
  order of that number, in one statement, so two batches never wait on each other in a cycle;
* a batch first claims the keys its records name. The unit of work then reports every key it
  actually read-modify-wrote: experts of the meetings linking found, payments found through
  their aliases, hint experts, customers whose summary it recomputed. If that is more than was
  claimed, the transaction is rolled back and run again with the larger claim, all of it locked
  in order before the first read; nothing read without its lock is ever committed;
* every batch holds the version's own key in share mode; an erasure (which removes a person
  from every expert), or a batch that would claim more than `MAX_CLAIMS` keys (the locks live
  in PostgreSQL's shared lock table, `max_locks_per_transaction`), holds it exclusively instead.

A deadlock or a serialization failure (SQLSTATE 40P01, 40001; row locks outside the claims can
still meet) or a full lock table (53200) rolls the batch back; it is run again from the start and
reads the state afresh. The offsets are written in the same transaction, as always.

SQLite has one writer at a time: a batch takes the database's write lock with its first
statement, so batches of several workers on one SQLite file run one after the other.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from dataclasses import dataclass, field
from typing import Any, Iterable

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, BIGINT
from sqlalchemy.ext.asyncio import AsyncConnection

from projections import payments as money
from projections.rules import registry

Key = tuple

MAX_CLAIMS = 2_000  # locks per batch; beyond it the batch takes the version's key exclusively
RETRY_STATES = {"40P01", "40001", "53200"}  # deadlock, serialization failure, lock table full


@lru_cache(maxsize=1 << 16)  # a worker names the same experts and payments batch after batch
def lock_id(key: Key) -> int:
    """The advisory lock number of a key: the first 8 bytes of BLAKE2b of its JSON, signed."""
    digest = hashlib.blake2b(json.dumps(list(key), separators=(",", ":")).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@dataclass
class Claim:
    """The keys a batch holds, and whether it holds the whole version."""

    version: int
    keys: set[Key] = field(default_factory=set)
    exclusive: bool = False

    def expert(self, expert_id: str | None) -> None:
        if expert_id:
            self.keys.add(("expert", self.version, expert_id))

    def email(self, email_id: str | None) -> None:
        if email_id:
            self.keys.add(("email", self.version, email_id))

    def payment(self, *ids: str | None) -> None:
        self.keys.update(("payment", self.version, i) for i in ids if i)

    def missing(self, other: "Claim") -> bool:
        """Does `other` need anything this claim does not hold?"""
        if self.exclusive:
            return False
        return other.exclusive or not other.keys <= self.keys

    def widened(self, other: "Claim") -> "Claim":
        both = Claim(self.version, self.keys | other.keys, self.exclusive or other.exclusive)
        both.exclusive = both.exclusive or len(both.keys) > MAX_CLAIMS
        return both


def named_by(version: int, positions: Iterable[Any], items: Iterable[Any]) -> Claim:
    """What the records of a batch name: their partitions, experts and payment ids."""
    claim = Claim(version)
    for pos in positions:
        claim.keys.add(("partition", version, pos.topic, pos.partition))
    for item in items:
        if item is not None:  # None: a record that did not decode, its position alone is recorded
            registry.of(item.type).claims(item, claim)
    claim.exclusive = claim.exclusive or len(claim.keys) > MAX_CLAIMS
    return claim


def read_by(version: int, view: Any, changes: Any) -> Claim:
    """Every key a batch read-modify-wrote: the rows its view holds (`projections.rules.model.View`)
    and the payment rows its changes removed."""
    claim = Claim(version)
    for expert_id, _meeting_id in view.meetings:
        claim.expert(expert_id)
    for pid, p in view.payments.items():
        claim.payment(*money.ids(p.state or {}, pid))
        claim.expert(p.expert_id)
        claim.expert(p.hint_expert)
    claim.payment(*changes.payments_removed)
    for expert_id, _customer_id in (*view.summaries, *changes.summaries, *changes.summaries_removed, *changes.recount,
                                    *view.profiles, *changes.profiles_removed):
        claim.expert(expert_id)
    for expert_id in changes.definitions:
        claim.expert(expert_id)
    for message in view.communications.values():  # a report updates the status of its expert's message
        claim.expert(message.expert_id)
        claim.email(message.provider_message_id)
    for email_id in (*view.reports, *changes.reports_removed):
        claim.email(email_id)
    return claim


async def hold(conn: AsyncConnection, claim: Claim) -> None:
    """Take the claim's locks in the transaction of `conn`, in ascending order; first statement."""
    if conn.dialect.name == "sqlite":
        # the write lock now, before any read: otherwise SQLite reads outside it and writes later
        await conn.execute(text('UPDATE projection_offsets SET "offset" = "offset" WHERE 0 = 1'))
        return
    if conn.dialect.name != "postgresql":
        return
    whole = lock_id(("version", claim.version))
    if claim.exclusive:
        await conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": whole})
        return
    await conn.execute(text("SELECT pg_advisory_xact_lock_shared(:id)"), {"id": whole})
    ids = sorted({lock_id(k) for k in claim.keys})
    if ids:
        await conn.execute(
            text("SELECT count(pg_advisory_xact_lock(id)) FROM "
                 "(SELECT id FROM unnest(:ids) WITH ORDINALITY AS u(id, n) ORDER BY n) AS ordered")
            .bindparams(bindparam("ids", type_=ARRAY(BIGINT))), {"ids": ids})


def state_of(exc: BaseException) -> str | None:
    """The SQLSTATE of a database error, if the driver told it."""
    orig = getattr(exc, "orig", None)
    return getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)


def must_retry(exc: BaseException) -> bool:
    """A deadlock, a serialization failure or a full lock table: roll back and run the batch again."""
    return state_of(exc) in RETRY_STATES


def lock_table_full(exc: BaseException) -> bool:
    """PostgreSQL's lock table is full: the batch runs again holding the version's key alone."""
    return state_of(exc) == "53200"
