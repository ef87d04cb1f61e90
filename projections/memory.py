"""The projection's state held in memory: the tables of one version's share, and a store over them.

`FoldState` keeps the rows a set of experts needs (meetings, payments and their aliases,
summaries, notes, profiles, communications, delivery reports, the insight contributions and
sums, the Stripe events applied, the erasure ledger), each table with the secondary indexes the
rules look rows up by. `MemoryStore` answers the same questions as the SQL store
(`projections.store.Store`): `projections.projector.run_batch` runs the very same rules over it,
so a fold and the live worker cannot disagree on what an event means.

Every change is logged while a batch runs (`begin`, `commit`, `rollback`), so a batch that fails
half-way leaves the state as it was, and its records can be applied one by one as the worker does.

Values the rules change in place (profiles, notes, communications, reports, payments) are handed
out as copies; a batch writes its copies back through `write`, as it would write rows.
"""

from __future__ import annotations

from copy import copy
from operator import attrgetter
from sys import intern

import msgspec
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Callable, Hashable, Iterable, Iterator

from sqlalchemy import String, Table

from customers.commands import canonical
from customers.ids import customer_id, email_hash
from projections import payments as money
from projections import tables as t
from projections.meetings import Meeting
from projections.rules.insights import Money, money_of
from projections.rules.model import PAYMENT_FIELDS, Changes, copied, Erasure, Key, Payment, Profile, View
from projections.rules.status import DEFAULT as DEFAULT_LIFECYCLE
from projections.rules.status import Lifecycle
from projections.store import (MEETING_COLUMNS, PAYMENT_COLUMNS, SUMMARY_COLUMNS, Wanted, communication_row,
                               meeting_values, merge_values, note_row, payment_values, profile_rows, summary_values,
                               wanted)

_MISSING = object()
_NONE = object()
_LIST_MAX = 16


class ValueTooLong(ValueError):
    """What the database would refuse: a value longer than its column."""


class MemTable:
    """Rows by primary key, with secondary indexes (name -> function of a row to a key or None).

    Indexes named in `lazy` are built on their first look-up and kept from then on: those by email
    hash serve erasures alone, and most histories fold without one.
    """

    __slots__ = ("rows", "_fns", "_waiting", "idx", "undo", "_pairs", "journal", "_shared")

    def __init__(self, lazy: Iterable[str] = (), shared_keys: bool = False,
                 **indexes: Callable[[Any], Hashable | None]) -> None:
        self.rows: dict[Hashable, Any] = {}
        self._shared = shared_keys  # keys are tuples of ids held once for every table (`sys.intern`)
        self._fns = {name: fn for name, fn in indexes.items() if name not in lazy}
        self._waiting = {name: fn for name, fn in indexes.items() if name in lazy}
        self.idx: dict[str, dict[Hashable, Any]] = {name: {} for name in self._fns}  # value -> key, or a set of keys
        self.undo: list | None = None
        self.journal: dict | None = None  # key -> the row before the first change since it was opened
        self._pairs = [(fn, self.idx[name]) for name, fn in self._fns.items()]

    def get(self, key: Hashable, default: Any = None) -> Any:
        return self.rows.get(key, default)

    def __contains__(self, key: Hashable) -> bool:
        return key in self.rows

    def __len__(self) -> int:
        return len(self.rows)

    def find(self, index: str, value: Hashable) -> set:
        if index in self._waiting:
            fn = self._fns[index] = self._waiting.pop(index)
            built: dict[Hashable, Any] = {}
            self.idx[index] = built
            self._pairs.append((fn, built))
            for key, row in self.rows.items():
                self._add(built, fn(row), key)
        found = self.idx[index].get(value, _NONE)
        kind = type(found)
        return set(found) if kind is list or kind is set else ({found} if found is not _NONE else set())

    @staticmethod
    def _add(index: dict, value: Hashable | None, key: Hashable) -> None:
        """An index entry holds its one key as it is, a list of its keys from the second on, and a
        set past `_LIST_MAX` (most values of these indexes name one row or a few: a set each would
        double the state's memory)."""
        if value is None:
            return
        found = index.get(value, _NONE)
        kind = type(found)
        if found is _NONE:
            index[value] = key
        elif kind is list:
            if key not in found:
                found.append(key)
                if len(found) > _LIST_MAX:
                    index[value] = set(found)
        elif kind is set:
            found.add(key)
        elif found != key:
            index[value] = [found, key]

    def put(self, key: Hashable, row: Any) -> None:
        old = self.rows.get(key, _MISSING)
        if old is _MISSING and self._shared:
            key = tuple(map(intern, key))
        if self.undo is not None:
            self.undo.append((key, old))
        if self.journal is not None and key not in self.journal:
            self.journal[key] = old
        if old is not _MISSING:
            self._unindex(key, old)
        self.rows[key] = row
        self._index(key, row)

    def delete(self, key: Hashable) -> None:
        old = self.rows.pop(key, _MISSING)
        if old is _MISSING:
            return
        if self.undo is not None:
            self.undo.append((key, old))
        if self.journal is not None and key not in self.journal:
            self.journal[key] = old
        self._unindex(key, old)

    def restore(self, journal: dict) -> None:
        """Every key of `journal` back to the row it had when the journal was opened."""
        for key, old in journal.items():
            self._put_back(key, old)

    def _put_back(self, key: Hashable, old: Any) -> None:
        current = self.rows.pop(key, _MISSING)
        if current is not _MISSING:
            self._unindex(key, current)
        if old is not _MISSING:
            self.rows[key] = old
            self._index(key, old)

    def drop(self, keys: Iterable[Hashable]) -> None:
        """Forget `keys` (an eviction: nothing is logged, the rows stay in the tables)."""
        for key in keys:
            old = self.rows.pop(key, _MISSING)
            if old is not _MISSING:
                self._unindex(key, old)

    def rollback(self) -> None:
        for key, old in reversed(self.undo or ()):
            self._put_back(key, old)
        self.undo = None

    def _index(self, key: Hashable, row: Any) -> None:
        add = self._add
        for fn, index in self._pairs:
            add(index, fn(row), key)

    def _unindex(self, key: Hashable, row: Any) -> None:
        for fn, index in self._pairs:
            value = fn(row)
            if value is None:
                continue
            found = index.get(value, _NONE)
            kind = type(found)
            if kind is list or kind is set:
                if key in found:
                    found.remove(key)
                if len(found) == 1:
                    index[value] = next(iter(found))
                elif not found:
                    del index[value]
            elif found is not _NONE and found == key:
                del index[value]


