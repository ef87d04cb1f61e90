"""`customers reconcile`: feed Stripe events the read model never applied through the normal path,
and settle the payments whose events alone could not (`payments.undecided`) with Stripe's own
view of their charges."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from sqlalchemy import select

from customers import kafka as names
from customers.settings import Settings
from projections.db import make_engine
from projections import payments as money
from projections.tables import payments
from projections.tables import stripe_events_applied as applied
from projections.versions import live_version
from streams.stripe_api import charge_snapshot, client_for, events_since
from customers.stripe_facts import object_key


async def reconcile(settings: Settings, since: datetime) -> dict[str, int]:
    client = client_for(settings)
    if client is None:
        raise RuntimeError("STRIPE_API_KEY is not set")
    listed = [e async for e in events_since(client, since)]
    engine = make_engine(settings.database_url)
    try:
        async with engine.connect() as conn:
            version = await live_version(conn)
            ids = [e["id"] for e in listed]
            known = {r.event_id for r in await conn.execute(
                select(applied.c.event_id).where(applied.c.version == version, applied.c.event_id.in_(ids)))}
    finally:
        await engine.dispose()
    missing = [e for e in listed if e["id"] not in known]
    settled = [f for f in [await charge_snapshot(client, cid, source_event=f"reconcile:{cid}",
                                                 at=datetime.now(timezone.utc))
                           for cid in await undecided_charges(settings)] if f is not None]
    if missing or settled:
        async with names.LazyProducer(settings, timeout=60.0) as producer:
            await producer.publish(settings.topic(names.STRIPE_EVENTS),
                                   [(object_key(e), json.dumps(e, default=str).encode()) for e in missing])
            await producer.publish(settings.topic(names.ACTIVITY),
                                   [(f.kafka_key, f.model_dump_json(exclude_none=True).encode()) for f in settled])
    return {"listed": len(listed), "already_applied": len(known), "published": len(missing),
            "charges_settled": len(settled)}


async def undecided_charges(settings: Settings) -> list[str]:
    """The charges of the live version's payments that wait for Stripe's own figures."""
    engine = make_engine(settings.database_url)
    try:
        async with engine.connect() as conn:
            version = await live_version(conn)
            p = payments.c
            rows = await conn.execute(select(p.state).where(p.version == version, p.undecided.is_(True)))
            return sorted({cid for r in rows for cid in money.undecided_charges(r.state)})
    finally:
        await engine.dispose()
