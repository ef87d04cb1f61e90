"""Customer summaries, updated from each change rather than recounted from history.

A batch knows, for every meeting and payment it changed, the row it started from and the row
it ends with. Counts and money are sums, so the old row's part is taken off its customer and
the new row's part added to its own. The name, email and phone come from the newest booking
(`created_version`), and `first_seen_at`, `last_appointment_at` and `next_appointment_at` are a
minimum or a maximum: adding never needs history, but taking off the very row an extreme or the
name came from does. Those customers (and rows written before the summary kept its sources) are
recounted from their meetings and payments by `summary_of`, which the store feeds with history
for them alone.

Counts that depend on the time (upcoming, past, the last and next appointment, minutes) are as
of the version's sweep watermark `View.as_of`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Iterable

from projections import payments as money
from projections.meetings import Meeting
from projections.rules.model import Changes, Key, Summary, View, copied

ADDITIVE = ("appointments", "cancelled", "no_shows", "upcoming", "past", "session_minutes")
MONEY = ("spend", "revenue", "refunded")


def summary_of(meetings: Iterable[Meeting], payments: Iterable[dict], as_of: datetime,
               own: str | None = None) -> Summary | None:
    """One customer's summary from all of their meetings and payment states; None with no booking left.
    With `own` (a merged customer's id), the name, email and phone come from their own bookings."""
    booked = [m for m in meetings if m.is_booked]
    if not booked:
        return None
    mine = [m for m in booked if m.customer_id == own] if own is not None else []
    by_age = sorted(mine or booked, key=lambda m: m.created_version or "", reverse=True)
    newest = by_age[0]
    with_phone = next((m for m in by_age if m.customer_phone), None)
    s = Summary(email=newest.customer_email, name=newest.customer_name or "",
                phone=with_phone.customer_phone if with_phone else None,
                first_seen_at=min(m.first_seen_at for m in booked),
                profile_version=newest.created_version,
                phone_version=with_phone.created_version if with_phone else None)
    for m in booked:
        _add_meeting(s, m, as_of)
    figures = money.summed(payments)
    for name in MONEY:
        setattr(s, name, dict(sorted(figures[name].items())))
    return s


def meeting_part(m: Meeting, as_of: datetime) -> dict[str, int]:
    """What one booked meeting adds to its customer's counts, as of `as_of`."""
    if m.cancelled_at is not None:
        return {"cancelled": 1}
    past = m.start_time <= as_of
    minutes = int((m.end_time - m.start_time).total_seconds() // 60) if (
        past and m.end_time <= as_of and m.no_show_at is None) else 0
    return {"appointments": 1, "no_shows": int(m.no_show_at is not None), "past": int(past),
            "upcoming": int(not past), "session_minutes": minutes}


def _add_meeting(s: Summary, m: Meeting, as_of: datetime) -> None:
    """`meeting_part` added to `s`, and the last and next appointment moved (written out: this is
    on the path of every booking)."""
    if m.cancelled_at is not None:
        s.cancelled += 1
        return
    start = m.start_time
    s.appointments += 1
    if s.first_appointment_at is None or start < s.first_appointment_at:
        s.first_appointment_at = start
    if m.no_show_at is not None:
        s.no_shows += 1
    if start <= as_of:
        s.past += 1
        end = m.end_time
        if end <= as_of and m.no_show_at is None:
            s.session_minutes += int((end - start).total_seconds() // 60)
        if s.last_appointment_at is None or start > s.last_appointment_at:
            s.last_appointment_at = start
    else:
        s.upcoming += 1
        if s.next_appointment_at is None or start < s.next_appointment_at:
            s.next_appointment_at = start


def _owner(view: View, m: Meeting | None) -> Key | None:
    """The customer a meeting counts for: its own, or the one it was merged into."""
    return view.owner((m.expert_id, m.customer_id)) if m is not None and m.is_booked and m.customer_id else None


def _take_meeting(s: Summary, old: Meeting, new: Meeting | None, as_of: datetime) -> bool:
    """Take `old` off; False when what remains cannot be known without history.

    `new` is the same meeting after the batch when it still counts for this customer.
    """
    for name, value in meeting_part(old, as_of).items():
        setattr(s, name, getattr(s, name) - value)
    if old.cancelled_at is None:
        start = old.start_time
        kept = new is not None and new.cancelled_at is None
        if start <= as_of and s.last_appointment_at == start:
            if not (kept and new.start_time <= as_of and new.start_time >= start):
                return False
        if start > as_of and s.next_appointment_at == start:
            if not (kept and new.start_time > as_of and new.start_time <= start):
                return False
        if s.first_appointment_at == start and not (kept and new.start_time <= start):
            return False
    if new is None:  # the meeting leaves this customer: the minimum and the sources may go with it
        if old.first_seen_at == s.first_seen_at or old.created_version in (s.profile_version, s.phone_version):
            return False
    elif old.customer_phone and old.created_version == s.phone_version and not new.customer_phone:
        return False
    return True


def _give_meeting(s: Summary, m: Meeting, as_of: datetime, own: bool = True) -> None:
    """`m` added to its customer; the name, email and phone only from the customer's own bookings
    (not from those of a customer merged into them)."""
    _add_meeting(s, m, as_of)
    s.first_seen_at = min(s.first_seen_at, m.first_seen_at)
    if not own:
        return
    if s.profile_version is None or (m.created_version or "") >= s.profile_version:
        s.email, s.name, s.profile_version = m.customer_email, m.customer_name or "", m.created_version
    if m.customer_phone and (s.phone_version is None or (m.created_version or "") >= s.phone_version):
        s.phone, s.phone_version = m.customer_phone, m.created_version


def _new_summary(m: Meeting) -> Summary:
    return Summary(email=m.customer_email, name=m.customer_name or "", phone=None, first_seen_at=m.first_seen_at)


def _money(s: Summary, state: dict, sign: int) -> None:
    figures = money.summed([state])
    for name in MONEY:
        current = dict(getattr(s, name))
        for currency, value in figures[name].items():
            current[currency] = current.get(currency, 0) + sign * value
        setattr(s, name, dict(sorted(current.items())))


def _settled_money(s: Summary) -> bool:
    """A currency whose three figures came back to 0 may or may not still have a payment: recount."""
    return not any(all(getattr(s, name).get(c, 0) == 0 for name in MONEY)
                   for c in set().union(*(getattr(s, name) for name in MONEY)))


def update_summaries(view: View, changes: Changes) -> None:
    """Fold the batch's meeting and payment changes into the summaries they belong to.

    Expects `view.summaries` to hold the stored row of every customer `touched_by(changes)` names.
    """
    as_of = view.as_of
    work: dict[Key, Summary | None] = {}
    recount = changes.recount

    def summary(key: Key) -> Summary | None:
        if key not in work:
            stored = view.summaries.get(key)
            if stored is not None and stored.profile_version is None:
                recount.add(key)  # written before rows kept their sources
            work[key] = copied(stored) if stored is not None else None
        return work[key]

    for key in sorted(changes.meetings_before):
        old, new = changes.meetings_before[key], view.meetings.get(key)
        before, after = _owner(view, old), _owner(view, new)
        if before and before not in recount:
            s = summary(before)
            if s is None or not _take_meeting(s, old, new if after == before else None, as_of):
                recount.add(before)
        if after and after not in recount:
            s = summary(after)
            own = new.customer_id == after[1]
            if s is None and not own:  # a merged customer's survivor without a row: from history
                recount.add(after)
                continue
            if s is None:
                s = work[after] = _new_summary(new)
            _give_meeting(s, new, as_of, own)
    for pid in sorted(changes.payments_before):
        old, new = changes.payments_before[pid], view.payments.get(pid)
        for p, sign in ((old, -1), (new, 1)):
            key = view.owner(p.owner) if p is not None else None
            if key and key not in recount:
                s = summary(key)
                if s is None:
                    recount.add(key)
                else:
                    _money(s, p.state, sign)
    for key, s in work.items():
        if key in recount or key in changes.summaries_removed:
            continue
        if s is None:
            continue
        if not _settled_money(s):
            recount.add(key)
        elif s.booked <= 0:
            view.summaries.pop(key, None)
            changes.summaries_removed.add(key)
        else:
            view.summaries[key] = s
            changes.summaries.add(key)


def touched_by(view: View, changes: Changes) -> set[Key]:
    """The customers whose stored summaries the batch's changes need."""
    keys = {_owner(view, m) for m in changes.meetings_before.values()}
    keys |= {view.owner(p.owner) for p in changes.payments_before.values() if p is not None}
    return {k for k in keys if k}


def touched_after(view: View, changes: Changes) -> set[Key]:
    keys = {_owner(view, view.meetings.get(k)) for k in changes.meetings_before}
    keys |= {view.owner(view.payments[pid].owner) for pid in changes.payments_before if pid in view.payments}
    return {k for k in keys if k}


def recounted(view: View, changes: Changes, key: Key, meetings: list[Meeting], states: list[dict],
              as_of: datetime | None = None) -> None:
    """Settle one customer from their whole history (`summary_of`)."""
    s = summary_of(meetings, states, as_of or view.as_of, own=key[1])
    if s is None:
        view.summaries.pop(key, None)
        changes.summaries.discard(key)
        changes.summaries_removed.add(key)
    else:
        view.summaries[key] = s
        changes.summaries_removed.discard(key)
        changes.summaries.add(key)
