"""Whole Stripe payment histories, told as the events Stripe sends, with the truth beside them.

A history is simulated step by step the way Stripe's objects move (declined attempts, an
authorisation captured in full or in part or released, refunds that stay pending, succeed,
fail or are cancelled, a dispute along its lifecycle, application-fee refunds), each step one or
more events at its own time. The truth (what Stripe's dashboard shows at the end) is computed
from the simulation here, never from the project's rules. `knows(...)` says whether a subset of
event types still carries each figure, as an endpoint subscribed to only those would see it.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any

from testing import samples as s

T0 = 1_767_000_000  # seconds; each step of a history is a minute after the one before
VOID = {"failed", "canceled"}
AT_STAKE = {"needs_response", "under_review", "lost"}
CHARGE_TYPES = ("charge.succeeded", "charge.failed", "charge.captured", "charge.expired", "charge.refunded")
REFUND_TYPES = ("refund.created", "refund.updated", "refund.failed", "charge.refund.updated")


@dataclass
class Refund:
    id: str
    amount: int
    status: str  # as it ends
    created: int
    reported: dict[str, list[str]] = field(default_factory=dict)  # status -> event types that told it


@dataclass
class History:
    pi: str
    currency: str
    amount: int
    fee: int
    metadata: dict[str, str]
    outcome: str = "captured"  # captured | released | declined | pending
    captured: int = 0
    card: dict | None = None
    card_charge: str | None = None
    charges: list[str] = field(default_factory=list)
    refunds: list[Refund] = field(default_factory=list)
    dispute: tuple[str, int, list[tuple[str, str]]] | None = None  # id, amount, [(status, event type)]
    fee_refunded: int = 0
    events: list[tuple[str, dict, int]] = field(default_factory=list)  # (type, object, created)
    clock: int = T0
    manual: bool = False
    auto_card_charge: bool = False

    def at(self) -> int:
        self.clock += 60
        return self.clock

    def emit(self, kind: str, obj: dict, when: int | None = None) -> None:
        self.events.append((kind, json.loads(json.dumps(obj)), when or self.clock))

    # --- the truth ---------------------------------------------------------------------------

    def refunded(self) -> int:
        return sum(r.amount for r in self.refunds if r.status not in VOID) if self.captured else 0

    def lost(self) -> int:
        if self.dispute and self.dispute[2][-1][0] == "lost":
            return self.dispute[1]
        return 0

    def spend(self) -> int:
        return max(0, self.captured - self.refunded() - self.lost()) if self.captured else 0

    def platform_fee(self) -> int:
        return self.fee - self.fee_refunded if self.captured else 0

    def revenue(self) -> int:
        return self.spend() - self.platform_fee()

    def payment_status(self) -> str:
        if self.outcome == "pending":
            return "pending"
        if self.outcome in ("released", "declined"):
            return "failed"
        if self.dispute and self.dispute[2][-1][0] in AT_STAKE:
            return "disputed"
        back = self.refunded()
        return "succeeded" if back == 0 else "refunded" if back >= self.captured else "partially_refunded"

    # --- what a subscription subset still tells -----------------------------------------------

    def knows_money(self, types: set[str]) -> bool:
        if self.outcome != "captured":
            return True  # nothing was taken, whatever is seen
        capture = "payment_intent.succeeded" in types or "charge.captured" in types or (
            not self.manual and ("charge.succeeded" in types or "checkout.session.completed" in types))
        fee = not self.fee or bool(types & {"payment_intent.succeeded", "charge.succeeded", "charge.captured",
                                            "payment_intent.amount_capturable_updated"})
        fee_back = not self.fee_refunded or "application_fee.refunded" in types
        refunds = not self.refunds or (bool(types & {"charge.refunded", "refund.created"}) and all(
            set(r.reported.get(r.status, [])) & types for r in self.refunds if r.status in VOID))
        dispute = not self.dispute or self.dispute[2][-1][1] in types
        return capture and fee and fee_back and refunds and dispute

    def knows_status(self, types: set[str]) -> bool:
        if not self.knows_money(types):
            return False
        if self.outcome == "released":
            return bool(types & {"payment_intent.canceled", "charge.expired"})
        if self.outcome == "declined":
            return bool(types & {"charge.failed", "payment_intent.payment_failed"})
        if self.outcome == "pending":
            return "payment_intent.requires_action" in types
        return True

    def knows_card(self, types: set[str]) -> bool:
        if self.outcome in ("captured", "released"):
            return bool(types & {"charge.succeeded", "charge.captured", "charge.expired", "charge.refunded"}) or (
                self.auto_card_charge and "payment_intent.succeeded" in types)
        naming = {"payment_intent.payment_failed"} | ({"payment_intent.requires_action"} if self.outcome == "pending"
                                                       else set())  # the events that name the latest attempt
        latest = len(self.charges) == 1 or bool(types & naming)
        return "charge.failed" in types and latest


def _charge(h: History, ch: str, *, status: str, captured: bool, amount_captured: int, refunded: int = 0,
            card: dict | None = None) -> dict:
    obj = s.charge(ch, h.pi, h.amount, currency=h.currency, fee=h.fee or None, status=status,
                   brand=card["brand"], last4=card["last4"], created=h.clock)
    obj.update(captured=captured, amount_captured=amount_captured, amount_refunded=refunded,
               refunded=captured and refunded >= amount_captured > 0)
    obj.pop("refunds")  # API versions since 2022-11-15 list no refunds on a charge
    return obj


def _intent(h: History, status: str, *, received: int = 0, charge: str | None = None) -> dict:
    obj = s.payment_intent(h.pi, h.amount, status, currency=h.currency, metadata=h.metadata, fee=h.fee or None,
                           charge=charge, created=T0)
    obj["amount_received"] = received
    return obj


def generate(rng: random.Random, pi: str, *, currency: str = "eur", metadata: dict | None = None,
             amount: int | None = None, checkout: tuple[str, dict] | None = None) -> History:
    """One payment's whole life, drawn from `rng`; with `checkout` (session id, its metadata), one
    paid through the platform's Checkout, which always completes its session."""
    amount = amount or rng.choice([4500, 6000, 7500, 9000, 12000])
    fee = amount * rng.choice([0, 10, 15, 20]) // 100
    h = History(pi=pi, currency=currency, amount=amount, fee=fee, metadata=metadata or {})
    cards = [{"brand": b, "last4": f"{rng.randrange(10000):04d}"} for b in ("visa", "mastercard", "amex")]
    h.outcome = "captured" if checkout else rng.choices(["captured", "released", "declined", "pending"],
                                                         [70, 10, 10, 10])[0]
    session_id, session_meta = checkout or (f"cs_{pi}", h.metadata)
    h.manual = rng.random() < 0.3 or h.outcome == "released"
    h.at()
    if rng.random() < 0.3:
        h.emit("payment_intent.requires_action", _intent(h, "requires_action"))
    declines = rng.randint(1, 2) if h.outcome in ("declined", "pending") else rng.choice([0, 0, 1, 2])
    for n in range(declines):
        ch, card = f"ch_{pi}_d{n}", cards[n % 3]
        h.charges.append(ch)
        h.at()
        h.emit("charge.failed", _charge(h, ch, status="failed", captured=False, amount_captured=0, card=card))
        h.emit("payment_intent.payment_failed", _intent(h, "requires_payment_method", charge=ch))
        h.card, h.card_charge = card, ch  # no charge succeeded: the latest attempt's card
    if h.outcome == "declined":
        return h
    if h.outcome == "pending":
        h.at()
        h.emit("payment_intent.requires_action", _intent(h, "requires_action", charge=h.charges[-1]))
        return h
    ch, card = f"ch_{pi}_ok", cards[2]
    h.charges.append(ch)
    h.card, h.card_charge = card, ch
    h.at()
    if not h.manual:
        h.captured = amount
        h.emit("charge.succeeded", _charge(h, ch, status="succeeded", captured=True, amount_captured=amount, card=card))
        intent = _intent(h, "succeeded", received=amount, charge=ch)
        if rng.random() < 0.3:  # some integrations expand the latest charge on the intent
            intent["latest_charge"] = _charge(h, ch, status="succeeded", captured=True, amount_captured=amount,
                                              card=card)
            h.auto_card_charge = True
        h.emit("payment_intent.succeeded", intent)
        if checkout or rng.random() < 0.5:
            h.emit("checkout.session.completed", s.checkout_session(session_id, pi, amount, "complete", "paid",
                                                                    currency=currency, metadata=session_meta))
    else:
        h.emit("charge.succeeded", _charge(h, ch, status="succeeded", captured=False, amount_captured=0, card=card))
        h.emit("payment_intent.amount_capturable_updated", _intent(h, "requires_capture", charge=ch))
        if checkout:  # Checkout completes once the card is authorised; nothing is paid yet
            h.emit("checkout.session.completed", s.checkout_session(session_id, pi, amount, "complete", "unpaid",
                                                                    currency=currency, metadata=session_meta))
        h.at()
        if h.outcome == "released":
            if rng.random() < 0.5:  # the platform cancels: Stripe releases the hold and marks it refunded
                h.emit("payment_intent.canceled", _intent(h, "canceled", charge=ch))
                h.emit("charge.refunded", _charge(h, ch, status="succeeded", captured=False, amount_captured=0,
                                                  refunded=amount, card=card))
            else:  # the authorisation lapses
                h.emit("charge.expired", _charge(h, ch, status="succeeded", captured=False, amount_captured=0,
                                                 card=card))
                h.emit("payment_intent.canceled", _intent(h, "canceled", charge=ch))
            return h
        h.captured = amount if rng.random() < 0.6 else amount * rng.choice([50, 80]) // 100
        h.emit("charge.captured", _charge(h, ch, status="succeeded", captured=True, amount_captured=h.captured,
                                          card=card))
        h.emit("payment_intent.succeeded", _intent(h, "succeeded", received=h.captured, charge=ch))
    _after_capture(rng, h, ch, card)
    return h


