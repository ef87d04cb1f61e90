"""Pure rules for one payment, in Stripe's object model, built by joining what its events showed.

A payment is a payment intent (or a checkout session, or a lone charge until its intent is
known). It may have several charges: declined ones, and at most one that succeeded, which holds
the money. Refunds, disputes and the platform's application fee can only exist on that charge.

Stripe delivers at least once and in any order, and `created` cannot order events. So a
payment's state is a join of snapshots: `merge(a, b)` is commutative, associative and
idempotent, and `observe(state, fact) = merge(state, from_fact(fact))`. The same events in
any order, each delivered any number of times, give the same state; the figures are functions
of the state alone. No SQL, no clock, no I/O.

Registers that can move both ways (a payment intent's status, a charge's refunded total, the
metadata hints) keep the value with the greatest event time, ties broken by a fixed rank;
everything else only grows: statuses along their lifecycle, amounts, flags, maps by object id.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Iterable

from customers.facts import ChargeSeen, PaymentObserved

State = dict[str, Any]

# A payment intent's status is a register: a failed attempt can be followed by another one. Only
# `succeeded` and `canceled` are final; at the same second a failure outranks a wait.
INTENT_FINAL = {"succeeded", "canceled"}
INTENT_RANK = {"requires_payment_method": 0, "requires_confirmation": 1, "requires_action": 2, "failed": 3,
               "processing": 4, "requires_capture": 5, "canceled": 6, "succeeded": 6}
SESSION_RANK = {"open": 0, "complete": 1, "failed": 2, "expired": 2}
CHARGE_RANK = {None: 0, "pending": 1, "failed": 2, "succeeded": 3}
# pending/requires_action < succeeded < failed/canceled: a refund that fails after it succeeded is restored
REFUND_RANK = {"pending": 0, "requires_action": 0, "succeeded": 1, "failed": 2, "canceled": 2}
REFUND_VOID = {"failed", "canceled"}
# inquiries first, then chargebacks; every closing status is final
DISPUTE_RANK = {"warning_needs_response": 0, "warning_under_review": 1, "needs_response": 2, "under_review": 3,
                "warning_closed": 4, "prevented": 4, "charge_refunded": 4, "won": 4, "lost": 4}
DISPUTE_AT_STAKE = {"needs_response", "under_review", "lost"}  # a chargeback: the money was withdrawn

# the contract's payment_status, from least to most telling
PAYMENT_STATUSES = ["none", "failed", "pending", "processing", "succeeded", "partially_refunded", "refunded",
                    "disputed"]


# --- joins of single values --------------------------------------------------------------------


def _max(a, b):
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


def _min(a, b):
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def _any(a: bool | None, b: bool | None) -> bool | None:
    if a is None:
        return b
    if b is None:
        return a
    return a or b


def _ranked(a: str | None, b: str | None, rank: dict) -> str | None:
    if a is None or b is None:
        return a if b is None else b
    return max(a, b, key=lambda s: (rank[s], s))


def _latest(a: list | None, b: list | None) -> list | None:
    """A register `[time, ...]`: the greatest time wins, ties by the rest of the entry."""
    if a is None or b is None:
        return a if b is None else b
    return max(a, b, key=lambda e: tuple("" if v is None else v for v in e))


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(timezone.utc).isoformat() if value else None


# --- from one fact -----------------------------------------------------------------------------

_HINTS = ("expert_id", "meeting_id", "customer_email", "booked_start")


def _charge(seen: ChargeSeen, at: str) -> dict:
    return {
        "status": seen.status, "captured": seen.captured, "expired": seen.expired or None,
        "amount": seen.amount, "amount_captured": seen.amount_captured, "fee": seen.application_fee,
        "card": seen.card.model_dump() if seen.card and seen.card.last4 else None,
        # the charge's own refunded total at this event's time
        "refunded": [at, seen.amount_refunded] if seen.amount_refunded is not None else None,
        "failed_at": at if seen.status == "failed" else None,
    }


def from_fact(fact: PaymentObserved) -> State:
    at = _iso(fact.occurred_at)
    s: State = {
        "payment_intent_id": fact.payment_intent_id, "checkout_session_id": fact.checkout_session_id,
        "currency": fact.currency, "created_at": _iso(fact.created_at),
        "hints": {name: [at, _iso(v) if isinstance(v, datetime) else v]
                  for name in _HINTS if (v := getattr(fact, name)) is not None},
        "intent": None, "session": None, "charges": {}, "refunds": {}, "disputes": {}, "fees": {},
    }
    if fact.intent:
        i = fact.intent
        s["intent"] = {"status": [at, INTENT_RANK[i.status], i.status], "amount": i.amount,
                       "received": i.amount_received, "fee": i.application_fee,
                       "latest_charge": [at, i.latest_charge] if i.latest_charge else None}
    if fact.session:
        s["session"] = {"status": fact.session.status, "paid": fact.session.paid, "amount": fact.session.amount_total}
    for cid in fact.charge_ids():
        s["charges"][cid] = dict.fromkeys(_CHARGE)  # named, not yet seen
    if fact.charge:
        s["charges"][fact.charge.id] = _charge(fact.charge, at)
    for r in fact.refunds:
        s["refunds"][r.id] = {"charge": r.charge_id, "amount": r.amount, "status": r.status,
                              "created_at": _iso(r.created_at), "void_at": at if r.status in REFUND_VOID else None}
    for d in fact.disputes:
        s["disputes"][d.id] = {"charge": d.charge_id, "amount": d.amount, "status": d.status}
    if fact.fee:
        s["fees"][fact.fee.id] = {"charge": fact.fee.charge_id, "amount": fact.fee.amount,
                                  "refunded": fact.fee.amount_refunded}
    for name in ("charges", "refunds", "disputes", "fees"):
        s[name] = dict(sorted(s[name].items()))
    return s


def observe(state: State | None, fact: PaymentObserved) -> State:
    return merge(state, from_fact(fact))


# --- the join ----------------------------------------------------------------------------------


def _fields(a: dict | None, b: dict | None, how: dict) -> dict | None:
    if a is None and b is None:
        return None
    if a is None or b is None:
        return dict(a if b is None else b)
    return {name: join(a.get(name), b.get(name)) for name, join in how.items()}


def _map(a: dict, b: dict, how: dict) -> dict:
    """Objects by id, in id order: the stored JSON is the same bytes whatever the arrival order."""
    out = dict(a)
    for key, theirs in b.items():
        out[key] = _fields(out.get(key), theirs, how) if key in out else _fields(None, theirs, how)
    return {key: {name: out[key].get(name) for name in how} for key in sorted(out)}


def _card(a: dict | None, b: dict | None) -> dict | None:
    """One charge has one card; two different views of it (never seen) resolve the same way always."""
    if a is None or b is None:
        return a if b is None else b
    return max(a, b, key=lambda c: tuple(str(c.get(k)) for k in ("brand", "last4", "exp_month", "exp_year")))


def _intent_status(a: list | None, b: list | None) -> list | None:
    """Final statuses win whenever they were seen; otherwise the latest report."""
    if a is None or b is None:
        return a if b is None else b
    return max(a, b, key=lambda e: (e[2] in INTENT_FINAL, e[0], e[1], e[2]))


_INTENT = {"status": _intent_status, "amount": _max, "received": _max, "fee": _max, "latest_charge": _latest}
_SESSION = {"status": lambda a, b: _ranked(a, b, SESSION_RANK), "paid": _any, "amount": _max}
_CHARGE = {"status": lambda a, b: _ranked(a, b, CHARGE_RANK), "captured": _any, "expired": _any, "amount": _max,
           "amount_captured": _max, "fee": _max, "card": _card, "refunded": _latest, "failed_at": _max}
_REFUND = {"charge": _max, "amount": _max, "status": lambda a, b: _ranked(a, b, REFUND_RANK),
           "created_at": _min, "void_at": _min}
_DISPUTE = {"charge": _max, "amount": _max, "status": lambda a, b: _ranked(a, b, DISPUTE_RANK)}
_FEE = {"charge": _max, "amount": _max, "refunded": _max}


def merge(a: State | None, b: State | None) -> State:
    a, b = upgrade_state(a), upgrade_state(b)
    if not a:
        return dict(b or {})
    if not b:
        return dict(a)
    return {
        # one payment has one intent and one session: both names are the same wherever they are seen
        "payment_intent_id": _max(a.get("payment_intent_id"), b.get("payment_intent_id")),
        "checkout_session_id": _max(a.get("checkout_session_id"), b.get("checkout_session_id")),
        "currency": _max(a.get("currency"), b.get("currency")),
        "created_at": _min(a.get("created_at"), b.get("created_at")),
        "hints": {name: _latest(a["hints"].get(name), b["hints"].get(name))
                  for name in _HINTS if name in a["hints"] or name in b["hints"]},
        "intent": _fields(a.get("intent"), b.get("intent"), _INTENT),
        "session": _fields(a.get("session"), b.get("session"), _SESSION),
        "charges": _map(a["charges"], b["charges"], _CHARGE),
        "refunds": _map(a["refunds"], b["refunds"], _REFUND),
        "disputes": _map(a["disputes"], b["disputes"], _DISPUTE),
        "fees": _map(a["fees"], b["fees"], _FEE),
    }


def upgrade_state(s: State | None) -> State | None:
    """A row written by the first release (flat figures) as one snapshot of today's state.

    Best effort, so that a worker upgraded in place keeps going; `customers replay` rebuilds
    such payments exactly from their events.
    """
    if not s or "charges" in s:
        return s
    flat = {k: s.get(k) for k in ("payment_intent_id", "checkout_session_id", "charge_id", "expert_id", "meeting_id",
                                  "customer_email", "booked_start", "status", "amount", "captured", "card", "currency",
                                  "application_fee", "application_fee_refunded", "charge_amount_refunded", "created_at")}
    kind = "charge.updated" if flat["charge_id"] and flat["status"] == "succeeded" else "payment_intent.updated"
    fact = PaymentObserved.model_validate({
        **{k: v for k, v in flat.items() if v is not None}, "stripe_event_id": "first-release",
        "stripe_event_type": kind, "occurred_at": flat["created_at"] or "1970-01-01T00:00:00+00:00",
        "payment_id": flat["payment_intent_id"] or flat["checkout_session_id"] or flat["charge_id"] or "unknown",
        "refunds": [{"id": rid, **r} for rid, r in (s.get("refunds") or {}).items()],
        "disputes": [{"id": did, **d} for did, d in (s.get("disputes") or {}).items()],
    })
    state = from_fact(fact)
    if flat["application_fee_refunded"] and flat["charge_id"]:
        state["fees"][f"fee-of-{flat['charge_id']}"] = {"charge": flat["charge_id"], "amount": flat["application_fee"],
                                                         "refunded": flat["application_fee_refunded"]}
    return state


# --- what the state says -----------------------------------------------------------------------


def hint(s: State, name: str) -> Any:
    entry = (s.get("hints") or {}).get(name)
    return entry[1] if entry else None


def charge_ids(s: State) -> set[str]:
    return set(s.get("charges") or ())


def _intent_status_of(s: State) -> str | None:
    return s["intent"]["status"][2] if s.get("intent") and s["intent"].get("status") else None


def _latest_charge(s: State) -> str | None:
    entry = (s.get("intent") or {}).get("latest_charge")
    return entry[1] if entry else None


def money_charge(s: State) -> str | None:
    """The charge that succeeded: the intent's latest charge when it did, else the one that did."""
    charges = s.get("charges") or {}
    won = [cid for cid, c in charges.items() if c.get("status") == "succeeded"]
    latest = _latest_charge(s)
    if latest in won:
        return latest
    if won:  # never more than one in Stripe; still, decide by what the charges say, not their names
        return max(won, key=lambda cid: (bool(charges[cid].get("captured")), charges[cid].get("amount_captured") or 0,
                                         charges[cid].get("amount") or 0, cid))
    if _intent_status_of(s) == "succeeded" and latest:
        return latest
    return None