def _checker(table: Table) -> Callable[[Any], None]:
    """A check of an object's string attributes against the lengths of `table`'s columns."""
    limits = [(c.name, c.type.length) for c in table.c if isinstance(c.type, String) and c.type.length]

    def check(obj: Any) -> None:
        for name, length in limits:
            value = getattr(obj, name, None)
            if value is not None and len(value) > length:
                raise ValueTooLong(f"value too long for type character varying({length}) ({table.name}.{name})")
    return check


class FoldState:
    """The tables of one share of a version (the experts of some partitions), in memory."""

    def __init__(self, secret: str, erasures: dict[str, datetime] | None = None,
                 erased_refs: dict[tuple[str, str], datetime] | None = None) -> None:
        self.secret = secret
        h = self.hash_of
        self.meetings = MemTable(
            shared_keys=True,
            customer=lambda m: (m.expert_id, m.customer_id) if m.customer_id else None,
            pi=lambda m: m.payment_intent_id if m.created_version else None,
            cs=lambda m: m.checkout_session_id if m.created_version else None,
            email=lambda m: h(m.customer_email), lazy=("email",))
        self.payments = MemTable(
            customer=lambda p: (p.expert_id, p.customer_id) if p.expert_id and p.customer_id else None,
            meeting=lambda p: (p.expert_id, p.meeting_id) if p.expert_id and p.meeting_id else None,
            hint=lambda p: (p.hint_expert, p.hint_meeting) if p.hint_expert and p.hint_meeting else None,
            cs=lambda p: p.checkout_session_id,
            booked=lambda p: (p.hint_expert, p.hint_email, p.hint_start)
            if p.hint_expert and p.hint_email and p.hint_start else None,
            email=lambda p: h(p.hint_email), lazy=("email",))
        # alias -> payment id; its aliases by payment serve a merge of two payments and erasures alone
        self.aliases = MemTable(payment=lambda pid: pid, lazy=("payment",))
        self.summaries = MemTable(email=lambda s: h(s.email), lazy=("email",), shared_keys=True)
        self.notes = MemTable(customer=lambda n: (n.expert_id, n.customer_id))
        self.stripe_events = MemTable()  # event id -> (type, applied at)
        self.definitions = MemTable()  # expert -> (definitions, at)
        self.profiles = MemTable(email=lambda p: p.email_hash, lazy=("email",), shared_keys=True)
        self.communications = MemTable(provider=lambda c: c.provider_message_id, email=lambda c: c.email_hash,
                                       lazy=("email",))
        self.reports = MemTable()  # provider email id -> [[status, at], ...]
        # (expert, customer) -> [[month, metric, dim, value], ...], held as its JSON (`msgspec.Raw`): a
        # customer's contribution is read and replaced whole, and as JSON it takes a fifth of the memory
        self.contributions = MemTable(shared_keys=True)
        self.counts = MemTable()  # (expert, month, metric, dim) -> (value, label)
        # (expert, duplicate) -> `Merge`: whose figures a merged customer's rows count in
        self.merges = MemTable(survivor=lambda x: (x.expert_id, x.survivor_id), expert=lambda x: x.expert_id)
        self.erasures = MemTable()  # the ledger, shared by every version: hash -> erased at
        self.erased_refs = MemTable()  # (kind, ref) -> erased at
        self.erasures.rows.update(erasures or {})
        self.erased_refs.rows.update(erased_refs or {})
        self.new_erasures: set[str] = set()
        self.new_refs: set[tuple[str, str]] = set()

    def hash_of(self, email: str | None) -> str | None:
        return email_hash(self.secret, email) if email else None

    def tables(self) -> Iterator[MemTable]:
        return iter((self.meetings, self.payments, self.aliases, self.summaries, self.notes, self.stripe_events,
                     self.definitions, self.profiles, self.communications, self.reports, self.contributions,
                     self.counts, self.erasures, self.erased_refs, self.merges))

    def begin(self) -> None:
        for table in self.tables():
            table.undo = []
        self._ledger_marks = (set(self.new_erasures), set(self.new_refs))

    def commit(self) -> None:
        for table in self.tables():
            table.undo = None

    def rollback(self) -> None:
        for table in self.tables():
            table.rollback()
        self.new_erasures, self.new_refs = self._ledger_marks


