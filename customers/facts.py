"""Normalised facts on the internal `customer-activity` topic.

A Stripe event becomes one `PaymentObserved` fact: what that event showed of the Stripe objects
behind one payment, in Stripe's own model. A payment is a payment intent (or a checkout session,
or a lone charge when nothing better is known); it may have several charges (a declined one, then
one that succeeded), each charge its refunds, disputes and application fee. A fact carries the
snapshot of each object the event showed, with the event's time, and nothing is decided here:
the projection joins snapshots (`projections.payments`). Facts are observations, not commands,
so applying one twice or late changes nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

ChargeStatus = Literal["pending", "succeeded", "failed"]
RefundStatus = Literal["pending", "requires_action", "succeeded", "failed", "canceled"]
DisputeStatus = Literal["warning_needs_response", "warning_under_review", "warning_closed", "needs_response",
                        "under_review", "won", "lost", "prevented", "charge_refunded"]
IntentStatus = Literal["requires_payment_method", "requires_confirmation", "requires_action", "processing",
                       "requires_capture", "canceled", "succeeded", "failed"]
SessionStatus = Literal["open", "complete", "expired", "failed"]


class _Fact(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Card(_Fact):
    brand: str | None = None
    last4: str | None = Field(default=None, pattern=r"^\d{4}$")
    exp_month: int | None = None
    exp_year: int | None = None


class IntentSeen(_Fact):
    """A payment intent as one event showed it (`failed` stands for a `payment_failed` event)."""

    status: IntentStatus
    amount: int | None = None
    amount_received: int | None = None
    latest_charge: str | None = None
    application_fee: int | None = None


class SessionSeen(_Fact):
    status: SessionStatus
    paid: bool = False
    amount_total: int | None = None


class ChargeSeen(_Fact):
    """A charge as one event showed it; `amount_refunded` is the charge's own running total."""

    id: str
    status: ChargeStatus | None = None
    captured: bool | None = None
    expired: bool = False
    amount: int | None = None
    amount_captured: int | None = None
    amount_refunded: int | None = None
    application_fee: int | None = None
    card: Card | None = None


class RefundSeen(_Fact):
    id: str
    charge_id: str | None = None
    amount: int
    status: RefundStatus
    created_at: datetime | None = None


class DisputeSeen(_Fact):
    id: str
    charge_id: str | None = None
    amount: int
    status: DisputeStatus


class FeeSeen(_Fact):
    """The platform's application fee on one charge (its refunds only ever grow)."""

    id: str
    charge_id: str | None = None
    amount: int | None = None
    amount_refunded: int | None = None


