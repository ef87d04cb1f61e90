"""Builders of realistic booking events and Stripe events (shapes of Stripe's published objects).

Used by the demo stream, the tests and the benchmarks.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any


def rid(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


def iso(value: datetime) -> str:
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def booking_created(expert_id: str, meeting_id: str, email: str, name: str, start: datetime, *,
                    minutes: int = 60, amount: int = 7000, currency: str = "eur", service_id: str = "svc_1",
                    service_name: str = "Consultation", phone: str | None = None, tz: str = "Europe/Lisbon",
                    payment_intent_id: str | None = None, checkout_session_id: str | None = None,
                    occurred_at: datetime | None = None, event_id: str | None = None) -> dict[str, Any]:
    occurred = occurred_at or start - timedelta(days=3)
    return {
        "event_id": event_id or rid("evt_b"), "type": "booking.created", "schema_version": 1,
        "occurred_at": iso(occurred), "expert_id": expert_id, "meeting_id": meeting_id,
        "customer": {"email": email, "name": name, **({"phone": phone} if phone else {})},
        "service": {"id": service_id, "name": service_name},
        "start_time": iso(start), "end_time": iso(start + timedelta(minutes=minutes)), "timezone": tz,
        "price": {"amount": amount, "currency": currency},
        "payment": {k: v for k, v in (("payment_intent_id", payment_intent_id),
                                      ("checkout_session_id", checkout_session_id)) if v},
        "created_at": iso(occurred),
    }


def booking_event(kind: str, expert_id: str, meeting_id: str, occurred_at: datetime, **fields) -> dict[str, Any]:
    return {"event_id": rid("evt_b"), "type": kind, "schema_version": 1, "occurred_at": iso(occurred_at),
            "expert_id": expert_id, "meeting_id": meeting_id, **fields}


def meeting_metadata(expert_id: str, email: str, name: str, start: datetime, service_id: str = "svc_1",
                     minutes: int = 60) -> dict[str, str]:
    """The JSON-string metadata the platform's checkout writes today."""
    return {"meeting": json.dumps({"id": service_id, "expert": expert_id, "guest": email, "guestName": name,
                                   "start": iso(start), "dur": minutes, "timezone": "Europe/Lisbon"})}


def stripe_event(kind: str, obj: dict[str, Any], created: int | None = None) -> dict[str, Any]:
    return {
        "id": rid("evt"), "object": "event", "api_version": "2024-06-20",
        "created": created or int(datetime.now(timezone.utc).timestamp()),
        "data": {"object": obj}, "livemode": False, "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None}, "type": kind,
    }


def card_details(brand: str = "visa", last4: str = "4242") -> dict[str, Any]:
    return {"card": {"brand": brand, "last4": last4, "exp_month": 8, "exp_year": 2030, "country": "US",
                     "funding": "credit", "network": brand, "three_d_secure": None, "wallet": None,
                     "checks": {"cvc_check": "pass"}}, "type": "card"}


def payment_intent(pi: str, amount: int, status: str, *, currency: str = "eur", metadata: dict | None = None,
                   fee: int | None = None, charge: str | None = None, created: int = 1_700_000_000) -> dict:
    return {"id": pi, "object": "payment_intent", "amount": amount, "currency": currency,
            "amount_received": amount if status == "succeeded" else 0, "status": status,
            "application_fee_amount": fee, "latest_charge": charge, "metadata": metadata or {},
            "created": created, "livemode": False, "payment_method_types": ["card"],
            "transfer_data": {"destination": "acct_expert"} if fee is not None else None}


def charge(ch: str, pi: str, amount: int, *, currency: str = "eur", refunded: int = 0, refunds: list | None = None,
           fee: int | None = None, status: str = "succeeded", brand: str = "visa", last4: str = "4242",
           created: int = 1_700_000_000) -> dict:
    obj = {"id": ch, "object": "charge", "amount": amount, "amount_captured": amount, "amount_refunded": refunded,
           "currency": currency, "captured": True, "paid": status == "succeeded", "status": status,
           "payment_intent": pi, "application_fee_amount": fee, "metadata": {}, "created": created,
           "refunded": refunded >= amount, "payment_method_details": card_details(brand, last4),
           "billing_details": {"address": None, "email": None, "name": None, "phone": None}}
    obj["refunds"] = {"object": "list", "data": refunds or [], "has_more": False, "url": f"/v1/charges/{ch}/refunds"}
    return obj


def refund(re_id: str, ch: str, pi: str, amount: int, status: str = "succeeded", *, currency: str = "eur",
           created: int = 1_700_000_100) -> dict:
    return {"id": re_id, "object": "refund", "amount": amount, "charge": ch, "payment_intent": pi,
            "currency": currency, "status": status, "created": created, "metadata": {}, "reason": None}


def dispute(dp: str, ch: str, pi: str, amount: int, status: str, *, currency: str = "eur") -> dict:
    return {"id": dp, "object": "dispute", "amount": amount, "charge": ch, "payment_intent": pi,
            "currency": currency, "status": status, "reason": "general", "created": 1_700_000_200,
            "is_charge_refundable": False, "metadata": {}}


def application_fee(fee_id: str, ch: str, amount: int, refunded: int, *, currency: str = "eur") -> dict:
    return {"id": fee_id, "object": "application_fee", "amount": amount, "amount_refunded": refunded,
            "charge": rid("py"), "originating_transaction": ch, "currency": currency, "refunded": refunded >= amount,
            "account": "acct_expert", "created": 1_700_000_300,
            "refunds": {"object": "list", "data": [], "has_more": False, "url": f"/v1/application_fees/{fee_id}/refunds"}}


def checkout_session(cs: str, pi: str | None, amount: int, status: str, payment_status: str, *,
                     currency: str = "eur", metadata: dict | None = None) -> dict:
    return {"id": cs, "object": "checkout.session", "amount_total": amount, "currency": currency,
            "payment_intent": pi, "payment_status": payment_status, "status": status, "mode": "payment",
            "metadata": metadata or {}, "created": 1_700_000_000}
