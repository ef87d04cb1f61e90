"""Insights: what one customer adds to their expert's monthly figures. Pure: no SQL, no clock.

A customer's contribution is a map `(month, metric, dim) -> value` computed from their
appointments and payments as of the version's sweep watermark. The expert's monthly figures are
the sums of their customers' contributions; the store keeps each customer's last contribution
and adds the difference when it changes (`delta`), so a batch or a sweep touches only the rows of
the customers it changed, and a replay, which folds the same histories, gives the same sums.

Months are calendar months in UTC (`YYYY-MM`). An appointment counts in the month of its start
(its current start: a reschedule across a month boundary moves it). The metrics:

* `booked`: appointments; `cancelled`, `no_show`; `completed`: neither, ended by the watermark
  (so as time passes, the sweep moves appointments into `completed`, as for the list's counts).
* `new`: the customer's first visit (an appointment neither cancelled nor a no-show, upcoming
  ones included) is in this month; `returning`: the customer has a later visit in this month
  (once per month); `back90`: counted in the month of the first visit when the second came
  within 90 days; `gap` (dim: whole days): the time between one visit and the previous one,
  in the later one's month, for the median; `returned`: the customer came back after a lapse (a
  visit that has started, more than the lapse's days, `CUSTOMER_ACTIVE_DAYS`, after the one
  before it), once per month, in the month of that visit.
* money per currency (dim): `spend` (captured − refunded − lost disputes), `revenue` (spend −
  platform fee), `refunded`. Money taken counts in the month it was taken (`money_month`); a refund in the
  month it was created (what a charge's refunded total holds beyond its itemised refunds, in the
  month of that total); a lost dispute and the platform's fee in the payment's month (the event
  data carries no time of their own). Each payment's months sum to its figures in the summary.
* `svc_appts` (dim: service id): appointments not cancelled; `svc_spend` (dim: service id and
  currency, `\\x1f`-joined): spend of the payments tied to the service's appointments.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Iterable

from projections import payments as money
from projections.meetings import Meeting, appointment_status

Contribution = dict[tuple[str, str, str], int]
# One payment's money as a contribution takes it: (currency, ((month, spend, revenue, refunded), ...))
Money = tuple[str | None, tuple[tuple[str, int, int, int], ...]]
SEP = "\x1f"
BACK_WITHIN = timedelta(days=90)
PERIOD_METRICS = ("gap", "svc_appts", "svc_spend")  # read summed over a range of months, not per month


def month_of(when: datetime) -> str:
    return f"{when.year}-{when.month:02d}"  # as strftime("%Y-%m") writes it


def _month_iso(value: str | None, fallback: str) -> str:
    return value[:7] if value else fallback


def _add(out: Contribution, key: tuple[str, str, str], value: int) -> None:
    if value:
        out[key] = out.get(key, 0) + value


def money_month(state: dict) -> str:
    """The month the money was taken: when the intent was seen succeeded (the event's time), else
    the first event that named its booking (a checkout session), else when it was created."""
    status = (state.get("intent") or {}).get("status")
    if isinstance(status, list) and status and status[-1] == "succeeded" and status[0]:
        return status[0][:7]
    seen = [h[0] for h in (state.get("hints") or {}).values() if isinstance(h, list) and h and h[0]]
    if seen:  # the first event that tied it to its booking (a checkout session's completion)
        return min(seen)[:7]
    return _month_iso(state.get("created_at"), "0000-00")


def payment_months(state: dict) -> dict[str, dict[str, int]]:
    """One payment's money by month: {month: {"spend", "revenue", "refunded"}}; {} when it took none."""
    if not state.get("currency"):
        return {}
    taken, refunded, _spend, fee, lost = money.figures(state)
    if taken <= 0:
        return {}
    home = money_month(state)
    lost = min(lost, taken - refunded)  # the summary's spend never goes below zero
    back: dict[str, int] = {}
    left = refunded
    live = sorted((r.get("created_at") or "", rid, r["amount"]) for rid, r in (state.get("refunds") or {}).items()
                  if r.get("status") not in money.REFUND_VOID)
    for created, _rid, amount in live:
        part = min(amount, left)
        if part:
            back[_month_iso(created, home)] = back.get(_month_iso(created, home), 0) + part
        left -= part
    if left > 0:  # a charge's refunded total beyond its itemised refunds: in the month of that total
        snapshot = money._snapshot(state)
        month = _month_iso(snapshot[0] if snapshot else None, home)
        back[month] = back.get(month, 0) + left
    out: dict[str, dict[str, int]] = {}
    for month in {home} | set(back):
        gained = taken - lost if month == home else 0
        spend = gained - back.get(month, 0)
        out[month] = {"spend": spend, "revenue": spend - (fee if month == home else 0),
                      "refunded": back.get(month, 0)}
    return out


def money_of(state: dict) -> Money:
    """`payment_months` of one payment's joined Stripe objects, as `contribution` takes them. A
    payment's share changes only when its objects do, so a state held in memory keeps it beside
    them and a changed customer's figures never decode their unchanged payments again."""
    return state.get("currency"), tuple((month, row["spend"], row["revenue"], row["refunded"])
                                        for month, row in sorted(payment_months(state).items()))


def contribution(meetings: Iterable[Meeting], payments: Iterable[tuple[Money, str | None]],
                 as_of: datetime | None, lapse_days: int = 90) -> Contribution:
    """What one customer adds to their expert's monthly figures, as of `as_of` (the watermark);
    `payments` are (`money_of` its state, meeting id) of the payments that count for the customer."""
    out: Contribution = {}
    get = out.get
    booked = sorted((start, m.meeting_id, m) for m in meetings  # ids are unique within a customer's group
                    if m.created_version is not None and (start := m.start_time) is not None)
    services: dict[str, str] = {}
    visits: list[tuple[datetime, str]] = []  # (start, month) of the appointments neither cancelled nor missed
    for start, meeting_id, m in booked:
        month = month_of(start)
        key = (month, "booked", "")
        out[key] = get(key, 0) + 1
        status = appointment_status(m, as_of) if as_of is not None else "upcoming"
        if status in ("cancelled", "no_show", "completed"):
            key = (month, status, "")
            out[key] = get(key, 0) + 1
        if m.service_id:
            services[meeting_id] = m.service_id
            if status != "cancelled":
                key = (month, "svc_appts", m.service_id)
                out[key] = get(key, 0) + 1
        if m.cancelled_at is None and m.no_show_at is None:
            visits.append((start, month))
    if visits:
        first_start, first = visits[0]
        _add(out, (first, "new", ""), 1)
        for month in sorted({month for _start, month in visits[1:]}):
            _add(out, (month, "returning", ""), 1)
        lapse = timedelta(days=lapse_days)
        returned: set[str] = set()
        for (before, _month), (after, month) in zip(visits, visits[1:]):
            between = after - before
            _add(out, (month, "gap", str(between.days)), 1)
            if between > lapse and as_of is not None and after <= as_of:
                returned.add(month)
        if len(visits) > 1 and visits[1][0] - first_start <= BACK_WITHIN:
            _add(out, (first, "back90", ""), 1)
        for month in sorted(returned):
            _add(out, (month, "returned", ""), 1)
    for (currency, months), meeting_id in payments:
        service = services.get(meeting_id or "")
        for month, spend, revenue, refunded in months:
            _add(out, (month, "spend", currency), spend)
            _add(out, (month, "revenue", currency), revenue)
            _add(out, (month, "refunded", currency), refunded)
            if service:
                _add(out, (month, "svc_spend", f"{service}{SEP}{currency}"), spend)
    return out


def delta(old: Contribution, new: Contribution) -> Contribution:
    """What to add to the expert's figures when a customer's contribution goes from `old` to `new`."""
    out: Contribution = {}
    for key in set(old) | set(new):
        change = new.get(key, 0) - old.get(key, 0)
        if change:
            out[key] = change
    return out


def encode(c: Contribution) -> list[list]:
    """A contribution as stored (JSON): [[month, metric, dim, value], ...] in a stable order."""
    return [[m, k, d, v] for (m, k, d), v in sorted(c.items())]


def decode(rows: list | None) -> Contribution:
    return {(m, k, d): v for m, k, d, v in rows or ()}


def fold(keys: Iterable[tuple[str, str]], inputs: dict, stored: dict, as_of: datetime | None,
         lapse_days: int = 90):
    """For the customers `keys` (those `inputs` lacks are gone): their contributions that changed
    (encoded), the keys to forget, the differences by (expert, month, metric, dim), and service names by
    (expert, service id)."""
    rows, gone, deltas, labels = {}, set(), {}, {}
    for key in sorted(set(keys)):
        expert = key[0]
        old = decode(stored.get(key))
        if key in inputs and (inputs[key][0] or inputs[key][1]):
            meetings, payments = inputs[key]
            new = contribution(meetings, payments, as_of, lapse_days)
            newest: dict[str, tuple[str, str]] = {}  # service id -> (version, name) of its newest booking
            for m in meetings:
                if m.service_id and m.service_name:
                    version = m.created_version or ""
                    if m.service_id not in newest or version >= newest[m.service_id][0]:
                        newest[m.service_id] = (version, m.service_name)
            for service, (_version, name) in newest.items():
                labels[(expert, service)] = name
        else:
            new = {}
        if new:
            if (encoded := encode(new)) != stored.get(key):  # a customer's notes or contacts change no figure
                rows[key] = encoded
        elif key in stored:
            gone.add(key)
        for (month, metric, dim), change in (delta(old, new) if old else new).items():
            if change:
                k = (expert, month, metric, dim)
                deltas[k] = deltas.get(k, 0) + change
    return rows, gone, {k: v for k, v in deltas.items() if v}, labels