def _released(s: State) -> bool:
    """An authorisation that ended without capture: the intent was cancelled or the hold expired."""
    if _intent_status_of(s) == "canceled":
        return True
    session = s.get("session") or {}
    if session.get("status") == "expired" and not session.get("paid"):
        return True
    return any(c.get("expired") and not c.get("captured") for c in (s.get("charges") or {}).values())


def captured(s: State) -> int:
    """Money taken: a captured charge's `amount_captured`, or what a succeeded intent or paid checkout received."""
    seen: list[int] = []
    cid = money_charge(s)
    charge = (s.get("charges") or {}).get(cid) or {}
    if charge.get("captured") and charge.get("status") == "succeeded":
        seen.append(charge.get("amount_captured") or charge.get("amount") or 0)
    intent = s.get("intent") or {}
    if _intent_status_of(s) == "succeeded":
        seen.append(intent.get("received") or intent.get("amount") or 0)
    if seen:
        return max(seen)
    if _released(s):
        return 0
    session = s.get("session") or {}
    if session.get("paid") and session.get("status") == "complete":
        return session.get("amount") or 0
    return 0


def refunded(s: State) -> int:
    """What went back to the customer, from the charge's own total and the itemised refunds together.

    Since API version 2022-11-15 a `charge.refunded` carries `amount_refunded` but no list, and
    many endpoints see no `refund.*` events; other endpoints see refunds one by one. The charge's
    latest total counts every refund created by then and not failed by then; refunds created later
    are added, refunds that failed after it are taken off. Every arrival order gives one figure.
    """
    return _refunded(s, captured(s))


