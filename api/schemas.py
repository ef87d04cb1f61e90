"""Response models of the read API (apart from the table models), and their builders."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import msgspec
from pydantic import BaseModel, Field, field_validator

from customers.events import as_utc
from projections.queries import Meeting, appointment_status, meeting_from_row, money


class Amount(BaseModel):
    currency: str
    amount: int


class AppointmentCounts(BaseModel):
    total: int
    upcoming: int
    past: int
    cancelled: int


class CustomerSummary(BaseModel):
    id: str
    email: str
    name: str
    phone: str | None
    first_seen_at: datetime
    appointments: AppointmentCounts
    total_spend: list[Amount]
    last_appointment_at: datetime | None
    next_appointment_at: datetime | None
    tags: list[str] = []
    archived: bool = False
    last_contact_at: datetime | None = None
    status: Literal["new", "active", "lapsed", "archived"] = "new"


class CustomerList(BaseModel):
    customers: list[CustomerSummary]
    total: int
    next_cursor: str | None
    prev_cursor: str | None = None
    as_of: datetime | None


class Stats(BaseModel):
    appointments: AppointmentCounts
    expert_revenue: list[Amount]
    refunded: list[Amount]
    session_minutes: int
    no_shows: int


class Service(BaseModel):
    id: str | None
    name: str | None


class Price(BaseModel):
    amount: int | None
    currency: str | None


class Appointment(BaseModel):
    id: str
    service: Service
    start_time: datetime
    end_time: datetime
    timezone: str | None
    status: str
    payment_status: str
    price: Price


class CardOut(BaseModel):
    brand: str | None
    last4: str | None


class RefundOut(BaseModel):
    id: str
    amount: int
    status: str
    created_at: datetime | None


class PaymentOut(BaseModel):
    id: str
    meeting_id: str | None
    amount: int
    amount_refunded: int
    currency: str | None
    status: str
    card: CardOut | None
    created_at: datetime | None
    refunds: list[RefundOut]
    dashboard_url: str | None = Field(description="the payment in the Stripe Dashboard (test or live mode)")


class CommunicationOut(BaseModel):
    id: str
    channel: str
    kind: str | None = Field(description="the platform's kind of message; null for a contact the expert logged")
    subject: str | None
    summary: str | None = Field(default=None, description="the expert's own words, for a contact they logged")
    at: datetime
    status: str | None = Field(description="a platform message's delivery: sent, delayed, delivered, opened, "
                                            "clicked, or bounced, complained, failed (which win); null for a "
                                            "contact the expert logged")
    meeting_id: str | None
    source: str


class CommunicationIn(BaseModel):
    channel: Literal["phone", "email", "message", "in_person"]
    summary: str = Field(min_length=1, max_length=2000, pattern=r"^[^\x00]*[^\s\x00][^\x00]*$")
    at: datetime

    @field_validator("summary")
    @classmethod
    def _text(cls, value: str) -> str:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError("the summary is not valid text") from exc
        return value.strip()

    @field_validator("at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return as_utc(value)


class NoteOut(BaseModel):
    id: str
    body: str
    created_at: datetime


class NoteIn(BaseModel):
    body: str = Field(min_length=1, max_length=10_000, pattern=r"^[^\x00]*[^\s\x00][^\x00]*$",
                      description="the note: some visible text, no NUL; surrounding blanks are trimmed")

    @field_validator("body")
    @classmethod
    def _text(cls, value: str) -> str:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:  # a lone surrogate from a JSON escape
            raise ValueError("the note is not valid text") from exc
        return value.strip() or value


class NoteAccepted(BaseModel):
    """A write Kafka took that the read model does not show yet; `Location` says where to look."""

    id: str
    status: str = "pending"


class NoteList(BaseModel):
    notes: list[NoteOut]
    next_cursor: str | None = None


class CommunicationList(BaseModel):
    communications: list[CommunicationOut]
    next_cursor: str | None = None


class ErrorOut(BaseModel):
    detail: str


_ERRORS = {
    400: "bad request: a cursor not issued for this query, or a body that is not JSON",
    401: "missing, expired or invalid token",
    403: "not allowed (admin role missing, or a cross-origin cookie request)",
    404: "customer not found",
    409: "the customers cannot be merged or split as they are now (merged already, or not merged)",
    503: "Kafka cannot take the write now; retry",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for the error statuses a route can answer."""
    return {code: {"model": ErrorOut, "description": _ERRORS[code]} for code in (401, *codes)}


class CustomerDetail(BaseModel):
    """The summary's fields, but `appointments` is the history; its counts move to `stats`."""

    id: str
    email: str
    name: str
    phone: str | None
    first_seen_at: datetime
    total_spend: list[Amount]
    last_appointment_at: datetime | None
    next_appointment_at: datetime | None
    tags: list[str]
    archived: bool
    last_contact_at: datetime | None
    status: Literal["new", "active", "lapsed", "archived"]
    merged_from: list[str] = Field(default=[], description="the customers merged into this one (their ids)")
    emails: list[str] = Field(default=[], description="this customer's email, then those of the customers merged in")
    fields: dict[str, bool | int | float | str] = Field(
        description="custom field values, by key, of the fields the expert defines now")
    stats: Stats
    appointments: list[Appointment]
    payments: list[PaymentOut]
    notes: list[NoteOut] = Field(description="the newest notes (a page: `notes_next_cursor` pages on)")
    notes_total: int
    notes_next_cursor: str | None = None
    communications: list[CommunicationOut] = Field(description="the newest communications (a page)")
    communications_total: int
    communications_next_cursor: str | None = None
    as_of: datetime | None