def _after_capture(rng: random.Random, h: History, ch: str, card: dict) -> None:
    """Refunds (some failing or cancelled later), application-fee refunds and a dispute."""
    live_total = 0
    remaining = h.captured
    for n in range(rng.choice([0, 0, 1, 1, 2, 3])):
        part = remaining if rng.random() < 0.25 else remaining // rng.choice([3, 4])
        if part <= 0:
            break
        h.at()
        r = Refund(id=f"re_{h.pi}_{n}", amount=part, status=rng.choice(["succeeded", "succeeded", "pending", "failed",
                                                                         "canceled"]), created=h.clock)
        first = "pending" if r.status != "succeeded" or rng.random() < 0.5 else "succeeded"
        h.refunds.append(r)
        live_total += part
        remaining -= part
        pi_named = h.pi if rng.random() < 0.7 else None
        h.emit("refund.created", _refund(h, r, first, pi_named))
        h.emit("charge.refunded", _charge(h, ch, status="succeeded", captured=True, amount_captured=h.captured,
                                          refunded=live_total, card=card))
        if r.status == "pending":
            continue
        if first == "pending" or r.status in VOID:
            h.at()
            told = r.status
            if r.status == "failed" and rng.random() < 0.4 and first == "pending":
                # succeeded first, failed days later: the money comes back to the balance
                h.emit("refund.updated", _refund(h, r, "succeeded", pi_named))
                h.emit("charge.refund.updated", _refund(h, r, "succeeded", pi_named))
                h.at()
            kinds = ["refund.updated", "charge.refund.updated"] + (["refund.failed"] if told == "failed" else [])
            for kind in kinds:
                h.emit(kind, _refund(h, r, told, pi_named))
            r.reported[told] = kinds
        if r.status in VOID:
            live_total -= part
            remaining += part
    if h.fee and h.refunded() and rng.random() < 0.6:
        for share in sorted({rng.choice([30, 50, 100]) for _ in range(rng.randint(1, 2))}):
            h.at()
            h.fee_refunded = h.fee * share // 100
            h.emit("application_fee.refunded", s.application_fee(f"fee_{h.pi}", ch, h.fee, h.fee_refunded,
                                                                   currency=h.currency))
    left = h.captured - h.refunded()
    if left > 0 and rng.random() < 0.3:
        dp, amount = f"dp_{h.pi}", left if rng.random() < 0.6 else left // 2
        path = rng.choice([
            ["warning_needs_response", "warning_under_review", "warning_closed"],
            ["warning_needs_response", "needs_response", "under_review", "lost"],
            ["needs_response", "under_review", "won"],
            ["needs_response", "under_review", "lost"],
            ["needs_response", "lost"],
            ["needs_response", "prevented"],
            ["needs_response", "under_review"],
            ["warning_needs_response"],
        ])
        told = []
        pi_named = h.pi if rng.random() < 0.6 else None
        for i, status in enumerate(path):
            h.at()
            kind = "charge.dispute.created" if i == 0 else (
                "charge.dispute.closed" if status in ("won", "lost", "warning_closed", "prevented")
                else "charge.dispute.updated")
            obj = s.dispute(dp, ch, pi_named, amount, status, currency=h.currency)
            h.emit(kind, obj)
            told.append((status, kind))
            if status == "needs_response":
                h.emit("charge.dispute.funds_withdrawn", obj)
        h.dispute = (dp, amount, told)


def _refund(h: History, r: Refund, status: str, pi: str | None) -> dict:
    obj = s.refund(r.id, f"ch_{h.pi}_ok", pi, r.amount, status, currency=h.currency, created=r.created)
    if pi is None:
        obj.pop("payment_intent")
    return obj


def events_of(h: History, types: set[str] | None = None, *, prefix: str = "evt", shape=None) -> list[dict]:
    """The history's Stripe events (only the subscribed types), each wrapped as Stripe sends it;
    `shape(obj)` may dress each object (Stripe's full published shapes)."""
    out = []
    for n, (kind, obj, created) in enumerate(h.events):
        if types is None or kind in types:
            event = s.stripe_event(kind, shape(obj) if shape else obj, created=created)
            event["id"] = f"{prefix}_{h.pi}_{n}"
            out.append(event)
    return out


def all_types(h: History) -> list[str]:
    return sorted({kind for kind, _, _ in h.events})


def expectation(h: History) -> dict[str, Any]:
    return {"captured": h.captured, "refunded": h.refunded(), "spend": h.spend(), "revenue": h.revenue(),
            "status": h.payment_status(), "card": h.card}
