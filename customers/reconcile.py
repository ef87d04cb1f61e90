"""`customers reconcile`: feed Stripe events the read model never applied through the normal path."""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import select

from customers import kafka as names
from customers.settings import Settings
from projections.db import make_engine
from projections.tables import stripe_events_applied as applied
from projections.versions import live_version
from streams.stripe_api import client_for, events_since
from streams.stripe_facts import object_key


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
    if missing:
        await names.ensure_topics(settings)
        producer = names.new_producer(settings)
        await producer.start()
        try:
            await names.publish(producer, settings.topic(names.STRIPE_EVENTS),
                                [(object_key(e), json.dumps(e, default=str).encode()) for e in missing])
        finally:
            await producer.stop()
    return {"listed": len(listed), "already_applied": len(known), "published": len(missing)}