# meetings and summaries are not checked: booking events are held to the columns' lengths when decoded
_CHECK_PAYMENT, _CHECK_NOTE = _checker(t.payments), _checker(t.notes)
_CHECK_PROFILE, _CHECK_COMMUNICATION = _checker(t.customer_profiles), _checker(t.communications)
_MAX_TAG, _MAX_FIELD_KEY, _MAX_FIELD_VALUE = (t.customer_tags.c.tag.type.length, t.customer_field_values.c.key.type.length,
                                              t.customer_field_values.c.value.type.length)
_MAX_ALIAS, _MAX_EVENT = t.payment_aliases.c.alias.type.length, t.stripe_events_applied.c.event_id.type.length
_MAX_EMAIL_ID = t.email_reports.c.email_id.type.length


_to_json, _from_json = msgspec.json.Encoder().encode, msgspec.json.decode


def as_json(value: Any) -> msgspec.Raw:
    """A JSON value held encoded (written as it is by the COPY and the updates' encoder)."""
    return msgspec.Raw(_to_json(value))


# --- rows as the state holds them: the same values, in less memory -----------------------------

class HeldPayment(Payment):
    """A payment as the state holds it, with its share of the monthly figures beside its objects
    (`insights.money_of`): it changes only when they do, so the figures of a changed customer
    never decode their other payments again. A copy (the rules' own) does not carry it."""

    __slots__ = ("money",)


_PAYMENT_VALUES = attrgetter(*PAYMENT_FIELDS)


def packed(p: Payment) -> Payment:
    """A payment as the state holds it: its joined Stripe objects kept as their JSON (a sixth of
    the memory of the decoded dicts), its ids shared with the meetings' (`compact`), its money by
    month worked out once."""
    if type(p.state) is not msgspec.Raw:
        state = p.state or {}
        held = HeldPayment(*_PAYMENT_VALUES(p))
        held.state = as_json(state)
        currency, months = money_of(state)
        held.money = (currency, tuple((intern(m), *figures) for m, *figures in months))  # () without money
        p = held
    return compact(p, _PAYMENT_SHARED)


def money_held(p: Payment) -> Money:
    """A held payment's `insights.money_of`: kept beside it, or worked out for a copy."""
    found = getattr(p, "money", None)
    return found if found is not None else money_of(state_of(p))


def state_of(p: Payment) -> dict[str, Any]:
    """A held payment's joined Stripe objects, decoded."""
    state = p.state
    return _from_json(state) if type(state) is msgspec.Raw else (state or {})


def unpacked(p: Payment) -> Payment:
    """A held payment as the rules take it: a `Payment` of its own, its objects decoded, no money
    kept beside them (the rules may change them)."""
    out = Payment(*_PAYMENT_VALUES(p))
    out.state = state_of(p)
    return out


MEETING_SHARED = ("expert_id", "customer_id", "customer_email", "customer_name", "customer_phone", "service_id",
                   "service_name", "booked_timezone", "resched_timezone", "price_currency", "cancel_reason",
                   "cancelled_by", "created_version")
_PAYMENT_SHARED = ("expert_id", "meeting_id", "customer_id", "hint_expert", "hint_meeting", "hint_email")
SUMMARY_SHARED = ("email", "name", "phone", "profile_version", "phone_version")
_NO_MONEY: dict[str, int] = {}  # shared by every summary without money in a currency (never changed in place)


def compact(row: Any, names: tuple[str, ...]) -> Any:
    """`row` with the strings of `names` replaced, in place, by the one copy every row shares (an
    expert's id, a customer's email and name are in each of their meetings, payments and summary):
    equal values, so nothing that compares rows sees a difference."""
    for name in names:
        value = getattr(row, name)
        if value is not None and (shared := intern(value)) is not value:
            object.__setattr__(row, name, shared)
    return row


