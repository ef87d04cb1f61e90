"""Normalised facts on the internal `customer-activity` topic.

A Stripe event becomes one `PaymentObserved` fact: what that event tells us about one payment
(identified by its payment intent, or checkout session, or charge when nothing better exists).
Facts are observations, not commands, so applying one twice or late changes nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

PaymentStatus = Literal["pending", "processing", "failed", "canceled", "succeeded"]
RefundStatus = Literal["pending", "requires_action", "succeeded", "failed", "canceled"]
DisputeStatus = Literal["open", "won", "lost"]


class _Fact(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Card(_Fact):
    brand: str | None = None
    last4: str | None = Field(default=None, pattern=r"^\d{4}$")
    exp_month: int | None = None
    exp_year: int | None = None


class RefundSeen(_Fact):
    id: str
    amount: int
    status: RefundStatus
    created_at: datetime | None = None


class DisputeSeen(_Fact):
    id: str
    amount: int
    status: DisputeStatus


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
    status: PaymentStatus | None = None
    amount: int | None = None
    currency: str | None = None
    captured: int | None = None
    card: Card | None = None
    application_fee: int | None = None
    application_fee_refunded: int | None = None
    charge_amount_refunded: int | None = None
    refunds: list[RefundSeen] = []
    disputes: list[DisputeSeen] = []
    created_at: datetime | None = None

    @property
    def kafka_key(self) -> str:
        return self.expert_id or self.payment_id


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