def _refunded(s: State, money: int) -> int:
    """`refunded`, given what was captured."""
    if money <= 0:
        return 0
    refunds = (s.get("refunds") or {}).values()
    live = [r for r in refunds if r.get("status") not in REFUND_VOID]
    itemised = sum(r["amount"] for r in live)
    snapshot = _snapshot(s)
    if snapshot is None:
        total = itemised
    else:
        at, total = snapshot
        for r in refunds:
            created = r.get("created_at")
            if r.get("status") in REFUND_VOID:
                if (created is None or created <= at) and (r.get("void_at") or at) > at:
                    total -= r["amount"]
            elif created is not None and created > at:
                total += r["amount"]
        total = max(total, itemised)
    return max(0, min(total, money))


def _snapshot(s: State) -> list | None:
    charges = s.get("charges") or {}
    cid = money_charge(s)
    if cid is not None:
        return (charges.get(cid) or {}).get("refunded")
    entries = [c["refunded"] for c in charges.values() if c.get("refunded") and c.get("status") != "failed"]
    found = None
    for entry in entries:
        found = _latest(found, entry)
    return found


def disputes_lost(s: State) -> int:
    return sum(d["amount"] for d in (s.get("disputes") or {}).values() if d.get("status") == "lost")


def spend(s: State) -> int:
    """What the customer really paid: money captured - refunds - disputes lost."""
    return figures(s)[2]