def compact_summary(s: Any) -> Any:
    """`compact` for a customer's summary, an empty money figure the one shared empty dict (the rules
    replace a summary's money, never change it in place)."""
    compact(s, SUMMARY_SHARED)
    for name in ("spend", "revenue", "refunded"):
        if not getattr(s, name):
            setattr(s, name, _NO_MONEY)
    return s


def compact_meeting(m: Meeting) -> Meeting:
    """`compact` for a meeting, its first sighting the same datetime as its booking when equal."""
    compact(m, MEETING_SHARED)
    if m.first_seen_at is not m.booked_at and m.first_seen_at == m.booked_at:
        object.__setattr__(m, "first_seen_at", m.booked_at)
    return m


def _too_long(value: str | None, length: int, where: str) -> None:
    if value is not None and len(value) > length:
        raise ValueTooLong(f"value too long for type character varying({length}) ({where})")


def _copy_profile(p: Profile) -> Profile:
    return replace(p, tags=list(p.tags), fields=dict(p.fields))


class MemoryStore:
    """`projections.store.Store`'s questions and writes, answered from a `FoldState`."""

    def __init__(self, state: FoldState, version: int, as_of: datetime, lifecycle: Lifecycle = DEFAULT_LIFECYCLE) -> None:
        self.state, self.version, self.secret, self.as_of = state, version, state.secret, as_of
        self.lifecycle = lifecycle

    # --- loads -------------------------------------------------------------------------------

    async def load(self, items: list[Any], now: datetime) -> View:
        s = self.state
        view = View(self.version, self.secret, self.as_of, now, lifecycle=self.lifecycle)
        w: Wanted = wanted(items, self.secret, ledger=bool(len(s.erasures) or len(s.erased_refs)))
        view.erased_emails = {h: s.erasures.rows[h] for h in w.email_hashes if h in s.erasures}
        view.erased_refs = {r: s.erased_refs.rows[r] for r in w.refs if r in s.erased_refs}
        view.stripe_seen = {e for e in w.events if e in s.stripe_events}
        await self.load_meetings(view, w.meetings)
        pids = {s.aliases.rows[a] for a in w.names if a in s.aliases} | {n for n in w.names if n in s.payments}
        for pid in sorted(pids):
            view.keep_payment(unpacked(s.payments.rows[pid]))
        for note_id in w.notes:
            if (note := s.notes.get(note_id)) is not None:
                view.notes[note_id] = copy(note)
        for h in sorted(w.erased):
            view.erasures[h] = self._erasure(h)
        await self.load_merges(view, w.experts | {k[0] for x in view.erasures.values() for k in x.customers})
        await self.load_summaries(view, w.summaries)
        gone = {view.owner(k) for x in view.erasures.values() for k in x.customers}  # a survivor loses what came from them
        await self.load_profiles(view, w.profiles | {view.owner(k) for k in w.profiles} | gone)
        for mid in w.messages | {i for p in w.provider_ids for i in s.communications.find("provider", p)}:
            if mid not in view.communications and (c := s.communications.get(mid)) is not None:
                view.communications[mid] = copy(c)
        for pid in w.provider_ids:
            if (reports := s.reports.get(pid)) is not None:
                view.reports.setdefault(pid, [list(x) for x in reports])
        return view

    async def load_merges(self, view: View, experts: Iterable[str]) -> None:
        merges = self.state.merges
        for expert in set(experts) - view.merges_of - {None}:
            view.merges_of.add(expert)
            for key in merges.find("expert", expert):
                view.merges[key] = copy(merges.rows[key])

    def _erasure(self, h: str) -> Erasure:
        s = self.state
        found = Erasure(h)
        found.meetings = sorted(s.meetings.find("email", h))
        # the customers of the person's meetings too: one merged into another has no row of its own
        found.customers = sorted(s.summaries.find("email", h) | {
            (k[0], s.meetings.rows[k].customer_id) for k in found.meetings if s.meetings.rows[k].customer_id})
        pids = set(s.payments.find("email", h))
        for owner in found.customers:
            pids |= s.payments.find("customer", owner)
        found.payments = {pid: {pid} | s.aliases.find("payment", pid)
                          | money.ids(state_of(s.payments.rows[pid]), pid) for pid in pids}
        found.profiles = sorted(s.profiles.find("email", h))
        found.communications = [copy(s.communications.rows[i]) for i in sorted(s.communications.find("email", h))]
        found.notes = [copy(s.notes.rows[i]) for owner in found.customers for i in sorted(s.notes.find("customer", owner))]
        return found

    async def load_profiles(self, view: View, keys: Iterable[Key]) -> None:
        for key in keys:
            if key not in view.profiles and (p := self.state.profiles.get(key)) is not None:
                view.profiles[key] = _copy_profile(p)

    async def load_meetings(self, view: View, keys: Iterable[Key]) -> None:
        for key in keys:
            if key not in view.meetings and (m := self.state.meetings.get(key)) is not None:
                view.meetings[key] = m

    async def load_for_linking(self, view: View, changes: Changes, booked: list[Meeting]) -> set[str]:
        candidates = {pid for pid in changes.payments if pid in view.payments}
        s = self.state
        found: set[str] = set()
        for m in booked:
            key = (m.expert_id, m.meeting_id)
            found |= s.payments.find("meeting", key) | s.payments.find("hint", key)
            if m.payment_intent_id and m.payment_intent_id in s.payments:
                found.add(m.payment_intent_id)
            if m.checkout_session_id:
                found |= s.payments.find("cs", m.checkout_session_id)
            if m.customer_email:
                found |= s.payments.find("booked", (m.expert_id, m.customer_email, m.booked_start))
        for pid in sorted(found):
            if pid in changes.payments_removed:
                continue
            if pid not in view.payments:
                view.keep_payment(unpacked(s.payments.rows[pid]))
            candidates.add(pid)
        self._meetings_for([view.payments[pid] for pid in candidates], view)
        return candidates

    def _meetings_for(self, rows: list[Payment], view: View) -> None:
        meetings = self.state.meetings
        keys: set[Key] = set()
        for r in rows:
            if r.hint_expert and r.hint_meeting:
                key = (r.hint_expert, r.hint_meeting)
                if (m := meetings.get(key)) is not None and m.created_version:
                    keys.add(key)
            if r.hint_expert and r.hint_email and r.hint_start:
                keys |= self._booked(r.hint_expert, r.hint_email, r.hint_start)
            if r.payment_intent_id:
                keys |= meetings.find("pi", r.payment_intent_id)
            if r.checkout_session_id:
                keys |= meetings.find("cs", r.checkout_session_id)
        for key in keys:
            if key not in view.meetings:
                view.meetings[key] = meetings.rows[key]

    def _booked(self, expert: str, email: str, start: datetime) -> set[Key]:
        """The booked meetings of `expert` with `email` starting at `start`: among the meetings of
        the customer that email is (an index of their own would cost a fifth of the meetings'
        memory)."""
        meetings = self.state.meetings
        customer = (expert, customer_id(self.secret, expert, email))
        return {k for k in meetings.find("customer", customer)
                if (m := meetings.rows[k]).created_version and m.booked_start == start and m.customer_email == email}

    async def load_summaries(self, view: View, keys: Iterable[Key]) -> None:
        for key in keys:
            if key not in view.summaries and (s := self.state.summaries.get(key)) is not None:
                view.summaries[key] = copied(s)

    def _histories(self, keys: Iterable[Key], payment: Callable[[Payment], Any]) -> dict[Key, tuple[list[Meeting], list]]:
        """Each customer's meetings and `payment` of each of their payments, and those of the
        customers merged into them; none for a customer merged into another (counted there)."""
        s = self.state
        merges = s.merges
        out = {}
        for k in set(keys):
            group = [] if k in merges else [k] + sorted(merges.find("survivor", k) if len(merges) else ())
            out[k] = ([s.meetings.rows[m] for g in group for m in s.meetings.find("customer", g)],
                      [payment(s.payments.rows[p]) for g in group for p in s.payments.find("customer", g)])
        return out

    async def history(self, keys: Iterable[Key]) -> dict[Key, tuple[list[Meeting], list[dict]]]:
        return self._histories(keys, state_of)

    async def insight_inputs(self, keys: Iterable[Key]) -> dict[Key, tuple[list[Meeting], list[tuple[Money, str | None]]]]:
        return self._histories(keys, lambda p: (money_held(p), p.meeting_id))

    async def contributions(self, keys: Iterable[Key]) -> dict[Key, list]:
        rows = self.state.contributions.rows
        return {k: _from_json(rows[k]) for k in set(keys) if k in rows}

    # --- writes ------------------------------------------------------------------------------

    async def write(self, view: View, changes: Changes) -> None:
        s = self.state
        for key in changes.meetings_removed:
            s.meetings.delete(key)
        for pid in changes.payments_removed:
            s.payments.delete(pid)
        for pid in changes.aliases_removed:
            for alias in list(s.aliases.find("payment", pid)):
                s.aliases.delete(alias)
        for note_id in changes.notes_removed:
            s.notes.delete(note_id)
        for key in changes.meetings:  # booking events are held to the columns' lengths when decoded
            if (m := view.meetings.get(key)) is not None:
                s.meetings.put(key, compact_meeting(m))
        for pid in sorted(changes.payments):
            if (p := view.payments.get(pid)) is None:
                continue
            _CHECK_PAYMENT(p)
            s.payments.put(pid, packed(p))
            for alias in money.ids(p.state, pid):
                _too_long(alias, _MAX_ALIAS, "payment_aliases.alias")
                s.aliases.put(alias, pid)
        for note_id in changes.notes:
            if (n := view.notes.get(note_id)) is not None:
                _CHECK_NOTE(n)
                s.notes.put(note_id, n)
        self._write_profiles(view, changes)
        for key in changes.merges_removed:
            s.merges.delete(key)
        for key in changes.merges:
            if (m := view.merges.get(key)) is not None:
                s.merges.put(key, copy(m))
        for event_id, kind in changes.stripe_events.items():
            _too_long(event_id, _MAX_EVENT, "stripe_events_applied.event_id")
            if event_id not in s.stripe_events:
                s.stripe_events.put(event_id, (kind, view.now))
        for h, at in changes.erasures.items():
            s.erasures.put(h, at)
            s.new_erasures.add(h)
        for ref, at in changes.erased_refs.items():
            s.erased_refs.put(ref, at)
            s.new_refs.add(ref)

    def _write_profiles(self, view: View, changes: Changes) -> None:
        s = self.state
        for expert in changes.definitions:
            s.definitions.put(expert, (view.definitions[expert], view.definitions_at[expert]))
        for i in changes.communications_removed:
            s.communications.delete(i)
        for i in changes.reports_removed:
            s.reports.delete(i)
        for i in changes.communications:
            if (c := view.communications.get(i)) is not None:
                _CHECK_COMMUNICATION(c)
                s.communications.put(i, c)
        for i in changes.reports:
            if i in view.reports:
                _too_long(i, _MAX_EMAIL_ID, "email_reports.email_id")
                s.reports.put(i, view.reports[i])
        for key in changes.profiles_removed:
            s.profiles.delete(key)
        for key in changes.profiles:
            if (p := view.profiles.get(key)) is not None:
                _CHECK_PROFILE(p)
                for tag in p.tags:
                    _too_long(tag, _MAX_TAG, "customer_tags.tag")
                for name, value in p.fields.items():
                    _too_long(name, _MAX_FIELD_KEY, "customer_field_values.key")
                    _too_long(canonical(value), _MAX_FIELD_VALUE, "customer_field_values.value")
                s.profiles.put(key, p)

    async def write_summaries(self, view: View, changes: Changes) -> None:
        s = self.state
        for key in changes.summaries_removed:
            s.summaries.delete(key)
        for key in changes.summaries:  # from the meetings: checked at the door
            if (summary := view.summaries.get(key)) is not None:
                s.summaries.put(key, compact_summary(summary))

    async def write_insights(self, contributions: dict[Key, list], gone: set[Key],
                             deltas: dict[tuple[str, str, str, str], int], labels: dict[tuple[str, str], str]) -> None:
        s = self.state
        for key in gone:
            s.contributions.delete(key)
        for key, rows in contributions.items():
            s.contributions.put(key, as_json(rows))
        counts = s.counts
        for (e, m, k, d), value in deltas.items():
            old = counts.get((e, m, k, d))
            label = labels.get((e, d)) if k == "svc_appts" else None
            if old is None:
                counts.put((e, m, k, d), (value, label))
            else:
                counts.put((e, m, k, d), (old[0] + value, label if label is not None else old[1]))



