"""Pure translation of a verified Stripe event into the payment fact the projection applies.

Only the card's brand, last four digits and expiry are read from a payment method; nothing
else of the card ever leaves this module.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Callable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from customers.events import normalise_email
from customers.facts import (Card, ChargeSeen, DisputeSeen, FeeSeen, IntentSeen, PaymentObserved, RefundSeen,
                             SessionSeen, StripeEventIgnored)


class NotAStripeEvent(ValueError):
    pass


def _ts(value: Any) -> datetime | None:
    return datetime.fromtimestamp(int(value), tz=timezone.utc) if isinstance(value, (int, float)) else None


def _id(value: Any) -> str | None:
    """An expandable field: either the id string or the expanded object."""
    if isinstance(value, dict):
        return value.get("id")
    return value if isinstance(value, str) and value else None


def _card(charge: Any) -> Card | None:
    if not isinstance(charge, dict):
        return None
    card = (charge.get("payment_method_details") or {}).get("card") or {}
    last4 = card.get("last4")
    if not (isinstance(last4, str) and len(last4) == 4 and last4.isdigit()):
        return None
    return Card(brand=card.get("brand"), last4=last4, exp_month=card.get("exp_month"), exp_year=card.get("exp_year"))


def _start(value: Any, zone: Any = None) -> datetime | None:
    """A booked start; one written without an offset is local time in the metadata's `timezone`."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        try:
            parsed = parsed.replace(tzinfo=ZoneInfo(zone) if isinstance(zone, str) and zone else timezone.utc)
        except (ZoneInfoNotFoundError, ValueError):
            parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


def correlation(metadata: Any) -> dict[str, Any]:
    """Hints from metadata: flat keys first, then the checkout's JSON `meeting` key."""
    if not isinstance(metadata, dict):
        return {}
    hints: dict[str, Any] = {}
    meeting: dict = {}
    if isinstance(metadata.get("meeting"), str):
        try:
            loaded = json.loads(metadata["meeting"])
            meeting = loaded if isinstance(loaded, dict) else {}
        except ValueError:
            meeting = {}
    expert = metadata.get("expert_id") or meeting.get("expert")
    email = metadata.get("customer_email") or meeting.get("guest")
    hints["expert_id"] = str(expert) if expert else None
    hints["meeting_id"] = metadata.get("meeting_id") or None
    hints["customer_email"] = normalise_email(email) if isinstance(email, str) and "@" in email else None
    hints["booked_start"] = _start(meeting.get("start"), meeting.get("timezone"))
    return hints


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _refund(obj: dict, charge_id: str | None = None) -> RefundSeen:
    return RefundSeen(id=obj["id"], charge_id=_id(obj.get("charge")) or charge_id, amount=int(obj.get("amount") or 0),
                      status=obj.get("status") or "pending", created_at=_ts(obj.get("created")))


def _refund_list(charge: dict) -> list[RefundSeen]:
    refunds = charge.get("refunds")
    data = refunds.get("data") if isinstance(refunds, dict) else None
    return [_refund(r, charge.get("id")) for r in data or [] if isinstance(r, dict) and r.get("id")]


def charge_seen(obj: dict, *, expired: bool = False) -> ChargeSeen:
    """A charge snapshot: its outcome, capture, its own refunded total and the card's safe fields."""
    return ChargeSeen(
        id=obj["id"], status=obj.get("status") if obj.get("status") in CHARGE_STATUSES else None,
        captured=obj.get("captured") if isinstance(obj.get("captured"), bool) else None, expired=expired,
        amount=_int(obj.get("amount")), amount_captured=_int(obj.get("amount_captured")),
        amount_refunded=_int(obj.get("amount_refunded")), application_fee=_int(obj.get("application_fee_amount")),
        card=_card(obj),
    )


def _from_session(obj: dict, event_type: str) -> dict:
    status = obj.get("status") if obj.get("status") in ("open", "complete", "expired") else "open"
    if event_type.endswith("async_payment_failed"):
        status = "failed"
    paid = obj.get("payment_status") == "paid" or event_type.endswith("async_payment_succeeded")
    return dict(
        payment_intent_id=_id(obj.get("payment_intent")),
        checkout_session_id=obj["id"],
        currency=obj.get("currency"),
        session=SessionSeen(status=status, paid=paid, amount_total=_int(obj.get("amount_total"))),
        created_at=_ts(obj.get("created")),
        **correlation(obj.get("metadata")),
    )


def _from_intent(obj: dict, event_type: str) -> dict:
    status = obj.get("status")
    if status not in INTENT_STATUSES:
        status = EVENT_INTENT_STATUS.get(event_type, "requires_payment_method")
    if event_type == "payment_intent.payment_failed":
        status = "failed"  # the intent itself is back to requires_payment_method
    latest = obj.get("latest_charge")
    listed = [c for c in (obj.get("charges") or {}).get("data") or [] if isinstance(c, dict) and c.get("id")]
    charge = latest if isinstance(latest, dict) else next((c for c in listed if c["id"] == _id(latest)), None)
    return dict(
        payment_intent_id=obj["id"],
        currency=obj.get("currency"),
        intent=IntentSeen(status=status, amount=_int(obj.get("amount")), amount_received=_int(obj.get("amount_received")),
                          latest_charge=_id(latest) or (charge or {}).get("id"),
                          application_fee=_int(obj.get("application_fee_amount"))),
        charge=charge_seen(charge) if charge and charge.get("id") else None,
        refunds=_refund_list(charge) if charge else [],
        created_at=_ts(obj.get("created")),
        **correlation(obj.get("metadata")),
    )


