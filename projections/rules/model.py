"""The values the rules read and the changes they return: no SQL, no clock, no I/O.

A batch's rules see a `View`: the stored state of every key the batch names (meetings,
payments, customer summaries, notes, what erasure keeps out), loaded by the store shell
(`projections.store`) in a fixed number of statements. They change the view in memory and
record what changed, so the shell can write every touched row once, whatever the number of
events that touched it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from operator import attrgetter
from datetime import datetime
from typing import Any, TypeVar

from projections import payments as money
from projections.meetings import Meeting
from projections.rules.status import DEFAULT as DEFAULT_LIFECYCLE
from projections.rules.status import Lifecycle

T = TypeVar("T")
Key = tuple[str, str]  # (expert_id, customer_id) or (expert_id, meeting_id)


@dataclass(slots=True)
class Payment:
    """One payment row: Stripe's objects joined (`state`), and the meeting it belongs to."""

    payment_id: str
    state: dict[str, Any] = field(default_factory=dict)
    payment_intent_id: str | None = None
    checkout_session_id: str | None = None
    charge_id: str | None = None
    expert_id: str | None = None
    meeting_id: str | None = None
    customer_id: str | None = None
    hint_expert: str | None = None
    hint_meeting: str | None = None
    hint_email: str | None = None
    hint_start: datetime | None = None
    created_at: datetime | None = None
    undecided: bool | None = None

    @property
    def owner(self) -> Key | None:
        """The customer whose figures this payment counts in."""
        return (self.expert_id, self.customer_id) if self.expert_id and self.customer_id else None

    def with_state(self, state: dict[str, Any]) -> "Payment":
        """The row for a new joined state: its ids and correlation hints copied into columns."""
        start = money.hint(state, "booked_start")
        created = state.get("created_at")
        return Payment(
            payment_id=self.payment_id, state=state,
            payment_intent_id=state.get("payment_intent_id"),
            checkout_session_id=state.get("checkout_session_id"),
            charge_id=money.money_charge(state),
            expert_id=self.expert_id, meeting_id=self.meeting_id, customer_id=self.customer_id,
            hint_expert=money.hint(state, "expert_id"),
            hint_meeting=money.hint(state, "meeting_id"),
            hint_email=money.hint(state, "customer_email"),
            hint_start=datetime.fromisoformat(start) if start else None,
            created_at=datetime.fromisoformat(created) if created else None,
            undecided=money.undecided(state),
        )


PAYMENT_FIELDS = tuple(f.name for f in fields(Payment))


def from_row(cls: type[T], row: Any) -> T:
    """A value of a dataclass from a row (or mapping) holding its fields, and maybe more."""
    data = row._mapping if hasattr(row, "_mapping") else row
    return cls(**{f.name: data[f.name] for f in fields(cls)})


@dataclass(slots=True)
class Summary:
    """One customer of one expert, as the list shows them.

    Counts and money are sums over the customer's meetings and payments, so a change of one of
    them is undone and redone exactly. The name, email and phone come from the newest booking:
    `profile_version` and `phone_version` say which, so that only a newer booking replaces them.
    """

    email: str
    name: str
    phone: str | None
    first_seen_at: datetime
    appointments: int = 0
    cancelled: int = 0
    no_shows: int = 0
    upcoming: int = 0
    past: int = 0
    last_appointment_at: datetime | None = None
    next_appointment_at: datetime | None = None
    session_minutes: int = 0
    spend: dict[str, int] = field(default_factory=dict)
    revenue: dict[str, int] = field(default_factory=dict)
    refunded: dict[str, int] = field(default_factory=dict)
    profile_version: str | None = None
    phone_version: str | None = None
    archived: bool = False  # the expert's profile says so (`projections.rules.profiles.onto_summaries`)
    last_contact_at: datetime | None = None  # the profile's: the newest communication
    first_appointment_at: datetime | None = None  # the earliest start of an appointment not cancelled
    status: str = "new"  # `projections.rules.status`, as of the watermark (set with the profile's figures)

    @property
    def search_text(self) -> str:
        return f"{self.name.lower()} {self.email}"

    @property
    def spend_sort(self) -> int:
        return sum(self.spend.values())

    @property
    def booked(self) -> int:
        return self.appointments + self.cancelled


SUMMARY_FIELDS = tuple(f.name for f in fields(Summary))
_SUMMARY_VALUES = attrgetter(*SUMMARY_FIELDS)


def copied(s: Summary) -> Summary:
    """A summary of its own to change: `dataclasses.replace(s)` without its checks, in a fifth of
    its time (a batch copies each customer it touches twice)."""
    return Summary(*_SUMMARY_VALUES(s))


@dataclass
class Note:
    note_id: str
    expert_id: str
    customer_id: str
    body: str
    created_at: datetime
    deleted: bool = False


@dataclass
class Profile:
    """What the expert keeps on one customer: custom field values, tags, whether archived."""

    expert_id: str
    customer_id: str
    email_hash: str
    tags: list[str] = field(default_factory=list)
    fields: dict[str, Any] = field(default_factory=dict)
    archived: bool = False
    last_contact_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass
class Communication:
    """One message the platform sent a customer, or one contact the expert logged."""

    communication_id: str
    expert_id: str
    customer_id: str
    email_hash: str
    source: str  # platform | expert
    channel: str
    at: datetime
    kind: str | None = None
    subject: str | None = None
    summary: str | None = None
    meeting_id: str | None = None
    provider_message_id: str | None = None
    status: str | None = None


COMMUNICATION_FIELDS = tuple(f.name for f in fields(Communication))