# --- the state as rows: all of it (a replay's COPY), or what a journal says changed (the worker, a catch-up) ---

_PROFILE_TABLES = (t.customer_profiles, t.customer_tags, t.customer_field_values)


def _columns(table: Table) -> tuple[str, ...]:
    return tuple(c.name for c in table.c)


_NOTE_COLUMNS, _COMMUNICATION_COLUMNS = _columns(t.notes), _columns(t.communications)
_PROFILE_COLUMNS = [(table, _columns(table)) for table in _PROFILE_TABLES]


def _profile_tuples(version: int, _secret: str, _key: Key, p: Profile) -> Iterator[tuple[Table, tuple]]:
    row, tags, values = profile_rows(p, version)
    for (table, columns), rows in zip(_PROFILE_COLUMNS, ([row], tags, values)):
        for r in rows:
            yield table, tuple(r[c] for c in columns)


@dataclass(frozen=True)
class Sink:
    """How one in-memory table is stored: the SQL tables its values become, the columns its keys
    stand for (after `version`, in each of those tables), and a value's row (`one`: a single
    table's tuple, None for no row) or rows (`rows`: (table, tuple) pairs, several tables)."""

    name: str  # the `FoldState` attribute
    tables: tuple[Table, ...]
    keys: tuple[str, ...]
    one: Callable[[int, str, Any, Any], tuple | None] | None = None
    rows: Callable[[int, str, Any, Any], Iterable[tuple[Table, tuple]]] | None = None

    @property
    def columns(self) -> tuple[str, ...]:
        return {t.meetings: MEETING_COLUMNS, t.payments: PAYMENT_COLUMNS,
                t.customers: SUMMARY_COLUMNS}.get(self.tables[0]) or _columns(self.tables[0])

    def key_values(self, key: Any) -> tuple:
        return key if isinstance(key, tuple) else (key,)


