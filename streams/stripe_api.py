"""Direct Stripe API look-ups (optional: only with STRIPE_API_KEY set).

* Enrichment: when a payment event lacks the card or the correlation metadata, fetch the
  PaymentIntent (with its latest charge) and add what the event lacked: card brand/last4/expiry
  and the metadata hints.
* Charges: when a refund event arrives, fetch its charge (with every refund) once, so that a
  feed without `charge.refunded` or `refund.*` events still settles on Stripe's own figures.
* Reconciliation: list Stripe's events since a date and feed the ones never applied through the
  same path as webhooks (the `stripe-events` topic).
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import AsyncIterator

import stripe

from customers.facts import ChargeSeen, PaymentObserved
from customers.settings import Settings
from customers.stripe_facts import _from_charge, _from_intent, to_fact

log = logging.getLogger("customers.stripe")

ENRICHED = ("expert_id", "meeting_id", "customer_email", "booked_start")
MONEY_EVENTS = ("refund.", "charge.refund.", "charge.dispute.", "application_fee.")


def client_for(settings: Settings) -> stripe.StripeClient | None:
    if not settings.stripe_api_key:
        return None
    bases = {"api": settings.stripe_api_base} if settings.stripe_api_base else None
    return stripe.StripeClient(settings.stripe_api_key, base_addresses=bases,
                               http_client=stripe.HTTPXClient(allow_sync_methods=True), max_network_retries=2)


def needs_lookup(fact: PaymentObserved) -> bool:
    """An intent event without the correlation metadata, or a success without the card."""
    if not fact.payment_intent_id or fact.stripe_event_type.startswith(MONEY_EVENTS):
        return False
    unlinked = not fact.expert_id
    cardless = fact.intent is not None and fact.intent.status == "succeeded" and not (fact.charge and fact.charge.card)
    return unlinked or cardless


async def lookup(client: stripe.StripeClient, fact: PaymentObserved) -> PaymentObserved | None:
    """The hints and the card of a payment, from the PaymentIntent as Stripe has it now."""
    try:
        intent = await client.v1.payment_intents.retrieve_async(
            fact.payment_intent_id, params={"expand": ["latest_charge"]})
    except stripe.StripeError as exc:
        log.warning("stripe look-up of a payment failed: %s", type(exc).__name__)
        return None
    seen = _from_intent(intent.to_dict(), "lookup")
    extra = {k: seen[k] for k in ENRICHED if seen.get(k) is not None}
    charge = seen.get("charge")
    if charge is not None and charge.card is not None:  # which charge and its card: figures come from events
        extra["charge"] = ChargeSeen(id=charge.id, status=charge.status, card=charge.card)
    return PaymentObserved(stripe_event_id=f"{fact.stripe_event_id}#lookup", stripe_event_type="lookup.payment_intent",
                           occurred_at=fact.occurred_at, payment_id=fact.payment_intent_id,
                           payment_intent_id=fact.payment_intent_id, **extra)


def needs_charge(fact: PaymentObserved) -> str | None:
    """The charge to fetch when a refund event arrives: events alone may not settle its total."""
    if not fact.refunds or fact.stripe_event_type.startswith("lookup."):
        return None
    return next((r.charge_id for r in fact.refunds if r.charge_id), None) or fact.charge_id


async def charge_snapshot(client: stripe.StripeClient, charge_id: str, *, source_event: str,
                          at: datetime) -> PaymentObserved | None:
    """Stripe's own answer for one charge, with every refund it has, as of `at` (the look-up's time)."""
    try:
        charge = await client.v1.charges.retrieve_async(charge_id, params={"expand": ["refunds"]})
    except stripe.StripeError as exc:
        log.warning("stripe look-up of a charge failed: %s", type(exc).__name__)
        return None
    obj = charge.to_dict()
    if obj.get("id") != charge_id:
        log.warning("stripe answered for another charge than asked; ignored")
        return None
    seen = _from_charge(obj, "lookup.charge")
    fields = {k: v for k, v in seen.items() if v is not None}
    fields.pop("created_at", None)
    payment_id = fields.get("payment_intent_id") or charge_id
    return PaymentObserved(stripe_event_id=f"{source_event}#charge", stripe_event_type="lookup.charge",
                           occurred_at=at, payment_id=payment_id, **fields)


async def events_since(client: stripe.StripeClient, since: datetime) -> AsyncIterator[dict]:
    """Every event Stripe still lists (30 days at most) created at or after `since`."""
    page = await client.v1.events.list_async(params={"created": {"gte": int(since.timestamp())}, "limit": 100})
    async for event in page.auto_paging_iter():
        data = event.to_dict()  # decimal strings come back as Decimal: publish them with default=str
        to_fact(data)  # raises on anything that is not a well-formed event
        yield data


class Lookups:
    """What the worker asks Stripe beside an event: the payment's missing card or hints, and a
    refunded charge's own figures once per charge (later refunds are itemised)."""

    def __init__(self, client: stripe.StripeClient | None, remembered: int = 10_000) -> None:
        self.client, self.remembered = client, remembered
        self.charges_fetched: dict[str, None] = {}  # charges already asked of Stripe, oldest first

    async def with_lookup(self, fact) -> list:
        """The fact, plus what Stripe's API says of the payment when the event lacks something."""
        if self.client is None or not isinstance(fact, PaymentObserved):
            return [fact]
        found = [fact]
        if needs_lookup(fact):
            found.append(await lookup(self.client, fact))
        charge_id = needs_charge(fact)
        if charge_id and charge_id not in self.charges_fetched:
            self.charges_fetched[charge_id] = None
            while len(self.charges_fetched) > self.remembered:
                self.charges_fetched.pop(next(iter(self.charges_fetched)))
            found.append(await charge_snapshot(self.client, charge_id, source_event=fact.stripe_event_id,
                                               at=datetime.now(timezone.utc)))
        return [f for f in found if f is not None]
