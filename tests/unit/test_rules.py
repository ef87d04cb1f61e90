"""The projection's rules without a database: each rule, and the summaries folded from changes
checked against a recount of the whole history after every batch."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings, strategies as st

from testing import samples as s
from customers.events import parse_booking_event
from customers.facts import ChargeSeen, IntentSeen, PaymentObserved, RefundSeen
from customers.ids import customer_id, email_hash
from projections import rules
from customers.commands import CustomerErased, NoteAdded, NoteDeleted
from projections.forgetting import ref_of
from projections.rules import linking, registry, summaries
from projections.rules.model import Changes, Payment, View
from projections.rules.summaries import summary_of

SECRET = "s" * 32
T0 = datetime(2026, 5, 1, 9, tzinfo=timezone.utc)
H = timedelta(hours=1)


def view(**kw) -> View:
    return View(version=1, secret=SECRET, as_of=kw.pop("as_of", T0), now=T0, **kw)


def created(meeting_id: str, email: str = "ana@example.com", name: str = "Ana", start: datetime = T0 + 24 * H,
            *, phone: str | None = None, at: datetime = T0 - 72 * H, pi: str | None = None, expert: str = "ex"):
    return parse_booking_event(s.booking_created(expert, meeting_id, email, name, start, phone=phone, occurred_at=at,
                                                 payment_intent_id=pi))


def event(kind: str, meeting_id: str, at: datetime, expert: str = "ex", **fields):
    return parse_booking_event(s.booking_event(kind, expert, meeting_id, at, **fields))


def paid(pi: str, amount: int, *, refunded: int = 0, expert: str | None = "ex", meeting: str | None = None,
         event_id: str | None = None, at: datetime = T0 - 48 * H, charge: str | None = None) -> PaymentObserved:
    ch = charge or f"ch_{pi}"
    return PaymentObserved(
        stripe_event_id=event_id or s.rid("evt"), stripe_event_type="charge.succeeded", occurred_at=at,
        payment_id=pi, payment_intent_id=pi, expert_id=expert, meeting_id=meeting, currency="eur", created_at=at,
        intent=IntentSeen(status="succeeded", amount=amount, amount_received=amount, latest_charge=ch),
        charge=ChargeSeen(id=ch, status="succeeded", captured=True, amount=amount, amount_captured=amount,
                          amount_refunded=refunded))


def run(v: View, items: list) -> Changes:
    """The rules' stages on a view that already holds every row (no loads needed)."""
    changes = Changes()
    first, then = rules.stages(items)
    rules.apply_items(v, changes, first)
    linking.link(v, changes, set(v.payments))
    rules.apply_items(v, changes, then)
    summaries.update_summaries(v, changes)
    return changes


ANA = customer_id(SECRET, "ex", "ana@example.com")


# --- the dispatch table ------------------------------------------------------------------------

def test_every_item_type_has_one_rule_and_an_unknown_type_is_refused():
    assert set(registry.EVENT_TYPES) >= {"booking.created", "booking.rescheduled", "booking.cancelled", "booking.no_show",
                                "payment.observed", "stripe.ignored", "note.added", "note.deleted", "customer.erased"}
    with pytest.raises(TypeError):
        rules.apply_items(view(), Changes(), [type("Odd", (), {"type": "odd.thing"})()])


def test_commands_run_after_linking_and_the_rest_in_arrival_order():
    items = [created("m1"), NoteDeleted(command_id="c", occurred_at=T0, note_id="n", expert_id="ex", customer_id="c"),
             paid("pi_1", 100)]
    first, then = rules.stages(items)
    assert [i.type for i in first] == ["booking.created", "payment.observed"]
    assert [i.type for i in then] == ["note.deleted"]


# --- bookings ----------------------------------------------------------------------------------

def test_a_booking_makes_a_meeting_of_its_customer_and_one_change_per_meeting():
    v = view()
    changes = run(v, [created("m1"), event("booking.rescheduled", "m1", T0 - 60 * H, start_time=s.iso(T0 + 30 * H),
                                           end_time=s.iso(T0 + 31 * H), timezone="UTC")])
    m = v.meetings[("ex", "m1")]
    assert m.customer_id == ANA and m.start_time == T0 + 30 * H
    assert changes.meetings == {("ex", "m1")} and changes.meetings_before == {("ex", "m1"): None}
    assert changes.counts == {"booking.created": 1, "booking.rescheduled": 1}


def test_a_booking_of_an_erased_person_up_to_the_erasure_stays_out_and_a_later_one_counts():
    v = view(erased_emails={email_hash(SECRET, "ana@example.com"): T0 - 10 * H})
    changes = run(v, [created("m1", at=T0 - 20 * H), created("m2", at=T0 - 5 * H)])
    assert set(v.meetings) == {("ex", "m2")} and changes.skipped_erased == 1