SINKS = (
    Sink("meetings", (t.meetings,), ("expert_id", "meeting_id"), one=lambda v, s, _k, m: meeting_values(m, v, s)),
    Sink("payments", (t.payments,), ("payment_id",), one=lambda v, s, _k, p: payment_values(p, v, s)),
    Sink("aliases", (t.payment_aliases,), ("alias",), one=lambda v, _s, a, pid: (v, a, pid)),
    Sink("summaries", (t.customers,), ("expert_id", "customer_id"), one=lambda v, s, k, x: summary_values(k, x, v, s)),
    Sink("stripe_events", (t.stripe_events_applied,), ("event_id",),
         one=lambda v, _s, e, x: (v, e, x[0], x[1])),
    Sink("definitions", (t.field_definitions,), ("expert_id",), one=lambda v, _s, e, x: (v, e, x[0], x[1])),
    Sink("notes", (t.notes,), ("note_id",),
         one=lambda v, _s, _k, n: tuple(note_row(n, v)[c] for c in _NOTE_COLUMNS)),
    Sink("profiles", _PROFILE_TABLES, ("expert_id", "customer_id"), rows=_profile_tuples),
    Sink("communications", (t.communications,), ("communication_id",),
         one=lambda v, _s, _k, c: tuple(communication_row(c, v)[n] for n in _COMMUNICATION_COLUMNS)),
    Sink("reports", (t.email_reports,), ("email_id",), one=lambda v, _s, i, r: (v, i, r)),
    Sink("contributions", (t.customer_insights,), ("expert_id", "customer_id"),
         one=lambda v, _s, k, rows: (v, k[0], k[1], rows)),
    # an insight sum that came back to 0 has no row (readers skip it)
    Sink("merges", (t.customer_merges,), ("expert_id", "customer_id"), one=lambda v, _s, _k, m: merge_values(m, v)),
    Sink("counts", (t.insight_counts,), ("expert_id", "month", "metric", "dim"),
         one=lambda v, _s, k, x: (v, *k, x[0], x[1]) if x[0] else None),
)


