"""Erasure and notes inside a batch: what the ledger keeps out, and the commands that change it.

A mixin of the projector's unit of work (`projections.projector._Work`): it uses that batch's
connection, version and secret, and never commits.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from sqlalchemy import delete, or_, select, update

from customers.events import BookingCreated
from customers.facts import PaymentObserved
from customers.ids import email_hash
from projections import tables as t
from projections.commands import CustomerErased, NoteAdded, NoteDeleted
from projections.db import in_tuples, insert_new, upsert
from projections.meetings import BOOKING_TYPES


def ref_of(*ids: str | None) -> str:
    """The `erased_refs.ref` of a thing named by these ids: SHA-256 of their JSON array.

    Unambiguous whatever characters the ids hold (`("a/b", "c")` and `("a", "b/c")` differ).
    """
    return hashlib.sha256(json.dumps(list(ids)).encode()).hexdigest()


def payment_refs(fact: PaymentObserved) -> set[str]:
    """The refs of every id a payment fact names its payment by."""
    named = {fact.payment_id, fact.payment_intent_id, fact.checkout_session_id} | fact.charge_ids()
    return {ref_of(i) for i in named if i}


class Forgetting:

    async def _erased_hashes(self, items: list[Any]) -> dict[str, datetime]:
        """Erased emails among the batch's, with when they were erased."""
        emails = {e.customer.email for e in items if isinstance(e, BookingCreated)}
        emails |= {f.customer_email for f in items if isinstance(f, PaymentObserved) and f.customer_email}
        if not emails:
            return {}
        hashes = {email_hash(self.secret, e) for e in emails}
        rows = await self.conn.execute(select(t.erasures).where(t.erasures.c.email_hash.in_(hashes)))
        return {r.email_hash: r.erased_at for r in rows}

    async def _erased_refs(self, items: list[Any]) -> set[tuple[str, str]]:
        wanted = set()
        for e in items:
            if isinstance(e, BOOKING_TYPES):
                wanted.add(("meeting", ref_of(e.expert_id, e.meeting_id)))
            elif isinstance(e, PaymentObserved):
                wanted |= {("payment", ref) for ref in payment_refs(e)}
                if e.expert_id and e.meeting_id:
                    wanted.add(("meeting", ref_of(e.expert_id, e.meeting_id)))
            elif isinstance(e, (NoteAdded, NoteDeleted)):
                wanted.add(("customer", ref_of(e.expert_id, e.customer_id)))
        if not wanted:
            return set()
        r = t.erased_refs.c
        rows = await self.conn.execute(select(r.kind, r.ref).where(in_tuples(self.conn.dialect.name, (r.kind, r.ref), sorted(wanted))))
        return {(row.kind, row.ref) for row in rows}

    def _is_erased(self, email: str | None, occurred_at: datetime, erased: dict[str, datetime]) -> bool:
        """Erased: anything that happened up to the erasure stays out, replays included."""
        if not (email and erased):
            return False
        when = erased.get(email_hash(self.secret, email))
        return when is not None and occurred_at <= when


    async def _note_erased(self, cmd: NoteAdded | NoteDeleted) -> bool:
        """A note command on an erased customer id from up to the erasure (later: a new relationship)."""
        key = ("customer", ref_of(cmd.expert_id, cmd.customer_id))
        if key not in self.erased_refs:
            return False
        r = t.erased_refs.c
        erased_at = (await self.conn.execute(select(r.erased_at).where(r.kind == key[0], r.ref == key[1]))).scalar()
        return erased_at is not None and cmd.occurred_at <= erased_at

    async def _apply_command(self, cmd) -> None:
        if isinstance(cmd, (NoteAdded, NoteDeleted)) and await self._note_erased(cmd):
            self.result.skipped_erased += 1
            return
        n = t.notes.c
        if isinstance(cmd, NoteAdded):
            # first add wins; a re-sent add never revives a deleted note (nor one a delete overtook)
            await insert_new(self.conn, t.notes, [{
                "version": self.version, "note_id": cmd.note_id, "expert_id": cmd.expert_id,
                "customer_id": cmd.customer_id, "body": cmd.body, "created_at": cmd.created_at, "deleted": False,
            }], ["version", "note_id"])
        elif isinstance(cmd, NoteDeleted):
            # only the owner's note is deleted; its text goes, its id stays as a tombstone
            done = await self.conn.execute(update(t.notes).where(
                n.version == self.version, n.note_id == cmd.note_id, n.expert_id == cmd.expert_id,
                n.customer_id == cmd.customer_id).values(deleted=True, body=""))
            if done.rowcount == 0:
                await insert_new(self.conn, t.notes, [{
                    "version": self.version, "note_id": cmd.note_id, "expert_id": cmd.expert_id,
                    "customer_id": cmd.customer_id, "body": "", "created_at": cmd.occurred_at, "deleted": True,
                }], ["version", "note_id"])
        elif isinstance(cmd, CustomerErased):
            await self._erase(cmd)

    async def _erase(self, cmd: CustomerErased) -> None:
        """Remove the person from every expert's rows in this version; the ledger keeps them out."""
        await upsert(self.conn, t.erasures, [{"email_hash": cmd.email_hash, "erased_at": cmd.occurred_at}],
                     ["email_hash"])
        c, n = t.customers.c, t.notes.c
        victims = (await self.conn.execute(select(c.expert_id, c.customer_id).where(
            c.version == self.version, c.email_hash == cmd.email_hash))).all()
        p, m = t.payments.c, t.meetings.c
        refs = [("customer", ref_of(e, cid)) for e, cid in victims]
        refs += [("meeting", ref_of(r.expert_id, r.meeting_id)) for r in await self.conn.execute(
            select(m.expert_id, m.meeting_id).where(m.version == self.version, m.email_hash == cmd.email_hash))]
        payments = await self.conn.execute(select(p.payment_id, p.charge_id, p.checkout_session_id).where(
            p.version == self.version,
            or_(p.email_hash == cmd.email_hash, in_tuples(self.conn.dialect.name, (p.expert_id, p.customer_id), victims or [("", "")]))))
        payments = payments.all()
        refs += [("payment", ref_of(i)) for r in payments for i in r if i]
        gone = sorted({r.payment_id for r in payments})
        a = t.payment_aliases.c
        for chunk in [gone[i:i + 1000] for i in range(0, len(gone), 1000)]:  # every id Stripe may name them by
            aliases = (await self.conn.execute(select(a.alias).where(
                a.version == self.version, a.payment_id.in_(chunk)))).all()
            refs += [("payment", ref_of(r.alias)) for r in aliases]
            await self.conn.execute(delete(t.payment_aliases).where(a.version == self.version, a.payment_id.in_(chunk)))
        if refs:
            await upsert(self.conn, t.erased_refs, [{"kind": k, "ref": r, "erased_at": cmd.occurred_at}
                                                    for k, r in sorted(set(refs))], ["kind", "ref"])
        for expert_id, cid in victims:
            await self.conn.execute(delete(t.notes).where(  # a note written after the erasure is kept
                n.version == self.version, n.expert_id == expert_id, n.customer_id == cid,
                n.created_at <= cmd.occurred_at))
            await self.conn.execute(delete(t.payments).where(
                p.version == self.version, p.expert_id == expert_id, p.customer_id == cid))
            self.touched.discard((expert_id, cid))
        for table in (t.customers, t.meetings, t.payments):
            await self.conn.execute(delete(table).where(
                table.c.version == self.version, table.c.email_hash == cmd.email_hash))
        self.meetings = {k: v for k, v in self.meetings.items() if v.customer_email is None
                         or email_hash(self.secret, v.customer_email) != cmd.email_hash}
