"""One registration per item type (`projections.rules.registry`): rule, stage, keys named, claims."""

import inspect
import json
from datetime import datetime, timezone

import pydantic
import pytest

from customers import commands, events, facts, messages
from customers.commands import CustomerErased, NoteAdded
from customers.events import parse_booking_event
from customers.ids import customer_id, email_hash
from projections.claims import named_by
from projections.forgetting import ref_of
from projections.projector import in_order
from projections.rules import registry
from testing import samples as s

T0 = datetime(2026, 6, 1, 9, tzinfo=timezone.utc)
SECRET = "s" * 32
C1, C2 = "c_" + "1" * 32, "c_" + "2" * 32


def _contract_types() -> set[str]:
    """Every `type` a record of the contract's schemas decodes to (the models' literal defaults)."""
    out = set()
    for module in (commands, events, facts, messages):
        for _name, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, pydantic.BaseModel) and "type" in cls.model_fields:
                annotation = cls.model_fields["type"].annotation
                values = getattr(annotation, "__args__", ())
                if len(values) == 1 and isinstance(values[0], str) and "." in values[0]:
                    out.add(values[0])
    return out


def test_every_type_the_contract_carries_is_registered_once_with_its_stage():
    carried = _contract_types()
    assert {"booking.created", "payment.observed", "customer.erased", "email.report", "message.sent"} <= carried
    assert carried == set(registry.EVENT_TYPES)
    first = {name for name, t in registry.EVENT_TYPES.items() if t.stage == registry.FIRST}
    assert first == {"booking.created", "booking.rescheduled", "booking.cancelled", "booking.no_show",
                     "payment.observed", "stripe.ignored"}
    assert {name for name, t in registry.EVENT_TYPES.items() if t.alone} == {"customer.erased"}
    with pytest.raises(ValueError):
        registry.register("note.added", lambda *_: None, registry.THEN, registry._nothing, registry._nothing)
    with pytest.raises(TypeError):
        registry.of("odd.thing")
    registers = {name: t.meeting.__name__ for name, t in registry.EVENT_TYPES.items() if t.meeting}
    assert registers == {"booking.created": "created", "booking.rescheduled": "rescheduled",
                         "booking.cancelled": "cancelled", "booking.no_show": "no_show"}
    note = NoteAdded(command_id="c1", occurred_at=T0, note_id="n1", expert_id="ex", customer_id="c_1", body="hi",
                     created_at=T0)
    with pytest.raises(TypeError):
        registry.apply_booking(None, note)
    booking = parse_booking_event(s.booking_created("ex", "m1", "ana@example.com", "Ana", T0))
    with pytest.raises(ValueError):  # a booking makes a customer's meeting: it needs the customer's id
        registry.apply_booking(None, booking)
    assert registry.apply_booking(None, booking, "c_x").customer_id == "c_x"


def test_a_booking_names_its_meeting_its_person_its_ledger_ref_and_the_payments_it_may_link():
    booking = parse_booking_event(s.booking_created("ex", "m1", "ana@example.com", "Ana", T0, payment_intent_id="pi_1",
                                                    checkout_session_id="cs_1"))
    w = registry.wanted([booking], SECRET)
    assert w.meetings == {("ex", "m1")}
    assert w.email_hashes == {email_hash(SECRET, "ana@example.com")}
    assert w.refs == {("meeting", ref_of("ex", "m1"))}
    assert w.linkable == {"pi_1", "cs_1"}
    assert w.names == set() and w.experts == {"ex"}
    bare = registry.wanted([booking], SECRET, ledger=False)  # nothing to find in an empty ledger
    assert bare.refs == set() and bare.email_hashes == set() and bare.meetings == {("ex", "m1")}


def test_commands_name_what_their_rules_read():
    note = NoteAdded(command_id="c1", occurred_at=T0, note_id="n1", expert_id="ex", customer_id="c_1", body="hi",
                     created_at=T0)
    erased = CustomerErased(command_id="c2", occurred_at=T0, email_hash="e" * 64)
    merged = commands.CustomerMerged(command_id="c3", occurred_at=T0, expert_id="ex", customer_id=C1, duplicate=C2,
                                     email_hash="a" * 64, survivor_email_hash="b" * 64)
    w = registry.wanted([note, erased, merged], SECRET)
    assert w.notes == {"n1"} and w.erased == {"e" * 64}
    assert w.profiles == w.summaries == {("ex", C1), ("ex", C2)}
    assert w.refs == {("customer", ref_of("ex", "c_1")), ("customer", ref_of("ex", C1)), ("customer", ref_of("ex", C2))}
    message = messages.parse_message_event(json.dumps({
        "type": "message.sent", "event_id": "msg-1", "schema_version": 1, "expert_id": "ex",
        "customer": {"email": "ana@example.com"}, "meeting_id": None, "channel": "email", "kind": "reminder",
        "subject": "Hello", "provider_message_id": "em_1", "occurred_at": "2026-05-01T10:00:00+00:00"}))
    w = registry.wanted([message], SECRET)
    assert w.profiles == {("ex", customer_id(SECRET, "ex", "ana@example.com"))}
    assert w.provider_ids == {"em_1"} and len(w.messages) == 1
    assert w.email_hashes == {email_hash(SECRET, "ana@example.com")}
    assert named_by(1, [], [message]).keys == {("expert", 1, "ex"), ("email", 1, "em_1")}


def test_claims_come_from_the_registrations_and_an_erasure_is_applied_alone():
    note = NoteAdded(command_id="c1", occurred_at=T0, note_id="n1", expert_id="ex", customer_id="c_1", body="hi",
                     created_at=T0)
    erased = CustomerErased(command_id="c2", occurred_at=T0, email_hash="e" * 64)
    assert named_by(1, [], [note]).keys == {("expert", 1, "ex")}
    assert named_by(1, [], [note, None, erased]).exclusive
    booking = parse_booking_event(s.booking_created("ex", "m1", "ana@example.com", "Ana", T0))
    assert [[i.type for i in part] for part in in_order([booking, erased, note])] == [
        ["booking.created"], ["customer.erased"], ["note.added"]]