class Rows:
    """A sink's rows of `items`, made each time they are read (by the writer, when it writes): a
    write tried again after an outage or a deadlock sends them all again. (A generator, read once,
    gave the second attempt nothing: rows lost while the offsets moved on.)"""

    __slots__ = ("one", "version", "secret", "items")

    def __init__(self, one: Callable, version: int, secret: str, items: Iterable[tuple[Any, Any]]) -> None:
        self.one, self.version, self.secret, self.items = one, version, secret, items

    def __iter__(self) -> Iterator[tuple]:
        one, version, secret = self.one, self.version, self.secret
        for k, x in self.items:
            if (row := one(version, secret, k, x)) is not None:
                yield row


def _rows_of(sink: Sink, version: int, secret: str, items: Iterable[tuple[Any, Any]]) -> Iterator[tuple[Table, tuple[str, ...], Iterable[tuple]]]:
    if sink.one is not None:
        yield sink.tables[0], sink.columns, Rows(sink.one, version, secret, items)  # a list or a dict's view
        return
    by_table: dict[Table, list[tuple]] = {table: [] for table in sink.tables}
    for k, x in items:
        for table, row in sink.rows(version, secret, k, x):
            by_table[table].append(row)
    for table, rows in by_table.items():
        yield table, _columns(table), rows


def version_rows(state: FoldState, version: int) -> Iterator[tuple[Table, tuple[str, ...], Iterable[tuple]]]:
    """Every row of the state, table by table, as the SQL store would have written them: the
    table, its columns, and the rows as tuples in that order (JSON columns as Python values)."""
    for sink in SINKS:
        yield from _rows_of(sink, version, state.secret, getattr(state, sink.name).rows.items())


@dataclass
class Changed:
    """What one table's rows became over a journal (`changed_in`): the keys removed, the keys
    whose row was replaced, and the rows to write for the keys added and for those replaced."""

    sink: Sink
    removed: list[tuple]  # as the tables' key columns
    gone: list[Any]  # the same keys, as the in-memory table's
    replaced: list[tuple]
    added_rows: list[tuple[Table, tuple[str, ...], Iterable[tuple]]]
    replaced_rows: list[tuple[Table, tuple[str, ...], Iterable[tuple]]]
    written: int = 0


# --- a state kept from batch to batch (the live worker): each batch's changes, from its journal ---------------

JOURNALED = tuple(sink.name for sink in SINKS if sink.name != "counts") + ("erasures", "erased_refs")

Journal = dict[str, dict]  # table name -> key -> the row before the batch (_MISSING: none)


def open_journal(state: FoldState) -> Journal:
    """Start logging the first previous row of every key each table changes; returns the log."""
    journal: Journal = {}
    for name in JOURNALED:
        table = getattr(state, name)
        table.journal = journal[name] = {}
    return journal


def close_journal(state: FoldState) -> None:
    for name in JOURNALED:
        getattr(state, name).journal = None


