"""Direct Stripe API look-ups (optional: only with STRIPE_API_KEY set).

* Enrichment: when a payment event lacks the card or the correlation metadata, fetch the
  PaymentIntent (with its latest charge) and add what the event lacked: card brand/last4/expiry
  and the metadata hints. Money and status always come from events (reconciliation fills in
  missing events), so a look-up never moves a figure.
* Reconciliation: list Stripe's events since a date and feed the ones never applied through the
  same path as webhooks (the `stripe-events` topic).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import AsyncIterator

import stripe

from customers.facts import PaymentObserved
from customers.settings import Settings
from streams.stripe_facts import _from_intent, to_fact

log = logging.getLogger("customers.stripe")

ENRICHED = ("card", "expert_id", "meeting_id", "customer_email", "booked_start")


def client_for(settings: Settings) -> stripe.StripeClient | None:
    if not settings.stripe_api_key:
        return None
    bases = {"api": settings.stripe_api_base} if settings.stripe_api_base else None
    return stripe.StripeClient(settings.stripe_api_key, base_addresses=bases,
                               http_client=stripe.HTTPXClient(allow_sync_methods=True), max_network_retries=2)


def needs_lookup(fact: PaymentObserved) -> bool:
    if not fact.payment_intent_id or fact.stripe_event_type.startswith(("refund.", "charge.refund", "charge.dispute",
                                                                        "application_fee")):
        return False
    unlinked = not fact.expert_id
    cardless = fact.status == "succeeded" and fact.card is None
    return unlinked or cardless


async def lookup(client: stripe.StripeClient, fact: PaymentObserved) -> PaymentObserved | None:
    """One more observation of the payment, from the PaymentIntent as Stripe has it now."""
    try:
        intent = await client.v1.payment_intents.retrieve_async(
            fact.payment_intent_id, params={"expand": ["latest_charge"]})
    except stripe.StripeError as exc:
        log.warning("stripe look-up of a payment failed: %s", type(exc).__name__)
        return None
    seen = _from_intent(intent.to_dict(), "pending")
    extra = {k: seen[k] for k in ENRICHED if seen.get(k) is not None}
    return PaymentObserved(stripe_event_id=f"{fact.stripe_event_id}#lookup", stripe_event_type="lookup.payment_intent",
                           occurred_at=fact.occurred_at, payment_id=fact.payment_intent_id,
                           payment_intent_id=fact.payment_intent_id, **extra)


async def events_since(client: stripe.StripeClient, since: datetime) -> AsyncIterator[dict]:
    """Every event Stripe still lists (30 days at most) created at or after `since`."""
    page = await client.v1.events.list_async(params={"created": {"gte": int(since.timestamp())}, "limit": 100})
    async for event in page.auto_paging_iter():
        data = event.to_dict()  # decimal strings come back as Decimal: publish them with default=str
        to_fact(data)  # raises on anything that is not a well-formed event
        yield data
