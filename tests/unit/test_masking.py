"""Card numbers are masked in every free text the service keeps; emails in logs are keyed pseudonyms."""

import hashlib
import json
import logging
import logging.config
from datetime import datetime, timezone

import pytest

from testing import samples as s
from customers.cards import MASK, mask_card_numbers
from customers.events import parse_booking_event
from customers.ids import email_hash
from customers.logs import JsonFormatter, scrub
from customers.commands import NoteAdded, command_adapter

NOW = datetime(2026, 6, 1, 9, tzinfo=timezone.utc)


@pytest.mark.parametrize("text, masked", [
    ("4000056655665556", MASK),
    ("card 4242 4242 4242 4242, exp 12/29", f"card {MASK}, exp 12/29"),
    ("amex 3782-822463-10005.", f"amex {MASK}."),
    ("ref 12 4242 4242 4242 4242", f"ref 12 {MASK}"),  # another number in the same run
    ("1234 4242-4242-4242-4242 x", f"1234 {MASK} x"),
    ("two: 4242424242424242 and 5555 5555 5555 4444", f"two: {MASK} and {MASK}"),
])
def test_card_numbers_are_masked_as_people_write_them(text, masked):
    assert mask_card_numbers(text) == masked


@pytest.mark.parametrize("text", [
    "4242 4242 4242 4241",  # fails the Luhn check
    "12345678901234567890123",  # one long number: an id or an amount, not cut into a card
    "+351 912 345 678",
    "on 2026-06-01 at 09:00, 3 sessions of 60 min",
])
def test_other_numbers_are_left_alone(text):
    assert mask_card_numbers(text) == text


def test_masking_is_idempotent():
    once = mask_card_numbers("pay 4242 4242 4242 4242 or 4000056655665556")
    assert mask_card_numbers(once) == once


def test_note_bodies_are_masked_when_the_command_is_built_and_when_it_is_decoded():
    note = NoteAdded(command_id="c", occurred_at=NOW, note_id="n_1", expert_id="ex", customer_id="c_1",
                     body="her card: 4242 4242 4242 4242", created_at=NOW)
    assert note.body == f"her card: {MASK}"
    raw = json.loads(note.model_dump_json())
    raw["body"] = "written straight to Kafka: 4000-0566-5566-5556"
    assert command_adapter.validate_json(json.dumps(raw)).body == f"written straight to Kafka: {MASK}"


def test_cancellation_reasons_are_masked():
    event = parse_booking_event(s.booking_event("booking.cancelled", "ex", "m", NOW,
                                                reason="refund to 4000 0566 5566 5556 please"))
    assert event.reason == f"refund to {MASK} please"
    assert json.dumps(event.model_dump(mode="json")).count("5556") == 0  # what the intake publishes


def test_log_pseudonyms_of_emails_need_the_key():
    line = scrub("booked by Ana@Example.com", key="k1")
    plain = hashlib.sha256(b"ana@example.com").hexdigest()[:12]  # what a dictionary of emails reverses
    assert line == f"booked by email:{email_hash('k1', 'ana@example.com')[:12]}"
    assert plain not in line and "ana" not in line.lower()
    assert scrub("booked by ana@example.com", key="k2") != line
    assert scrub("booked by ana@example.com") == "booked by email:redacted"


def test_the_worker_formatter_uses_the_key():
    from customers.settings import Settings
    from streams.worker import logging_config

    config = logging_config(Settings(environment="test", customer_id_secret="worker-key"))
    formatter = logging.config.DictConfigurator(config).configure_formatter(config["formatters"]["json"])
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "mail %s", ("ana@example.com",), None)
    assert json.loads(formatter.format(record))["msg"] == f"mail email:{email_hash('worker-key', 'ana@example.com')[:12]}"
    assert JsonFormatter(key="worker-key").format(record) == formatter.format(record)


CARD, OTHER = "4242 4242 4242 4242", "4000-0566-5566-5556"
ON_CUSTOMER = dict(command_id="c", occurred_at=NOW, expert_id="ex", customer_id="c_1", email_hash="0" * 64)


def _every_free_text_command() -> list:
    """One command or event of each kind that carries free text, a card number in each text."""
    from customers.commands import (CommunicationLogged, CustomerFieldsSet, CustomerTagsSet, FieldDefinition,
                                    FieldsDefined)
    from customers.messages import parse_message_event

    definitions = [FieldDefinition(key="card", label=f"card {CARD}", type="choice", choices=[CARD, f"or {OTHER}"]),
                   FieldDefinition(key="memo", label=OTHER, type="text")]
    return [
        CustomerTagsSet(**ON_CUSTOMER, tags=["vip", CARD, f"paid with {OTHER}"]),
        FieldsDefined(command_id="c", occurred_at=NOW, expert_id="ex", definitions=definitions),
        CustomerFieldsSet(**ON_CUSTOMER, values={"memo": f"card {CARD}", "count": 4242424242424242}),
        CommunicationLogged(**ON_CUSTOMER, communication_id="cm_" + "0" * 32, channel="phone",
                            summary=f"read out {CARD}", at=NOW),
        NoteAdded(command_id="c", occurred_at=NOW, note_id="n_1", expert_id="ex", customer_id="c_1",
                  body=f"card {OTHER}", created_at=NOW),
        parse_booking_event(s.booking_event("booking.cancelled", "ex", "m", NOW, reason=f"refund {CARD}")),
        parse_message_event({"type": "message.sent", "event_id": "e_1", "occurred_at": NOW.isoformat(),
                             "expert_id": "ex", "customer": {"email": "ana@example.com"}, "channel": "email",
                             "kind": "receipt", "subject": f"Receipt for {CARD}"}),
    ]


@pytest.mark.parametrize("index", range(7))
def test_every_free_text_is_masked_when_built_and_when_decoded(index):
    """Tags, field labels, choices and values, summaries, notes, reasons and subjects: what would
    be published carries no card number, and a record written straight to Kafka is masked on decoding."""
    item = _every_free_text_command()[index]
    published = item.model_dump_json()
    assert "4242 4242" not in published and "5556" not in published and MASK in published
    written_directly = published.replace(MASK, CARD)
    assert "4242 4242" not in type(item).model_validate_json(written_directly).model_dump_json()


def test_a_number_value_is_not_free_text():
    from customers.commands import CustomerFieldsSet

    values = CustomerFieldsSet(**ON_CUSTOMER, values={"count": 4242424242424242, "flag": True}).values
    assert values == {"count": 4242424242424242, "flag": True}


def _luhn_complete(digits: str) -> str:
    """`digits` and the check digit that makes them pass the Luhn check."""
    total = 0
    for i, d in enumerate(reversed(digits)):
        n = int(d) * (2 if i % 2 == 0 else 1)
        total += n - 9 if n > 9 else n
    return digits + str((10 - total % 10) % 10)


@pytest.mark.parametrize("length", range(13, 20))
@pytest.mark.parametrize("separator", ["", " ", "-"])
def test_a_masked_text_is_never_longer_than_the_text_as_typed(length, separator):
    card = _luhn_complete("4" + "1" * (length - 2))
    typed = separator.join(card[i:i + 4] for i in range(0, len(card), 4))
    text = f"paid with {typed}, then {typed}"
    masked = mask_card_numbers(text)
    assert card not in masked.replace(separator, "") and MASK in masked
    assert len(masked) <= len(text) and len(MASK) <= 13