def restore(state: FoldState, journal: Journal) -> None:
    """The state as it was when `journal` was opened (journals are restored newest first)."""
    for name, keys in journal.items():
        getattr(state, name).restore(keys)


def changed_in(state: FoldState, journal: Journal, version: int) -> list[Changed]:
    """Table by table, what the rows of the keys a journal logged became: the keys removed, the
    rows added, and those replaced (a row equal to the one before is not written)."""
    out = []
    for sink in SINKS:
        logged = journal.get(sink.name)
        if not logged:
            continue
        now = getattr(state, sink.name).rows
        gone, added, replaced = [], [], []
        for k, was in logged.items():
            x = now.get(k, _MISSING)
            if x is _MISSING:
                if was is not _MISSING:
                    gone.append(k)
            elif was is _MISSING:
                added.append((k, x))
            elif was is not x and was != x:
                replaced.append((k, x))
        if gone or added or replaced:
            out.append(Changed(sink, [sink.key_values(k) for k in gone], gone, [sink.key_values(k) for k, _ in replaced],
                               list(_rows_of(sink, version, state.secret, added)),
                               list(_rows_of(sink, version, state.secret, replaced)), len(added) + len(replaced)))
    return out


def _payment_scopes(pid: str, p: Any) -> Iterator[str]:
    for i in money.ids(state_of(p), pid):  # every id it is known by: two writers that each met
        yield "p:" + i                       # the payment under another id still share one scope
    if owner := (p.expert_id or p.hint_expert):
        yield owner


# What a row is guarded by (`projections.live`): the expert it belongs to, and for a payment every
# id Stripe may name it by (`p:<id>`, what a payment that names no expert yet is guarded by alone);
# for a provider's message report, its id (`r:<id>`), which the message itself is guarded by too.
# A scope must cover what a row is derived from as well as the row: a batch that writes a row
# from a copy it holds of another scope's row is fenced only when that scope is checked with it.
SCOPES: dict[str, Callable[[Any, Any], Iterable[str]]] = {
    "meetings": lambda k, _x: (k[0],),
    "summaries": lambda k, _x: (k[0],),
    "profiles": lambda k, _x: (k[0],),
    "contributions": lambda k, _x: (k[0],),
    "merges": lambda k, _x: (k[0],),
    "definitions": lambda k, _x: (k,),
    "notes": lambda _k, x: (x.expert_id,),
    # a message's status is read from its delivery reports: a writer of either checks both
    "communications": lambda _k, x: (x.expert_id, "r:" + x.provider_message_id) if x.provider_message_id else (x.expert_id,),
    "payments": _payment_scopes,
    "aliases": lambda alias, pid: ("p:" + alias, "p:" + pid),
    "reports": lambda k, _x: ("r:" + k,),
}


def scopes_in(state: FoldState, journal: Journal) -> set[str]:
    """Every scope a journal's changes touch: of each changed key, its row before and after."""
    out: set[str] = set()
    for name, scoped in SCOPES.items():
        rows = getattr(state, name).rows
        for k, was in (journal.get(name) or {}).items():
            if was is not _MISSING:
                out.update(scoped(k, was))
            if (x := rows.get(k, _MISSING)) is not _MISSING:
                out.update(scoped(k, x))
    return out


def evict(state: FoldState, experts: set[str], keep: set[str] = frozenset()) -> set[str]:
    """Forget every row of `experts`, the payments they hold and the payments that name no expert
    (but those whose scope is in `keep`), with their aliases, the delivery reports of the messages
    forgotten, and the Stripe events applied (all read again by id when named). Returns the scopes
    forgotten."""
    scopes = set(experts)
    for name in ("meetings", "summaries", "profiles", "contributions", "merges"):
        table = getattr(state, name)
        table.drop([k for k in table.rows if k[0] in experts])
    state.definitions.drop([e for e in state.definitions.rows if e in experts])
    state.notes.drop([k for k, x in state.notes.rows.items() if x.expert_id in experts])
    messages = [(k, x.provider_message_id) for k, x in state.communications.rows.items() if x.expert_id in experts]
    state.communications.drop([k for k, _ in messages])
    reports = [i for _, i in messages if i and "r:" + i not in keep]
    state.reports.drop(reports)
    scopes.update("r:" + i for i in reports)
    pids = [pid for pid, p in state.payments.rows.items()
            if ((p.expert_id or p.hint_expert) in experts or not (p.expert_id or p.hint_expert))
            and "p:" + pid not in keep]
    state.payments.drop(pids)
    scopes.update("p:" + pid for pid in pids)
    gone = set(pids)
    state.aliases.drop([a for a, pid in state.aliases.rows.items() if pid in gone])
    state.stripe_events.drop(list(state.stripe_events.rows))
    return scopes


def rows_held(state: FoldState) -> int:
    return sum(len(getattr(state, name)) for name in JOURNALED)
