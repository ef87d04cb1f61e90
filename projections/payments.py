"""Pure rules for one payment: a state built by merging what Stripe's events tell about it.

Stripe delivers at least once and in any order, and `created` cannot order events. So a
payment's state is a join of observations: `merge(a, b)` is commutative, associative and
idempotent, and `observe(state, fact) = merge(state, from_fact(fact))`. The same events in
any order, each delivered any number of times, give the same state.

* status: the furthest along of pending < processing < failed < canceled < succeeded;
* refunds: one entry per refund id, its status the furthest along of
  pending/requires_action < succeeded < failed/canceled (a refund that fails after it
  succeeded is restored);
* disputes: one entry per dispute id, open < won/lost;
* amounts: the largest seen (Stripe's figures for one object only grow).
"""

from __future__ import annotations

from typing import Any

from customers.facts import PaymentObserved

PAYMENT_RANK = {"pending": 0, "processing": 1, "failed": 2, "canceled": 3, "succeeded": 4}
REFUND_RANK = {"pending": 0, "requires_action": 0, "succeeded": 1, "failed": 2, "canceled": 2}
DISPUTE_RANK = {"open": 0, "won": 1, "lost": 1}
REFUND_VOID = {"failed", "canceled"}

State = dict[str, Any]

_MAX_FIELDS = ("amount", "captured", "application_fee", "application_fee_refunded", "charge_amount_refunded")
_ANY_FIELDS = ("currency", "payment_intent_id", "checkout_session_id", "charge_id",
               "expert_id", "meeting_id", "customer_email", "booked_start")


def _max(a, b):
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


def _ranked(a: str | None, b: str | None, rank: dict[str, int]) -> str | None:
    if a is None or b is None:
        return a or b
    return max(a, b, key=lambda s: (rank[s], s))


def _min(a, b):
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def from_fact(fact: PaymentObserved) -> State:
    s: State = {
        "status": fact.status,
        "created_at": fact.created_at.isoformat() if fact.created_at else None,
        "card": fact.card.model_dump() if fact.card and fact.card.last4 else None,
        "refunds": {
            r.id: {"amount": r.amount, "status": r.status,
                   "created_at": r.created_at.isoformat() if r.created_at else None}
            for r in fact.refunds
        },
        "disputes": {d.id: {"amount": d.amount, "status": d.status} for d in fact.disputes},
    }
    for name in _MAX_FIELDS:
        s[name] = getattr(fact, name)
    for name in _ANY_FIELDS:
        value = getattr(fact, name)
        s[name] = value.isoformat() if hasattr(value, "isoformat") else value
    return s


def merge(a: State | None, b: State | None) -> State:
    if not a:
        return dict(b or {})
    if not b:
        return dict(a)
    out: State = {
        "status": _ranked(a.get("status"), b.get("status"), PAYMENT_RANK),
        "created_at": _min(a.get("created_at"), b.get("created_at")),
        "card": _card(a.get("card"), b.get("card")),
        "refunds": _merge_map(a.get("refunds", {}), b.get("refunds", {}), REFUND_RANK),
        "disputes": _merge_map(a.get("disputes", {}), b.get("disputes", {}), DISPUTE_RANK),
    }
    for name in _MAX_FIELDS:
        out[name] = _max(a.get(name), b.get(name))
    for name in _ANY_FIELDS:
        out[name] = _max(a.get(name), b.get(name))
    return out


def _card(a: dict | None, b: dict | None) -> dict | None:
    if a is None or b is None:
        return a or b
    return max(a, b, key=lambda c: tuple(str(c.get(k)) for k in ("brand", "last4", "exp_month", "exp_year")))


def _merge_map(a: dict, b: dict, rank: dict[str, int]) -> dict:
    out = dict(a)
    for key, theirs in b.items():
        ours = out.get(key)
        if ours is None:
            out[key] = dict(theirs)
            continue
        out[key] = {
            "amount": max(ours["amount"], theirs["amount"]),
            "status": _ranked(ours["status"], theirs["status"], rank),
            **({"created_at": _min(ours.get("created_at"), theirs.get("created_at"))} if "created_at" in ours or "created_at" in theirs else {}),
        }
    return out


def observe(state: State | None, fact: PaymentObserved) -> State:
    return merge(state, from_fact(fact))


# --- figures ---------------------------------------------------------------------------------


def refunded(s: State) -> int:
    items = s.get("refunds") or {}
    if items:
        return sum(r["amount"] for r in items.values() if r["status"] not in REFUND_VOID)
    return s.get("charge_amount_refunded") or 0


def disputes_lost(s: State) -> int:
    return sum(d["amount"] for d in (s.get("disputes") or {}).values() if d["status"] == "lost")


def captured(s: State) -> int:
    if s.get("status") != "succeeded":
        return 0
    return s.get("captured") or s.get("amount") or 0


def spend(s: State) -> int:
    """What the customer really paid: succeeded charge - refunds - disputes lost."""
    if s.get("status") != "succeeded":
        return 0
    return captured(s) - refunded(s) - disputes_lost(s)


def platform_fee(s: State) -> int:
    if s.get("status") != "succeeded":
        return 0
    return (s.get("application_fee") or 0) - (s.get("application_fee_refunded") or 0)


def expert_revenue(s: State) -> int:
    return spend(s) - platform_fee(s)


def payment_status(s: State) -> str:
    """The contract's payment_status of one payment."""
    status = s.get("status") or "pending"
    if status == "canceled":
        return "failed"
    if status != "succeeded":
        return status
    if any(d["status"] in ("open", "lost") for d in (s.get("disputes") or {}).values()):
        return "disputed"
    back = refunded(s)
    if back <= 0:
        return "succeeded"
    return "refunded" if back >= captured(s) else "partially_refunded"


def amount(s: State) -> int:
    return s.get("amount") or s.get("captured") or 0
