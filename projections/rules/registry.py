"""Every item type the projection takes, registered once: its rule, its stage, and the keys it names.

A registration says everything the engine needs to know of one type:

* `rule`: the pure function that applies it (`projections.rules`);
* `stage`: `FIRST` (bookings and payment facts, before payments are linked to meetings) or
  `THEN` (commands and communications, which see the links);
* `names`: the keys an item names, which a store loads before the rules run (`Wanted`: the same
  for the SQL store, the in-memory one and a catch-up's load);
* `claims`: the keys the SQL store locks for it (`projections.claims.Claim`, duck-typed here);
* `alone`: the item is applied in a part of its own, the batch cut around it, holding the whole
  version (an erasure: it reaches every expert, and a booking made after it must not be taken);
* `meeting`, for a booking type: the register of the meeting it changes (`projections.meetings`).

Adding a type is one `register(...)` call below; nothing else dispatches on an item's type.
Decoding stays per topic (`streams.decode`): a topic's schema tells its types apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from customers.ids import customer_id, email_hash
from projections.forgetting import payment_refs, ref_of
from projections import meetings
from projections.rules.bookings import booking
from projections.rules.communications import communication_logged, email_report, message_id, message_sent
from projections.rules.erasure import customer_erased
from projections.rules.merges import customer_merged, customer_unmerged
from projections.rules.model import Changes, Key, View
from projections.rules.notes import note_added, note_deleted
from projections.rules.payment_facts import named, payment_observed, stripe_ignored
from projections.rules.profiles import archived, fields_defined, fields_set, tags_set

Rule = Callable[[View, Changes, Any], None]
FIRST, THEN = 1, 2


@dataclass
class Wanted:
    """The keys a batch's items name: what a store loads for them."""

    email_hashes: set[str] = field(default_factory=set)
    refs: set[tuple[str, str]] = field(default_factory=set)  # erasure ledger refs
    events: set[str] = field(default_factory=set)  # Stripe event ids
    meetings: set[Key] = field(default_factory=set)
    names: set[str] = field(default_factory=set)  # ids payments may be known by
    linkable: set[str] = field(default_factory=set)  # payment ids bookings name (their payments may link)
    notes: set[str] = field(default_factory=set)
    erased: set[str] = field(default_factory=set)  # email hashes erased by the batch
    profiles: set[Key] = field(default_factory=set)
    messages: set[str] = field(default_factory=set)
    provider_ids: set[str] = field(default_factory=set)
    summaries: set[Key] = field(default_factory=set)  # the customers a merge names
    experts: set[str] = field(default_factory=set)  # whose merges the batch needs
    emails: set[str] = field(default_factory=set)  # addresses named, hashed into `email_hashes` at the end


class Naming:
    """What a type's `names` function writes to: the batch's `Wanted`, and whether the erasure
    ledger's keys are wanted (an empty ledger has nothing to find)."""

    __slots__ = ("w", "secret", "ledger")

    def __init__(self, w: Wanted, secret: str, ledger: bool) -> None:
        self.w, self.secret, self.ledger = w, secret, ledger

    def ref(self, kind: str, *parts: str) -> None:
        if self.ledger:
            self.w.refs.add((kind, ref_of(*parts)))


@dataclass(frozen=True)
class EventType:
    name: str
    rule: Rule
    stage: int
    names: Callable[[Any, Naming], None]
    claims: Callable[[Any, Any], None]
    alone: bool = False
    meeting: meetings.Register | None = None  # a booking type's register of the meeting


EVENT_TYPES: dict[str, EventType] = {}


def register(name: str, rule: Rule, stage: int, names: Callable[[Any, Naming], None],
             claims: Callable[[Any, Any], None], *, alone: bool = False,
             meeting: meetings.Register | None = None) -> None:
    if name in EVENT_TYPES:
        raise ValueError(f"{name!r} is registered already")
    EVENT_TYPES[name] = EventType(name, rule, stage, names, claims, alone, meeting)


def register_booking(name: str, meeting: meetings.Register, names: Callable[[Any, Naming], None],
                     claims: Callable[[Any, Any], None], *, creates: bool = False) -> None:
    """A booking type: its rule is the meeting's `meeting` register applied to the event's meeting
    (`creates`: the event makes the meeting its customer's, named by email)."""
    register(name, booking(meeting, creates=creates), FIRST, names, claims, meeting=meeting)


def of(kind: str) -> EventType:
    try:
        return EVENT_TYPES[kind]
    except KeyError:
        raise TypeError(f"no rule for {kind!r}") from None


def apply_booking(current: meetings.Meeting | None, event: Any, customer_id: str | None = None) -> meetings.Meeting:
    """One booking event applied to its meeting (`current`, None for a new one) through its type's
    register; `customer_id` is required for `booking.created` only."""
    register = of(event.type).meeting
    if register is None:
        raise TypeError(f"not a booking event: {event.type!r}")
    return meetings.apply_register(register, current, event, customer_id)


def alone(item: Any) -> bool:
    """Whether `item` is applied in a part of its own, holding the whole version."""
    registered = EVENT_TYPES.get(item.type)
    return registered is not None and registered.alone


