"""Tying payments to meetings, in the contract's order of evidence.

A mixin of the projector's unit of work (`projections.projector._Work`); it reads through that
batch's connection and marks what it changes dirty, never commits.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select

from projections import tables as t
from projections.meetings import Meeting, meeting_from_row


class Linking:
    async def _link(self) -> None:
        """Tie payments to meetings, in the contract's order of evidence; recompute both ends."""
        await self._link_payments_to_meetings()
        await self._link_meetings_to_payments()

    async def _link_payments_to_meetings(self) -> None:
        for pid in list(self.dirty_payments):
            row = self.payments.get(pid)
            if row is None:
                continue
            meeting = await self._meeting_for(row)
            self._attach(row, meeting)

    async def _meeting_for(self, row: dict) -> Meeting | None:
        """The booked meeting a payment belongs to, trying each kind of evidence in order.

        Evidence that names several meetings (the same customer booked twice at the same start)
        gives way to the next kind; if none is sure, the lowest meeting id wins, so the answer
        never depends on arrival order.
        """
        m = t.meetings.c
        fallback: Meeting | None = None
        for in_memory, in_sql in _evidence(row["state"]):
            found = {k: mt for k, mt in self.meetings.items() if mt.is_booked and in_memory(mt)}
            rows = await self.conn.execute(
                select(t.meetings).where(m.version == self.version, m.created_version.is_not(None), in_sql).limit(20))
            for r in rows:
                found.setdefault((r.expert_id, r.meeting_id), meeting_from_row(r))
            found = {k: mt for k, mt in found.items() if mt.is_booked and in_memory(self.meetings.get(k, mt))}
            if not found:
                continue
            first = self.meetings.setdefault(*min(found.items()))
            if len(found) == 1:
                return first
            fallback = fallback or first
        return fallback

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

    async def _link_meetings_to_payments(self) -> None:
        p = t.payments.c
        for key in list(self.dirty_meetings):
            meeting = self.meetings[key]
            if not meeting.is_booked:
                continue
            conds = [and_(p.expert_id == meeting.expert_id, p.meeting_id == meeting.meeting_id),
                     and_(p.hint_expert == meeting.expert_id, p.hint_meeting == meeting.meeting_id)]
            if meeting.payment_intent_id:
                conds.append(p.payment_id == meeting.payment_intent_id)
            if meeting.checkout_session_id:
                conds.append(p.checkout_session_id == meeting.checkout_session_id)
            if meeting.booked_start and meeting.customer_email:
                conds.append(and_(p.hint_expert == meeting.expert_id, p.hint_email == meeting.customer_email,
                                  p.hint_start == meeting.booked_start))
            rows = await self.conn.execute(select(t.payments).where(p.version == self.version, or_(*conds)))
            for r in rows:
                if r.payment_id in self.merged_away:  # still in the table until this batch writes
                    continue
                row = self.payments.setdefault(r.payment_id, dict(r._mapping))
                self._attach(row, await self._meeting_for(row))


def _evidence(state: dict) -> list[tuple[Any, Any]]:
    """(test on a meeting in memory, the same test in SQL), in the contract's order."""
    m = t.meetings.c
    found = []
    expert, meeting_id, email = state.get("expert_id"), state.get("meeting_id"), state.get("customer_email")
    if expert and meeting_id:
        found.append((lambda mt: mt.expert_id == expert and mt.meeting_id == meeting_id,
                      and_(m.expert_id == expert, m.meeting_id == meeting_id)))
    if expert and email and state.get("booked_start"):
        start = datetime.fromisoformat(state["booked_start"])
        found.append((lambda mt: mt.expert_id == expert and mt.customer_email == email and mt.booked_start == start,
                      and_(m.expert_id == expert, m.customer_email == email, m.booked_start == start)))
    if pi := state.get("payment_intent_id"):
        found.append((lambda mt: mt.payment_intent_id == pi, m.payment_intent_id == pi))
    if cs := state.get("checkout_session_id"):
        found.append((lambda mt: mt.checkout_session_id == cs, m.checkout_session_id == cs))
    return found