def platform_fee(s: State) -> int:
    """The application fee on the money charge, net of the part the platform refunded."""
    return _platform_fee(s) if captured(s) > 0 else 0


def figures(s: State) -> tuple[int, int, int, int, int]:
    """(captured, refunded, spend, platform fee, disputes lost) of one payment, each worked out once:
    the functions above, for the paths that need them all."""
    money = captured(s)
    if money <= 0:
        return 0, 0, 0, 0, disputes_lost(s)
    back, lost = _refunded(s, money), disputes_lost(s)
    return money, back, max(0, money - back - lost), _platform_fee(s), lost


def _platform_fee(s: State) -> int:
    charge = (s.get("charges") or {}).get(money_charge(s)) or {}
    fees = list((s.get("fees") or {}).values())
    amount = max([v for v in [charge.get("fee"), (s.get("intent") or {}).get("fee")] + [f.get("amount") for f in fees]
                  if v is not None], default=0)
    back = max([f.get("refunded") or 0 for f in fees], default=0)
    return max(0, amount - back)


def expert_revenue(s: State) -> int:
    _money, _back, paid, fee, _lost = figures(s)
    return paid - fee


def lifecycle(s: State) -> str:
    """Where the payment stands before refunds and disputes: succeeded, canceled, requires_capture,
    processing, failed or pending."""
    if captured(s) > 0:
        return "succeeded"
    if _released(s):
        return "canceled"
    charges = (s.get("charges") or {}).values()
    status = _intent_status_of(s)
    session = s.get("session") or {}
    if status == "requires_capture" or any(c.get("status") == "succeeded" and not c.get("captured") for c in charges):
        return "requires_capture"
    if status == "processing" or any(c.get("status") == "pending" for c in charges) or (
            session.get("status") == "complete" and not session.get("paid")):
        return "processing"
    failures = [c["failed_at"] for c in charges if c.get("failed_at")]
    if status == "failed" or session.get("status") == "failed":
        return "failed"
    if failures:
        # a new attempt asked for after the last decline is still in progress
        reported = s["intent"]["status"][0] if status else None
        return "pending" if reported and reported > max(failures) else "failed"
    return "pending"