def test_an_erased_meeting_takes_no_more_events():
    v = view(erased_refs={("meeting", ref_of("ex", "m1")): T0})
    changes = run(v, [event("booking.cancelled", "m1", T0 - H, reason="x")])
    assert v.meetings == {} and changes.skipped_erased == 1


# --- payment facts -----------------------------------------------------------------------------

def test_a_stripe_event_is_applied_once_and_an_ignored_one_is_remembered():
    v = view(stripe_seen={"evt_old"})
    fact = paid("pi_1", 7000, event_id="evt_new")
    changes = run(v, [fact, fact, paid("pi_1", 7000, event_id="evt_old")])
    assert changes.counts["stripe.duplicate"] == 2 and changes.stripe_events == {"evt_new": "charge.succeeded"}
    ignored = type("Ignored", (), {"type": "stripe.ignored", "stripe_event_id": "evt_i", "stripe_event_type": "x.y"})()
    changes = run(v, [ignored])
    assert changes.stripe_events == {"evt_i": "x.y"} and changes.counts == {"stripe.ignored": 1}


def test_a_charge_parked_under_its_own_id_joins_its_intent_and_the_parked_row_goes():
    v = view()
    lone = PaymentObserved(stripe_event_id="evt_r", stripe_event_type="charge.refunded", occurred_at=T0 - 10 * H,
                           payment_id="ch_x", charge_id="ch_x", currency="eur",
                           refunds=[RefundSeen(id="re_1", charge_id="ch_x", amount=500, status="succeeded",
                                               created_at=T0 - 10 * H)])
    run(v, [lone])
    assert set(v.payments) == {"ch_x"}
    changes = run(v, [paid("pi_1", 7000, charge="ch_x")])
    assert set(v.payments) == {"pi_1"} and changes.payments_removed == {"ch_x"}
    assert v.payments["pi_1"].state["refunds"]  # the refund seen first is part of the payment


def test_a_row_of_another_intent_is_never_joined():
    v = view()
    run(v, [paid("pi_1", 7000, charge="ch_shared")])
    run(v, [paid("pi_2", 3000, charge="ch_shared")])
    assert {"pi_1", "pi_2"} <= set(v.payments)


# --- linking -----------------------------------------------------------------------------------

def test_a_payment_is_tied_by_its_metadata_and_counts_for_that_customer():
    v = view()
    run(v, [created("m1"), paid("pi_1", 7000, meeting="m1")])
    p = v.payments["pi_1"]
    assert (p.expert_id, p.meeting_id, p.customer_id) == ("ex", "m1", ANA)
    assert v.summaries[("ex", ANA)].spend == {"eur": 7000}


def test_evidence_naming_two_meetings_gives_way_to_the_next_kind_and_else_the_lowest_id():
    v = view()
    start = T0 + 24 * H
    run(v, [created("m2", start=start, pi="pi_1"), created("m1", start=start)])
    index = linking.Index(v.meetings.values())
    both = Payment("p", hint_expert="ex", hint_email="ana@example.com", hint_start=start, payment_intent_id="pi_1")
    assert index.meeting_for(both).meeting_id == "m2"  # the booking's intent id settles it
    assert index.meeting_for(replace(both, payment_intent_id=None)).meeting_id == "m1"


def test_a_payment_moves_with_its_evidence_and_its_money_follows():
    v = view()
    run(v, [created("m1", email="bo@example.com", name="Bo"), paid("pi_1", 7000, meeting="m2")])
    assert v.payments["pi_1"].customer_id is None
    run(v, [created("m2")])  # the meeting the metadata named arrives later
    assert v.payments["pi_1"].customer_id == ANA and v.summaries[("ex", ANA)].spend == {"eur": 7000}


# --- notes -------------------------------------------------------------------------------------

def note(note_id="n1", body="hello", at=T0, customer=ANA, expert="ex"):
    return NoteAdded(command_id=s.rid("c"), occurred_at=at, note_id=note_id, expert_id=expert, customer_id=customer,
                     body=body, created_at=at)


def deleted(note_id="n1", at=T0, customer=ANA, expert="ex"):
    return NoteDeleted(command_id=s.rid("c"), occurred_at=at, note_id=note_id, expert_id=expert, customer_id=customer)


def test_the_first_add_wins_and_a_delete_leaves_a_tombstone_that_no_add_revives():
    v = view()
    run(v, [note(body="first"), note(body="second")])
    assert v.notes["n1"].body == "first"
    run(v, [deleted(), note(body="again")])
    assert v.notes["n1"].deleted and v.notes["n1"].body == ""


