"""Tying payments to meetings, in the contract's order of evidence.

The store loads, for a batch, the payments its booked meetings may own and the meetings its
payments may belong to; this rule matches them in memory over indexes of those meetings.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from typing import Iterable

from projections.meetings import Meeting
from projections.rules.model import Changes, Key, Payment, View


def link(view: View, changes: Changes, candidates: Iterable[str]) -> None:
    """Tie each candidate payment to the meeting its evidence names (or to none)."""
    index = Index(view.meetings.values())
    for pid in sorted(set(candidates)):
        p = view.payments.get(pid)
        if p is not None:
            attach(view, changes, p, index.meeting_for(p))


def attach(view: View, changes: Changes, p: Payment, meeting: Meeting | None) -> None:
    after = (meeting.expert_id, meeting.meeting_id, meeting.customer_id) if meeting else (None, None, None)
    if (p.expert_id, p.meeting_id, p.customer_id) == after:
        return
    changes.payments_before.setdefault(p.payment_id, p)
    view.payments[p.payment_id] = replace(p, expert_id=after[0], meeting_id=after[1], customer_id=after[2])
    changes.payments.add(p.payment_id)


def booked_changed(view: View, changes: Changes) -> list[Meeting]:
    """The batch's (re)booked meetings: the payments they may own are linking candidates."""
    return [view.meetings[k] for k in sorted(changes.meetings) if k in view.meetings and view.meetings[k].is_booked]


class Index:
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

    def meeting_for(self, p: Payment) -> Meeting | None:
        """The contract's order: flat metadata, the checkout's `meeting` JSON, the booking's ids.

        Evidence that names several meetings (the same customer booked twice at the same start)
        gives way to the next kind; if none is sure, the lowest meeting id wins, so the answer
        never depends on arrival order.
        """
        fallback = None
        for found in self._evidence(p):
            if not found:
                continue
            first = min(found, key=lambda m: (m.expert_id, m.meeting_id))
            if len(found) == 1:
                return first
            fallback = fallback or first
        return fallback

    def _evidence(self, p: Payment) -> Iterable[list[Meeting]]:
        if p.hint_expert and p.hint_meeting:
            found = self.by_key.get((p.hint_expert, p.hint_meeting))
            yield [found] if found else []
        if p.hint_expert and p.hint_email and p.hint_start:
            yield self.by_booking.get((p.hint_expert, p.hint_email, p.hint_start), [])
        if p.payment_intent_id:
            yield self.by_pi.get(p.payment_intent_id, [])
        if p.checkout_session_id:
            yield self.by_cs.get(p.checkout_session_id, [])
