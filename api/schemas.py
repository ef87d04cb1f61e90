"""Response models of the read API (apart from the table models), and their builders."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, field_validator

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


class ErrorOut(BaseModel):
    detail: str


_ERRORS = {
    400: "bad request: a cursor not issued for this query, or a body that is not JSON",
    401: "missing, expired or invalid token",
    403: "not allowed (admin role missing, or a cross-origin cookie request)",
    404: "customer not found",
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
    stats: Stats
    appointments: list[Appointment]
    payments: list[PaymentOut]
    notes: list[NoteOut]
    as_of: datetime | None


def amounts(values: dict[str, int]) -> list[Amount]:
    return [Amount(currency=k, amount=v) for k, v in sorted(values.items())]


def summary(row) -> CustomerSummary:
    """A `customers` row as the list shows it: stored columns only, counted as of the last sweep."""
    return CustomerSummary(
        id=row.customer_id, email=row.email, name=row.name, phone=row.phone,
        first_seen_at=row.first_seen_at,
        appointments=AppointmentCounts(total=row.upcoming + row.past, upcoming=row.upcoming,
                                       past=row.past, cancelled=row.cancelled),
        total_spend=amounts(row.spend),
        last_appointment_at=row.last_appointment_at, next_appointment_at=row.next_appointment_at,
    )


def _payment(row) -> PaymentOut:
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
    )


def detail(found: dict[str, Any], now: datetime) -> CustomerDetail:
    """The figures as the list shows them; each appointment's status at `now`."""
    row = found["row"]
    base = summary(row)
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
    payments = sorted((_payment(p) for p in found["payments"]),
                      key=lambda p: (p.created_at.isoformat() if p.created_at else "", p.id), reverse=True)
    return CustomerDetail(
        **base.model_dump(exclude={"appointments"}),
        stats=Stats(appointments=base.appointments, expert_revenue=amounts(row.revenue),
                    refunded=amounts(row.refunded), session_minutes=row.session_minutes,
                    no_shows=row.no_shows),
        appointments=appointments,
        payments=payments,
        notes=[note_out(n) for n in found["notes"]],
        as_of=found["as_of"],
    )


def _meeting_payment_status(states: list[dict]) -> str:
    """One appointment's payment status: its most advanced payment decides."""
    if not states:
        return "none"
    return max((money.payment_status(s) for s in states), key=money.PAYMENT_STATUSES.index)


def note_out(row) -> NoteOut:
    return NoteOut(id=row.note_id, body=row.body, created_at=row.created_at)
