"""Pure translation of a verified Stripe event into the payment fact the projection applies.

Only the card's brand, last four digits and expiry are read from a payment method; nothing
else of the card ever leaves this module.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Callable

from customers.events import normalise_email
from customers.facts import Card, DisputeSeen, PaymentObserved, RefundSeen, StripeEventIgnored


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


def _start(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.astimezone(timezone.utc) if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


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
    hints["booked_start"] = _start(meeting.get("start"))
    return hints


def _refund(obj: dict) -> RefundSeen:
    return RefundSeen(id=obj["id"], amount=int(obj.get("amount") or 0), status=obj.get("status") or "pending",
                      created_at=_ts(obj.get("created")))


def _refund_list(charge: dict) -> list[RefundSeen]:
    refunds = charge.get("refunds")
    data = refunds.get("data") if isinstance(refunds, dict) else None
    return [_refund(r) for r in data or [] if isinstance(r, dict) and r.get("id")]


def _from_session(obj: dict, status: str | None) -> dict:
    paid = obj.get("payment_status") == "paid"
    if status == "completed":
        status = "succeeded" if paid else "processing"
    return dict(
        payment_intent_id=_id(obj.get("payment_intent")),
        checkout_session_id=obj["id"],
        status=status,
        amount=obj.get("amount_total"),
        currency=obj.get("currency"),
        captured=obj.get("amount_total") if status == "succeeded" else None,
        created_at=_ts(obj.get("created")),
        **correlation(obj.get("metadata")),
    )


def _from_intent(obj: dict, status: str) -> dict:
    latest = obj.get("latest_charge")
    charges = (obj.get("charges") or {}).get("data") or []
    charge = latest if isinstance(latest, dict) else (charges[0] if charges else None)
    return dict(
        payment_intent_id=obj["id"],
        charge_id=_id(latest) or (charge or {}).get("id"),
        status=status,
        amount=obj.get("amount"),
        currency=obj.get("currency"),
        captured=obj.get("amount_received") if status == "succeeded" else None,
        application_fee=obj.get("application_fee_amount"),
        card=_card(charge),
        created_at=_ts(obj.get("created")),
        **correlation(obj.get("metadata")),
    )


def _from_charge(obj: dict) -> dict:
    status = {"succeeded": "succeeded", "pending": "processing", "failed": "failed"}.get(obj.get("status"))
    return dict(
        payment_intent_id=_id(obj.get("payment_intent")),
        charge_id=obj["id"],
        status=status,
        amount=obj.get("amount"),
        currency=obj.get("currency"),
        captured=obj.get("amount_captured") if status == "succeeded" else None,
        application_fee=obj.get("application_fee_amount"),
        charge_amount_refunded=obj.get("amount_refunded"),
        refunds=_refund_list(obj),
        card=_card(obj),
        created_at=_ts(obj.get("created")),
        **correlation(obj.get("metadata")),
    )


def _from_refund(obj: dict) -> dict:
    return dict(payment_intent_id=_id(obj.get("payment_intent")), charge_id=_id(obj.get("charge")),
                currency=obj.get("currency"), refunds=[_refund(obj)])


def _from_dispute(obj: dict) -> dict:
    raw = obj.get("status")
    status = raw if raw in ("won", "lost") else "open"
    return dict(payment_intent_id=_id(obj.get("payment_intent")), charge_id=_id(obj.get("charge")),
                currency=obj.get("currency"),
                disputes=[DisputeSeen(id=obj["id"], amount=int(obj.get("amount") or 0), status=status)])


def _from_fee(obj: dict) -> dict:
    return dict(charge_id=_id(obj.get("originating_transaction")) or _id(obj.get("charge")),
                currency=obj.get("currency"), application_fee=obj.get("amount"),
                application_fee_refunded=obj.get("amount_refunded"))


HANDLERS: dict[str, Callable[[dict], dict]] = {
    "checkout.session.completed": lambda o: _from_session(o, "completed"),
    "checkout.session.async_payment_succeeded": lambda o: _from_session(o, "succeeded"),
    "checkout.session.async_payment_failed": lambda o: _from_session(o, "failed"),
    "checkout.session.expired": lambda o: _from_session(o, "canceled"),
    "payment_intent.succeeded": lambda o: _from_intent(o, "succeeded"),
    "payment_intent.processing": lambda o: _from_intent(o, "processing"),
    "payment_intent.payment_failed": lambda o: _from_intent(o, "failed"),
    "payment_intent.canceled": lambda o: _from_intent(o, "canceled"),
    "charge.succeeded": _from_charge,
    "charge.refunded": _from_charge,
    "refund.created": _from_refund,
    "refund.updated": _from_refund,
    "refund.failed": _from_refund,
    "charge.refund.updated": _from_refund,
    "charge.dispute.created": _from_dispute,
    "charge.dispute.closed": _from_dispute,
    "application_fee.refunded": _from_fee,
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
    fields = {k: v for k, v in handler(obj).items() if v is not None}
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
