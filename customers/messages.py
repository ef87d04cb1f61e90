"""Communication events: what the platform sent a customer (`communications`), and what the email
provider says became of it (`email-events`). Never a message body.

* `message.sent` (schema version 1) comes from the booking platform through
  `POST /events/messages`, keyed by expert, like bookings.
* An email-provider event is Resend's webhook body, verified (Svix signature) and published as
  received, keyed by the provider's email id; `email_event` reads what the read model keeps of it
  (its type, its time and the email id) and refuses the rest. Only the delivery types in
  `DELIVERY` are published; the intake answers others 200 and publishes nothing.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Literal

from pydantic import Field, TypeAdapter, field_validator

from customers.cards import CardSafe
from customers.events import EVENT_ID, ID, _Model, as_utc, check_email

SUBJECT = 300
PROVIDER_ID = 200

# the provider's event types -> the status each one reports
DELIVERY = {
    "email.sent": "sent",
    "email.delivery_delayed": "delayed",
    "email.delivered": "delivered",
    "email.opened": "opened",
    "email.clicked": "clicked",
    "email.bounced": "bounced",
    "email.complained": "complained",
    "email.failed": "failed",
}
# a message's status: the furthest along of these, unless one of `PROBLEMS` came (the first listed wins)
PROGRESS = ("sent", "delayed", "delivered", "opened", "clicked")
PROBLEMS = ("complained", "bounced", "failed")


class MessageRecipient(_Model):
    email: str = Field(min_length=3, max_length=320)

    _email = field_validator("email")(classmethod(lambda cls, v: check_email(v)))


class MessageSent(_Model):
    type: Literal["message.sent"]
    event_id: str = Field(min_length=1, max_length=EVENT_ID)
    schema_version: Literal[1] = 1
    occurred_at: datetime
    expert_id: str = Field(min_length=1, max_length=ID)
    customer: MessageRecipient
    meeting_id: str | None = Field(default=None, min_length=1, max_length=ID)
    channel: Literal["email", "sms"]
    kind: Literal["confirmation", "reminder", "receipt", "cancellation", "follow_up", "other"]
    subject: CardSafe = Field(default="", max_length=SUBJECT)
    provider_message_id: str | None = Field(default=None, min_length=1, max_length=PROVIDER_ID)

    _utc = field_validator("occurred_at")(classmethod(lambda cls, v: as_utc(v)))


message_adapter: TypeAdapter[MessageSent] = TypeAdapter(MessageSent)


def parse_message_event(data: dict | bytes | str) -> MessageSent:
    if isinstance(data, (bytes, str)):
        return message_adapter.validate_json(data)
    return message_adapter.validate_python(data)


class _EmailData(_Model):
    email_id: str = Field(min_length=1, max_length=PROVIDER_ID)


class EmailEvent(_Model):
    """What the read model keeps of one email-provider webhook: which email, what, when."""

    type: Literal["email.sent", "email.delivery_delayed", "email.delivered", "email.opened", "email.clicked",
                  "email.bounced", "email.complained", "email.failed"]
    created_at: datetime
    data: _EmailData

    _utc = field_validator("created_at")(classmethod(lambda cls, v: as_utc(v)))

    @property
    def email_id(self) -> str:
        return self.data.email_id

    @property
    def status(self) -> str:
        return DELIVERY[self.type]



email_event_adapter: TypeAdapter[EmailEvent] = TypeAdapter(EmailEvent)


def email_event(raw: bytes | str) -> "EmailReport":
    """The report the projection applies, from a provider webhook body; ValueError when unusable."""
    event = email_event_adapter.validate_json(raw)
    return EmailReport(email_id=event.email_id, status=event.status, at=event.created_at)


class EmailReport(_Model):
    """One delivery report: `status` of the email `email_id` at `at` (`type` dispatches it)."""

    type: Literal["email.report"] = "email.report"
    email_id: str = Field(min_length=1, max_length=PROVIDER_ID)
    status: Literal["sent", "delayed", "delivered", "opened", "clicked", "bounced", "complained", "failed"]
    at: datetime

    _utc = field_validator("at")(classmethod(lambda cls, v: as_utc(v)))


def provider_type(raw: bytes) -> str | None:
    """The `type` of a provider webhook body, or None when it is not a JSON object with one."""
    try:
        body = json.loads(raw)
    except ValueError:
        return None
    kind = body.get("type") if isinstance(body, dict) else None
    return kind if isinstance(kind, str) else None


def message_status(reports: list[tuple[str, datetime]]) -> str:
    """The status a message shows from its delivery reports: a problem wins (complained, then
    bounced, then failed), otherwise the furthest along; `sent` with none."""
    seen = {status for status, _at in reports}
    for problem in PROBLEMS:
        if problem in seen:
            return problem
    return max((s for s in seen if s in PROGRESS), key=PROGRESS.index, default="sent")