class PaymentObserved(_Fact):
    type: Literal["payment.observed"] = "payment.observed"
    stripe_event_id: str
    stripe_event_type: str
    occurred_at: datetime
    payment_id: str
    payment_intent_id: str | None = None
    checkout_session_id: str | None = None
    charge_id: str | None = None
    # correlation hints, best first: flat metadata, then the checkout's `meeting` JSON
    expert_id: str | None = None
    meeting_id: str | None = None
    customer_email: str | None = None
    booked_start: datetime | None = None
    currency: str | None = None
    created_at: datetime | None = None
    intent: IntentSeen | None = None
    session: SessionSeen | None = None
    charge: ChargeSeen | None = None
    refunds: list[RefundSeen] = []
    disputes: list[DisputeSeen] = []
    fee: FeeSeen | None = None
    # the events alone cannot settle this payment's figures: ask Stripe, or `customers reconcile`
    undecided: bool = False

    @model_validator(mode="before")
    @classmethod
    def _from_first_release(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        try:
            return upgrade_first_release(data)
        except (TypeError, AttributeError) as exc:  # a list where an object was: refused like any bad fact
            raise ValueError(f"not a fact of the first release's shape ({exc})") from exc

    @property
    def kafka_key(self) -> str:
        return self.expert_id or self.payment_id

    def charge_ids(self) -> set[str]:
        """Every charge this fact names, by whichever object named it."""
        ids = {self.charge_id} if self.charge_id else set()
        if self.charge:
            ids.add(self.charge.id)
        if self.intent and self.intent.latest_charge:
            ids.add(self.intent.latest_charge)
        ids |= {r.charge_id for r in self.refunds if r.charge_id}
        ids |= {d.charge_id for d in self.disputes if d.charge_id}
        if self.fee and self.fee.charge_id:
            ids.add(self.fee.charge_id)
        return ids


_FIRST_RELEASE = ("status", "amount", "captured", "card", "application_fee", "application_fee_refunded",
                  "charge_amount_refunded")
_OLD_DISPUTE = {"open": "needs_response", "won": "won", "lost": "lost"}
_OLD_CHARGE = {"succeeded": "succeeded", "processing": "pending", "pending": "pending", "failed": "failed"}
_OLD_SESSION = {"succeeded": "complete", "processing": "complete", "pending": "open", "failed": "failed",
                "canceled": "expired"}


def upgrade_first_release(data: dict) -> dict:
    """A fact normalised by the first release (flat figures) in today's shape, as far as it tells.

    The retained `customer-activity` topic still holds such facts and replays read them; the
    object the event was about is known from its type. `customers reconcile` refills the rest.
    """
    if not any(name in data for name in _FIRST_RELEASE) or any(k in data for k in ("intent", "charge", "session")):
        return data
    new = {k: v for k, v in data.items() if k not in _FIRST_RELEASE}
    kind, status, charge_id = str(data.get("stripe_event_type", "")), data.get("status"), data.get("charge_id")
    if kind.startswith("checkout.session.") and status:
        new["session"] = {"status": _OLD_SESSION.get(status, "open"), "paid": status == "succeeded",
                          "amount_total": data.get("amount")}
    elif kind.startswith("payment_intent.") and status:
        new["intent"] = {"status": status if status != "pending" else "requires_payment_method",
                         "amount": data.get("amount"), "amount_received": data.get("captured"),
                         "latest_charge": charge_id, "application_fee": data.get("application_fee")}
        if charge_id and data.get("card"):
            new["charge"] = {"id": charge_id, "card": data["card"]}
    elif kind.startswith("charge.") and not kind.startswith(("charge.refund.", "charge.dispute.")) and charge_id:
        charge_status = _OLD_CHARGE.get(status) if status else None
        new["charge"] = {"id": charge_id, "status": charge_status,
                         "captured": True if charge_status == "succeeded" else None,
                         "amount": data.get("amount"), "amount_captured": data.get("captured"),
                         "amount_refunded": data.get("charge_amount_refunded"),
                         "application_fee": data.get("application_fee"), "card": data.get("card")}
    elif kind.startswith("application_fee.") and charge_id:
        new["fee"] = {"id": f"fee-of-{charge_id}", "charge_id": charge_id, "amount": data.get("application_fee"),
                      "amount_refunded": data.get("application_fee_refunded")}
    new["refunds"] = [{**r, "charge_id": r.get("charge_id") or charge_id} for r in data.get("refunds") or []]
    new["disputes"] = [{**d, "charge_id": d.get("charge_id") or charge_id,
                        "status": _OLD_DISPUTE.get(d.get("status"), d.get("status"))}
                       for d in data.get("disputes") or []]
    return new


class StripeEventIgnored(_Fact):
    """A verified Stripe event of a type the projection does not use: recorded, counted, no more."""

    type: Literal["stripe.ignored"] = "stripe.ignored"
    stripe_event_id: str
    stripe_event_type: str
    occurred_at: datetime

    @property
    def kafka_key(self) -> str:
        return self.stripe_event_id


Activity = Annotated[Union[PaymentObserved, StripeEventIgnored], Field(discriminator="type")]
activity_adapter: TypeAdapter[Activity] = TypeAdapter(Activity)
