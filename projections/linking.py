"""Tying payments to meetings, in the contract's order of evidence.

A mixin of the projector's unit of work (`projections.projector._Work`); it reads through that
batch's connection and marks what it changes dirty, never commits.

It works on the whole batch at once: one query finds the payments that the batch's meetings may
own, one query loads every meeting any candidate payment may belong to, and the matching itself
runs in memory over indexes of those meetings.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable

from sqlalchemy import select

from projections import tables as t
from projections.db import in_tuples
from projections.meetings import Meeting, meeting_from_row

Key = tuple[str, str]


class Linking:
    async def _link(self) -> None:
        """Tie the batch's payments to meetings and the batch's meetings to payments."""
        await self._load_payments_of_meetings()
        rows = [self.payments[pid] for pid in sorted(self.link_candidates) if pid in self.payments]
        await self._load_meetings_for(rows)
        index = _Index(self.meetings.values())
        for row in rows:
            self._attach(row, index.meeting_for(row))

    async def _load_payments_of_meetings(self) -> None:
        """Payments the batch's (re)booked meetings may own, by every kind of evidence."""
        booked = [self.meetings[k] for k in self.dirty_meetings if self.meetings[k].is_booked]
        self.link_candidates = {pid for pid in self.dirty_payments if pid in self.payments}
        if not booked:
            return
        p = t.payments.c
        keys = [(m.expert_id, m.meeting_id) for m in booked]
        d = self.conn.dialect.name
        conds = [in_tuples(d, (p.expert_id, p.meeting_id), keys), in_tuples(d, (p.hint_expert, p.hint_meeting), keys)]
        if pis := [m.payment_intent_id for m in booked if m.payment_intent_id]:
            conds.append(p.payment_id.in_(pis))
        if css := [m.checkout_session_id for m in booked if m.checkout_session_id]:
            conds.append(p.checkout_session_id.in_(css))
        if triples := [(m.expert_id, m.customer_email, m.booked_start) for m in booked if m.customer_email]:
            conds.append(in_tuples(d, (p.hint_expert, p.hint_email, p.hint_start), triples))
        for cond in conds:  # one statement per kind of evidence, each served by its own index
            for r in await self.conn.execute(select(t.payments).where(p.version == self.version, cond)):
                if r.payment_id in self.merged_away:  # still in the table until this batch writes
                    continue
                if r.payment_id not in self.payments:
                    self._keep_payment(dict(r._mapping))
                self.link_candidates.add(r.payment_id)

    async def _load_meetings_for(self, rows: list[dict]) -> None:
        """Every booked meeting any of these payments may belong to, into the batch's view."""
        m = t.meetings.c
        keys, pis, css, triples = set(), set(), set(), set()
        for r in rows:
            if r.get("hint_expert") and r.get("hint_meeting"):
                keys.add((r["hint_expert"], r["hint_meeting"]))
            if r.get("hint_expert") and r.get("hint_email") and r.get("hint_start"):
                triples.add((r["hint_expert"], r["hint_email"], r["hint_start"]))
            if r.get("payment_intent_id"):
                pis.add(r["payment_intent_id"])
            if r.get("checkout_session_id"):
                css.add(r["checkout_session_id"])
        conds = []
        if keys:
            conds.append(in_tuples(self.conn.dialect.name, (m.expert_id, m.meeting_id), sorted(keys)))
        if triples:
            conds.append(in_tuples(self.conn.dialect.name, (m.expert_id, m.customer_email, m.booked_start), sorted(triples)))
        if pis:
            conds.append(m.payment_intent_id.in_(sorted(pis)))
        if css:
            conds.append(m.checkout_session_id.in_(sorted(css)))
        for cond in conds:  # one statement per kind of evidence, each served by its own index
            rows = await self.conn.execute(select(t.meetings).where(
                m.version == self.version, m.created_version.is_not(None), cond))
            for r in rows:  # the batch's own view of a meeting wins over the table's
                self.meetings.setdefault((r.expert_id, r.meeting_id), meeting_from_row(r))

    def _attach(self, row: dict, meeting: Meeting | None) -> None:
        before = (row.get("expert_id"), row.get("meeting_id"), row.get("customer_id"))
        after = (meeting.expert_id, meeting.meeting_id, meeting.customer_id) if meeting else (None, None, None)
        if before[2]:
            self.touched.add((before[0], before[2]))
        if after[2]:
            self.touched.add((after[0], after[2]))
        if before != after:
            row["expert_id"], row["meeting_id"], row["customer_id"] = after
            self.dirty_payments.add(row["payment_id"])


class _Index:
    """Booked meetings by each kind of evidence a payment can carry."""

    def __init__(self, meetings: Iterable[Meeting]) -> None:
        self.by_key: dict[Key, Meeting] = {}
        self.by_booking: dict[tuple, list[Meeting]] = defaultdict(list)
        self.by_pi: dict[str, list[Meeting]] = defaultdict(list)
        self.by_cs: dict[str, list[Meeting]] = defaultdict(list)
        for m in meetings:
            if not m.is_booked:
                continue
            self.by_key[(m.expert_id, m.meeting_id)] = m
            self.by_booking[(m.expert_id, m.customer_email, m.booked_start)].append(m)
            if m.payment_intent_id:
                self.by_pi[m.payment_intent_id].append(m)
            if m.checkout_session_id:
                self.by_cs[m.checkout_session_id].append(m)

    def meeting_for(self, row: dict) -> Meeting | None:
        """The contract's order: flat metadata, the checkout's `meeting` JSON, the booking's ids.

        Evidence that names several meetings (the same customer booked twice at the same start)
        gives way to the next kind; if none is sure, the lowest meeting id wins, so the answer
        never depends on arrival order.
        """
        fallback = None
        for found in self._evidence(row):
            if not found:
                continue
            first = min(found, key=lambda m: (m.expert_id, m.meeting_id))
            if len(found) == 1:
                return first
            fallback = fallback or first
        return fallback

    def _evidence(self, row: dict) -> Iterable[list[Meeting]]:
        """The payment row's hint columns, each kind of evidence in the contract's order."""
        expert, meeting_id, email = row.get("hint_expert"), row.get("hint_meeting"), row.get("hint_email")
        if expert and meeting_id:
            found = self.by_key.get((expert, meeting_id))
            yield [found] if found else []
        if expert and email and row.get("hint_start"):
            yield self.by_booking.get((expert, email, row["hint_start"]), [])
        if row.get("payment_intent_id"):
            yield self.by_pi.get(row["payment_intent_id"], [])
        if row.get("checkout_session_id"):
            yield self.by_cs.get(row["checkout_session_id"], [])