def test_a_delete_that_overtakes_its_add_keeps_the_add_out_and_only_the_owner_deletes():
    v = view()
    run(v, [deleted("n2"), note("n2")])
    assert v.notes["n2"].deleted
    run(v, [note("n3"), deleted("n3", expert="other")])
    assert not v.notes["n3"].deleted


def test_notes_on_an_erased_customer_up_to_the_erasure_are_refused():
    v = view(erased_refs={("customer", ref_of("ex", ANA)): T0})
    changes = run(v, [note("n1", at=T0 - H), note("n2", at=T0 + H)])
    assert set(v.notes) == {"n2"} and changes.skipped_erased == 1


# --- erasure -----------------------------------------------------------------------------------

def test_an_erasure_removes_the_person_everywhere_and_remembers_every_name():
    v = view()
    run(v, [created("m1"), created("m2", expert="other"), created("m3", email="bo@example.com", name="Bo"),
            paid("pi_1", 7000, meeting="m1"), note("n1", at=T0 - H), note("n2", at=T0 + H)])
    h = email_hash(SECRET, "ana@example.com")
    changes = run(v, [CustomerErased(command_id="c", occurred_at=T0, email_hash=h)])
    assert set(v.meetings) == {("ex", "m3")} and set(v.payments) == set()
    assert changes.summaries_removed == {("ex", ANA), ("other", customer_id(SECRET, "other", "ana@example.com"))}
    assert set(v.notes) == {"n2"}  # written after the erasure: a new relationship
    assert changes.erasures == {h: T0}
    kinds = {k for k, _ in changes.erased_refs}
    assert kinds == {"customer", "meeting", "payment"}
    assert ("payment", ref_of("ch_pi_1")) in changes.erased_refs  # every id Stripe may name it by


# --- summaries: folded from changes == recounted from history -----------------------------------

EMAILS = ["ana@example.com", "bo@example.com"]


@st.composite
def batches(draw):
    """Batches of booking events and payment facts over a few meetings of two customers."""
    out = []
    clock = T0 - 200 * H
    for _ in range(draw(st.integers(1, 6))):
        batch = []
        for _ in range(draw(st.integers(1, 6))):
            clock += H
            meeting = f"m{draw(st.integers(1, 4))}"
            kind = draw(st.sampled_from(["created", "created", "rescheduled", "cancelled", "no_show", "paid",
                                         "refunded"]))
            start = T0 + draw(st.integers(-100, 100)) * H
            if kind == "created":
                batch.append(created(meeting, email=draw(st.sampled_from(EMAILS)), name=draw(st.sampled_from(["A", "B"])),
                                     start=start, phone=draw(st.sampled_from([None, "+351 1", "+351 2"])), at=clock))
            elif kind == "rescheduled":
                batch.append(event("booking.rescheduled", meeting, clock, start_time=s.iso(start),
                                   end_time=s.iso(start + draw(st.integers(1, 3)) * H), timezone="UTC"))
            elif kind == "cancelled":
                batch.append(event("booking.cancelled", meeting, clock, reason="x"))
            elif kind == "no_show":
                batch.append(event("booking.no_show", meeting, clock))
            else:
                amount = draw(st.sampled_from([3000, 7000]))
                batch.append(paid(f"pi_{meeting}_{draw(st.integers(1, 2))}", amount, meeting=meeting, at=clock,
                                  refunded=amount if kind == "refunded" else 0))
        out.append(batch)
    return out


@settings(max_examples=300, deadline=None)
@given(batches(), st.integers(-120, 120))
def test_summaries_folded_from_changes_equal_a_recount_of_the_whole_history(plan, hours):
    v = view(as_of=T0 + hours * H)
    for batch in plan:
        v.summaries = {k: replace(x) for k, x in v.summaries.items()}
        changes = run(v, batch)
        for key in changes.recount:  # what the store does: the customer's history, as written
            history = [m for m in v.meetings.values() if (m.expert_id, m.customer_id) == key]
            states = [p.state for p in v.payments.values() if p.owner == key]
            summaries.recounted(v, changes, key, history, states)
        customers = {(m.expert_id, m.customer_id) for m in v.meetings.values() if m.is_booked}
        assert set(v.summaries) == customers
        for key in customers:
            history = [m for m in v.meetings.values() if (m.expert_id, m.customer_id) == key]
            states = [p.state for p in v.payments.values() if p.owner == key]
            expected = summary_of(history, states, v.as_of)
            got = v.summaries[key]
            assert got == replace(expected, profile_version=got.profile_version, phone_version=got.phone_version), key