def payment_status(s: State) -> str:
    """The contract's payment_status of one payment."""
    stage = lifecycle(s)
    if stage == "canceled":
        return "failed"  # a released hold: nothing was paid
    if stage == "requires_capture":
        return "pending"  # authorised, not yet taken
    if stage != "succeeded":
        return stage
    if any(d.get("status") in DISPUTE_AT_STAKE for d in (s.get("disputes") or {}).values()):
        return "disputed"
    back = refunded(s)
    if back <= 0:
        return "succeeded"
    return "refunded" if back >= captured(s) else "partially_refunded"


def card(s: State) -> dict | None:
    """The card of the charge that succeeded; when none did, of the intent's latest attempt."""
    charges = s.get("charges") or {}
    cid = money_charge(s)
    if cid is not None or captured(s) > 0:
        return (charges.get(cid) or {}).get("card")  # never a declined attempt's card
    latest = _latest_charge(s)
    if latest is not None:
        return (charges.get(latest) or {}).get("card")
    if len(charges) == 1:
        return next(iter(charges.values())).get("card")
    return None


def amount(s: State) -> int:
    intent, session = s.get("intent") or {}, s.get("session") or {}
    charge = (s.get("charges") or {}).get(money_charge(s)) or {}
    return intent.get("amount") or session.get("amount") or charge.get("amount") or captured(s)


def undecided(s: State) -> bool:
    """Refunds or disputes are known but the charge's own figures never were: ask Stripe."""
    if not (s.get("refunds") or s.get("disputes")):
        return False
    return _snapshot(s) is None


def undecided_charges(s: State) -> set[str]:
    """The charges whose own figures would settle an undecided payment."""
    if not undecided(s):
        return set()
    named = {r.get("charge") for r in (s.get("refunds") or {}).values()}
    named |= {d.get("charge") for d in (s.get("disputes") or {}).values()}
    return {cid for cid in named if cid}


def refund_list(s: State) -> list[tuple[str, dict]]:
    """Refunds newest first."""
    return sorted((s.get("refunds") or {}).items(), key=lambda x: (x[1].get("created_at") or "", x[0]), reverse=True)


def ids(s: State, payment_id: str) -> set[str]:
    """Every id Stripe may name this payment by."""
    found = {payment_id} | charge_ids(s)
    found |= {v for v in (s.get("payment_intent_id"), s.get("checkout_session_id")) if v}
    return found


def summed(states: Iterable[State]) -> dict[str, dict[str, int]]:
    """Spend, expert revenue and refunds per currency over payments that took money."""
    out: dict[str, dict[str, int]] = {"spend": {}, "revenue": {}, "refunded": {}}
    for s in states:
        currency = s.get("currency")
        if not currency:
            continue
        money, back, paid, fee, _lost = figures(s)
        if money <= 0:
            continue
        for name, figure in (("spend", paid), ("revenue", paid - fee), ("refunded", back)):
            out[name][currency] = out[name].get(currency, 0) + figure
    return out