def communication_out(row) -> CommunicationOut:
    return CommunicationOut(id=row.communication_id, channel=row.channel, kind=row.kind, subject=row.subject,
                            summary=row.summary, at=row.at, status=row.status, meeting_id=row.meeting_id,
                            source=row.source)


def amounts(values: dict[str, int]) -> list[Amount]:
    return [Amount(currency=k, amount=v) for k, v in sorted(values.items())]


def list_entry(row, tags=None) -> dict[str, Any]:
    """A `customers` row as the list shows it (a `CustomerSummary`'s fields): stored columns only,
    counted as of the last sweep."""
    return {
        "id": row.customer_id, "email": row.email, "name": row.name, "phone": row.phone,
        "first_seen_at": row.first_seen_at,
        "appointments": {"total": row.upcoming + row.past, "upcoming": row.upcoming, "past": row.past,
                         "cancelled": row.cancelled},
        "total_spend": [{"currency": k, "amount": v} for k, v in sorted(row.spend.items())],
        "last_appointment_at": row.last_appointment_at, "next_appointment_at": row.next_appointment_at,
        "tags": list(tags or ()), "archived": row.archived, "last_contact_at": row.last_contact_at,
        "status": row.status,
    }


def summary(row, profile=None) -> CustomerSummary:
    """`list_entry` as the model; tags from the expert's profile of the customer, when there is
    one (a list row carries them as its `tags`)."""
    return CustomerSummary.model_validate(
        list_entry(row, profile.tags if profile is not None else getattr(row, "tags", None)))


_encode = msgspec.json.Encoder().encode


def customer_list_json(page: dict[str, Any]) -> bytes:
    """`CustomerList` of a list page (`projections.queries.list_customers`) as JSON, the same
    document the model would give (a test holds them equal), written straight from the entries:
    a page of 50 is the list's most frequent answer, and the models cost more than its queries."""
    return _encode({"customers": [list_entry(r, r.tags) for r in page["rows"]], "total": page["total"],
                    "next_cursor": page["next_cursor"], "prev_cursor": page["prev_cursor"], "as_of": page["as_of"]})


def dashboard_url(state: dict, payment_id: str, livemode: bool) -> str | None:
    """The Stripe Dashboard page of a payment: its intent's, or its charge's before the intent is known."""
    target = state.get("payment_intent_id") or (payment_id if payment_id.startswith(("pi_", "ch_", "py_")) else None) \
        or money.money_charge(state)
    if not target:
        return None
    return f"https://dashboard.stripe.com/{'' if livemode else 'test/'}payments/{target}"


def _payment(row, livemode: bool) -> PaymentOut:
    s = money.upgrade_state(row.state) or {}
    card = money.card(s)
    return PaymentOut(
        id=row.payment_id, meeting_id=row.meeting_id, amount=money.amount(s),
        amount_refunded=money.refunded(s), currency=s.get("currency"), status=money.payment_status(s),
        card=CardOut(brand=card.get("brand"), last4=card.get("last4")) if card else None,
        created_at=row.created_at,
        refunds=[RefundOut(id=rid, amount=r["amount"], status=r["status"],
                           created_at=datetime.fromisoformat(r["created_at"]) if r.get("created_at") else None)
                 for rid, r in money.refund_list(s)],
        dashboard_url=dashboard_url(s, row.payment_id, livemode),
    )


def detail(found: dict[str, Any], now: datetime, livemode: bool) -> CustomerDetail:
    """The figures as the list shows them; each appointment's status at `now`."""
    row, profile = found["row"], found.get("profile")
    base = summary(row, profile)
    defined = [d["key"] for d in found.get("definitions", [])]
    stored = dict(profile.fields) if profile is not None else {}
    by_meeting: dict[str, list] = {}
    for p in found["payments"]:
        by_meeting.setdefault(p.meeting_id, []).append(money.upgrade_state(p.state) or {})
    appointments = []
    for mrow in found["meetings"]:
        m: Meeting = meeting_from_row(mrow)
        appointments.append(Appointment(
            id=m.meeting_id, service=Service(id=m.service_id, name=m.service_name),
            start_time=m.start_time, end_time=m.end_time, timezone=m.timezone,
            status=appointment_status(m, now),
            payment_status=_meeting_payment_status(by_meeting.get(m.meeting_id, [])),
            price=Price(amount=m.price_amount, currency=m.price_currency),
        ))
    payments = sorted((_payment(p, livemode) for p in found["payments"]),
                      key=lambda p: (p.created_at.isoformat() if p.created_at else "", p.id), reverse=True)
    return CustomerDetail(
        **base.model_dump(exclude={"appointments"}),
        fields={key: stored[key] for key in defined if key in stored},
        merged_from=found.get("merged_from", []), emails=found.get("emails") or [row.email],
        stats=Stats(appointments=base.appointments, expert_revenue=amounts(row.revenue),
                    refunded=amounts(row.refunded), session_minutes=row.session_minutes,
                    no_shows=row.no_shows),
        appointments=appointments,
        payments=payments,
        notes=[note_out(n) for n in found["notes"]], notes_total=found["notes_total"],
        notes_next_cursor=found.get("notes_next_cursor"),
        communications=[communication_out(c) for c in found.get("communications", [])],
        communications_total=found["communications_total"],
        communications_next_cursor=found.get("communications_next_cursor"),
        as_of=found["as_of"],
    )


def _meeting_payment_status(states: list[dict]) -> str:
    """One appointment's payment status: its most advanced payment decides."""
    if not states:
        return "none"
    return max((money.payment_status(s) for s in states), key=money.PAYMENT_STATUSES.index)


def note_out(row) -> NoteOut:
    return NoteOut(id=row.note_id, body=row.body, created_at=row.created_at)