def wanted(items: Any, secret: str, *, ledger: bool = True) -> Wanted:
    """Every key the items name, for the SQL store and the in-memory one alike. Without `ledger`
    (an empty erasure ledger), the ledger's keys are left out: there is nothing to find."""
    w = Wanted()
    naming = Naming(w, secret, ledger)
    for item in items:
        registered = EVENT_TYPES.get(item.type)
        if registered is not None:
            registered.names(item, naming)
        if (expert := getattr(item, "expert_id", None)) is not None:
            w.experts.add(expert)
    w.email_hashes = {email_hash(secret, x) for x in w.emails} if ledger else set()
    return w


# --- what each type names ---------------------------------------------------------------------

def _booking(item: Any, n: Naming) -> None:
    n.w.meetings.add((item.expert_id, item.meeting_id))
    n.ref("meeting", item.expert_id, item.meeting_id)


def _booking_created(item: Any, n: Naming) -> None:
    _booking(item, n)
    n.w.emails.add(item.customer.email)
    if item.payment:
        n.w.linkable.update(i for i in (item.payment.payment_intent_id, item.payment.checkout_session_id) if i)


def _payment(item: Any, n: Naming) -> None:
    w = n.w
    w.events.add(item.stripe_event_id)
    w.names |= named(item)
    if n.ledger:
        w.refs |= {("payment", ref) for ref in payment_refs(item)}
    n.ref("meeting", item.expert_id, item.meeting_id)
    if item.customer_email:
        w.emails.add(item.customer_email)


def _stripe_ignored(item: Any, n: Naming) -> None:
    n.w.events.add(item.stripe_event_id)


def _note(item: Any, n: Naming) -> None:
    n.w.notes.add(item.note_id)
    n.ref("customer", item.expert_id, item.customer_id)


def _erased(item: Any, n: Naming) -> None:
    n.w.erased.add(item.email_hash)


def _profile(item: Any, n: Naming) -> None:
    n.w.profiles.add((item.expert_id, item.customer_id))
    n.ref("customer", item.expert_id, item.customer_id)


def _logged(item: Any, n: Naming) -> None:
    _profile(item, n)
    n.w.messages.add(item.communication_id)


def _message(item: Any, n: Naming) -> None:
    w = n.w
    w.emails.add(item.customer.email)
    w.profiles.add((item.expert_id, customer_id(n.secret, item.expert_id, item.customer.email)))
    w.messages.add(message_id(item.expert_id, item.event_id))
    if item.provider_message_id:
        w.provider_ids.add(item.provider_message_id)


def _report(item: Any, n: Naming) -> None:
    n.w.provider_ids.add(item.email_id)
    n.ref("email", item.email_id)


def _merge(item: Any, n: Naming) -> None:
    both = {(item.expert_id, item.customer_id), (item.expert_id, item.duplicate)}
    n.w.profiles |= both
    n.w.summaries |= both
    for expert, customer in both:
        n.ref("customer", expert, customer)


def _nothing(item: Any, n: Any) -> None:
    return None


# --- what each type claims (the SQL store's locks) ------------------------------------------------

def _claims_expert(item: Any, c: Any) -> None:
    c.expert(item.expert_id)


def _claims_booking_created(item: Any, c: Any) -> None:
    c.expert(item.expert_id)
    if item.payment:
        c.payment(item.payment.payment_intent_id, item.payment.checkout_session_id)


def _claims_payment(item: Any, c: Any) -> None:
    c.expert(item.expert_id)
    c.payment(item.payment_id, item.payment_intent_id, item.checkout_session_id, *item.charge_ids())


def _claims_message(item: Any, c: Any) -> None:
    c.expert(item.expert_id)
    c.email(item.provider_message_id)


def _claims_report(item: Any, c: Any) -> None:
    c.email(item.email_id)


def _claims_version(item: Any, c: Any) -> None:
    c.exclusive = True


# --- the registrations --------------------------------------------------------------------------

register_booking("booking.created", meetings.created, _booking_created, _claims_booking_created, creates=True)
register_booking("booking.rescheduled", meetings.rescheduled, _booking, _claims_expert)
register_booking("booking.cancelled", meetings.cancelled, _booking, _claims_expert)
register_booking("booking.no_show", meetings.no_show, _booking, _claims_expert)
register("payment.observed", payment_observed, FIRST, _payment, _claims_payment)
register("stripe.ignored", stripe_ignored, FIRST, _stripe_ignored, _nothing)
register("note.added", note_added, THEN, _note, _claims_expert)
register("note.deleted", note_deleted, THEN, _note, _claims_expert)
register("customer.erased", customer_erased, THEN, _erased, _claims_version, alone=True)
register("fields.defined", fields_defined, THEN, _nothing, _claims_expert)
register("customer.fields_set", fields_set, THEN, _profile, _claims_expert)
register("customer.tags_set", tags_set, THEN, _profile, _claims_expert)
register("customer.archived", archived, THEN, _profile, _claims_expert)
register("customer.unarchived", archived, THEN, _profile, _claims_expert)
register("message.sent", message_sent, THEN, _message, _claims_message)
register("email.report", email_report, THEN, _report, _claims_report)
register("communication.logged", communication_logged, THEN, _logged, _claims_expert)
register("customer.merged", customer_merged, THEN, _merge, _claims_expert)
register("customer.unmerged", customer_unmerged, THEN, _merge, _claims_expert)