@dataclass
class Erasure:
    """Everything one erasure removes from a version, loaded for the `customer.erased` rule."""

    email_hash: str
    customers: list[Key] = field(default_factory=list)  # (expert, customer) rows with that email
    meetings: list[Key] = field(default_factory=list)  # (expert, meeting) rows with that email
    payments: dict[str, set[str]] = field(default_factory=dict)  # payment id -> every id it is known by
    notes: list[Note] = field(default_factory=list)  # notes of those customers
    profiles: list[Key] = field(default_factory=list)  # (expert, customer) profiles with that email hash
    communications: list[Communication] = field(default_factory=list)  # with that email hash


@dataclass
class Merge:
    """One customer merged into another of the same expert (`projections.rules.merges`)."""

    expert_id: str
    customer_id: str  # the duplicate: its own rows keep this id
    survivor_id: str
    email_hash: str  # the duplicate's
    merged_at: datetime
    added: dict[str, Any] = field(default_factory=dict)  # {"tags": [...], "fields": {...}} put on the survivor


MERGE_FIELDS = tuple(f.name for f in fields(Merge))


@dataclass
class View:
    """The stored state of the keys one batch touches, changed in memory by the rules."""

    version: int
    secret: str  # keys the customer ids and email hashes (pure functions of it)
    as_of: datetime  # the version's sweep watermark: counts of appointments are as of it
    now: datetime  # the batch's time, for `stripe_events_applied.applied_at`
    meetings: dict[Key, Meeting] = field(default_factory=dict)
    payments: dict[str, Payment] = field(default_factory=dict)
    aliases: dict[str, set[str]] = field(default_factory=dict)  # any id Stripe names -> payment ids
    erased_emails: dict[str, datetime] = field(default_factory=dict)  # email hash -> erased at
    erased_refs: dict[tuple[str, str], datetime] = field(default_factory=dict)  # (kind, ref) -> erased at
    stripe_seen: set[str] = field(default_factory=set)  # Stripe event ids applied before
    notes: dict[str, Note] = field(default_factory=dict)
    erasures: dict[str, Erasure] = field(default_factory=dict)  # by email hash, for this batch's erasures
    summaries: dict[Key, Summary] = field(default_factory=dict)  # loaded for the keys that change
    definitions: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # expert -> field definitions
    definitions_at: dict[str, datetime] = field(default_factory=dict)  # expert -> when they were defined
    profiles: dict[Key, Profile] = field(default_factory=dict)  # (expert, customer) -> profile
    communications: dict[str, Communication] = field(default_factory=dict)  # by id
    reports: dict[str, list[list]] = field(default_factory=dict)  # provider email id -> [[status, at iso], ...]
    lifecycle: Lifecycle = DEFAULT_LIFECYCLE  # the status thresholds
    merges: dict[Key, Merge] = field(default_factory=dict)  # (expert, duplicate) -> its merge, of the experts loaded
    merges_of: set[str] = field(default_factory=set)  # the experts whose merges are loaded

    def owner(self, key: Key | None) -> Key | None:
        """The customer whose figures the rows of `key` count in: its survivor when merged."""
        if key is None or not self.merges:
            return key
        found = self.merges.get(key)
        return (key[0], found.survivor_id) if found is not None else key

    def members(self, key: Key) -> list[str]:
        """The customers merged into `key` (their ids)."""
        return sorted(m.customer_id for m in self.merges.values() if (m.expert_id, m.survivor_id) == key)

    def keep_payment(self, p: Payment) -> None:
        """Hold a payment, findable by every id Stripe may name it by."""
        self.payments[p.payment_id] = p
        for alias in money.ids(p.state, p.payment_id):
            self.aliases.setdefault(alias, set()).add(p.payment_id)

    def known_by(self, names: set[str]) -> list[str]:
        found = set().union(*(self.aliases.get(a, ()) for a in names)) if names else set()
        return sorted(pid for pid in found if pid in self.payments)


@dataclass
class Changes:
    """What a batch's rules decided; the store writes each touched row once."""

    meetings: set[Key] = field(default_factory=set)  # meetings to write (from the view)
    meetings_removed: set[Key] = field(default_factory=set)
    payments: set[str] = field(default_factory=set)  # payments to write (from the view)
    payments_removed: set[str] = field(default_factory=set)  # rows gone: joined into another, or erased
    aliases_removed: set[str] = field(default_factory=set)  # payment ids whose aliases go
    stripe_events: dict[str, str] = field(default_factory=dict)  # event id -> type, first sightings
    notes: set[str] = field(default_factory=set)  # notes to write (from the view)
    notes_removed: set[str] = field(default_factory=set)
    erasures: dict[str, datetime] = field(default_factory=dict)  # email hash -> erased at (the ledger)
    erased_refs: dict[tuple[str, str], datetime] = field(default_factory=dict)
    summaries: set[Key] = field(default_factory=set)  # summaries to write (from the view)
    summaries_removed: set[Key] = field(default_factory=set)
    recount: set[Key] = field(default_factory=set)  # summaries the deltas cannot settle: from history
    definitions: set[str] = field(default_factory=set)  # experts whose field definitions to write
    profiles: set[Key] = field(default_factory=set)  # profiles to write (from the view)
    profiles_removed: set[Key] = field(default_factory=set)
    communications: set[str] = field(default_factory=set)  # to write (from the view)
    communications_removed: set[str] = field(default_factory=set)
    reports: set[str] = field(default_factory=set)  # provider email ids whose reports to write
    reports_removed: set[str] = field(default_factory=set)
    merges: set[Key] = field(default_factory=set)  # merges to write (from the view)
    merges_removed: set[Key] = field(default_factory=set)
    # what the batch had when it started, for the summary deltas
    meetings_before: dict[Key, Meeting | None] = field(default_factory=dict)
    payments_before: dict[str, Payment | None] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    skipped_erased: int = 0

    def count(self, kind: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