def _from_charge(obj: dict, event_type: str) -> dict:
    return dict(
        payment_intent_id=_id(obj.get("payment_intent")),
        charge_id=obj["id"],
        currency=obj.get("currency"),
        charge=charge_seen(obj, expired=event_type == "charge.expired"),
        refunds=_refund_list(obj),
        created_at=_ts(obj.get("created")),
        **correlation(obj.get("metadata")),
    )


def _from_refund(obj: dict, _event_type: str) -> dict:
    return dict(payment_intent_id=_id(obj.get("payment_intent")), charge_id=_id(obj.get("charge")),
                currency=obj.get("currency"), refunds=[_refund(obj)])


def _from_dispute(obj: dict, _event_type: str) -> dict:
    status = obj.get("status")
    if status not in DISPUTE_STATUSES:
        raise NotAStripeEvent(f"dispute {obj['id']} has an unknown status")
    return dict(payment_intent_id=_id(obj.get("payment_intent")), charge_id=_id(obj.get("charge")),
                currency=obj.get("currency"),
                disputes=[DisputeSeen(id=obj["id"], charge_id=_id(obj.get("charge")), amount=int(obj.get("amount") or 0),
                                      status=status)])


def _from_fee(obj: dict, _event_type: str) -> dict:
    charge = _id(obj.get("originating_transaction")) or _id(obj.get("charge"))
    return dict(charge_id=charge, currency=obj.get("currency"),
                fee=FeeSeen(id=obj["id"], charge_id=charge, amount=_int(obj.get("amount")),
                            amount_refunded=_int(obj.get("amount_refunded"))))


CHARGE_STATUSES = ("pending", "succeeded", "failed")
INTENT_STATUSES = ("requires_payment_method", "requires_confirmation", "requires_action", "processing",
                   "requires_capture", "canceled", "succeeded")
DISPUTE_STATUSES = ("warning_needs_response", "warning_under_review", "warning_closed", "needs_response",
                    "under_review", "won", "lost", "prevented", "charge_refunded")
EVENT_INTENT_STATUS = {
    "payment_intent.succeeded": "succeeded", "payment_intent.processing": "processing",
    "payment_intent.canceled": "canceled", "payment_intent.amount_capturable_updated": "requires_capture",
    "payment_intent.requires_action": "requires_action",
}

HANDLERS: dict[str, Callable[[dict, str], dict]] = {
    **dict.fromkeys(("checkout.session.completed", "checkout.session.async_payment_succeeded",
                     "checkout.session.async_payment_failed", "checkout.session.expired"), _from_session),
    **dict.fromkeys(("payment_intent.succeeded", "payment_intent.processing", "payment_intent.payment_failed",
                     "payment_intent.canceled", "payment_intent.amount_capturable_updated",
                     "payment_intent.requires_action"), _from_intent),
    **dict.fromkeys(("charge.succeeded", "charge.failed", "charge.pending", "charge.captured", "charge.expired",
                     "charge.refunded", "charge.updated"), _from_charge),
    **dict.fromkeys(("refund.created", "refund.updated", "refund.failed", "charge.refund.updated"), _from_refund),
    **dict.fromkeys(("charge.dispute.created", "charge.dispute.updated", "charge.dispute.closed",
                     "charge.dispute.funds_withdrawn", "charge.dispute.funds_reinstated"), _from_dispute),
    **dict.fromkeys(("application_fee.created", "application_fee.refunded"), _from_fee),
}


def check_event(event: Any) -> dict:
    """The minimal shape every Stripe event has; raises NotAStripeEvent otherwise."""
    if not isinstance(event, dict) or event.get("object") != "event":
        raise NotAStripeEvent("not a Stripe event object")
    if not isinstance(event.get("id"), str) or not isinstance(event.get("type"), str):
        raise NotAStripeEvent("a Stripe event needs an id and a type")
    obj = (event.get("data") or {}).get("object")
    if not isinstance(obj, dict):
        raise NotAStripeEvent("a Stripe event needs data.object")
    return obj


def object_key(event: dict) -> str:
    """The Kafka key of a Stripe event: the id of the object it is about."""
    obj = check_event(event)
    return str(obj.get("payment_intent") if isinstance(obj.get("payment_intent"), str) else obj.get("id") or event["id"])


def to_fact(event: dict) -> PaymentObserved | StripeEventIgnored:
    """The payment fact an event tells; types the projection does not use are only recorded."""
    obj = check_event(event)
    handler = HANDLERS.get(event["type"])
    occurred_at = _ts(event.get("created")) or datetime.fromtimestamp(0, tz=timezone.utc)
    if handler is None:
        return StripeEventIgnored(stripe_event_id=event["id"], stripe_event_type=event["type"],
                                  occurred_at=occurred_at)
    if not isinstance(obj.get("id"), str):
        raise NotAStripeEvent(f"{event['type']} without an object id")
    fields = {k: v for k, v in handler(obj, event["type"]).items() if v is not None}
    payment_id = fields.get("payment_intent_id") or fields.get("checkout_session_id") or fields.get("charge_id")
    if not payment_id:
        raise NotAStripeEvent(f"{event['type']} {obj['id']} names no payment")
    return PaymentObserved(
        stripe_event_id=event["id"],
        stripe_event_type=event["type"],
        occurred_at=occurred_at,
        payment_id=payment_id,
        **fields,
    )
