"""Whole generated payment histories through the projector and a real database: every payment's
facts, in any order and any batch, duplicated, find their one payment row (by intent, session or
any charge id) and give the figures the history's own truth gives."""

import random
from collections import defaultdict
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from testing import samples as s
from customers.events import parse_booking_event
from customers.facts import PaymentObserved
from projections import payments as money
from projections import tables as t
from projections.projector import Position
from customers.stripe_facts import to_fact
from tests import stripe_histories as histories
from tests.integration.test_projector_replay import fresh_projector

T0 = datetime(2026, 6, 1, 9, tzinfo=timezone.utc)


def world(seed: int, n: int = 120):
    """Bookings and, per booking, one payment history seen through a subscription that tells its figures."""
    rng = random.Random(seed)
    bookings, facts, truth = [], [], {}
    for i in range(n):
        expert, email, pi = f"ex{i % 3}", f"p{i % 17}@example.com", f"pi_{seed}_{i}"
        meeting = f"m{i}"
        by_metadata = rng.random() < 0.5
        bookings.append(s.booking_created(expert, meeting, email, "P", T0 + timedelta(days=i),
                                          currency="eur" if i % 4 else "usd",
                                          payment_intent_id=None if by_metadata else pi))
        h = histories.generate(rng, pi, currency="eur" if i % 4 else "usd",
                               metadata={"expert_id": expert, "meeting_id": meeting} if by_metadata else {})
        kinds = histories.all_types(h)
        types = set(kinds)
        for _ in range(20):  # a subscription that still tells every figure, when one is drawn
            drawn = set(rng.sample(kinds, rng.randint(1, len(kinds))))
            linked = not by_metadata or any(k.startswith(("payment_intent.", "checkout.")) for k in drawn)
            if h.knows_status(drawn) and linked:
                types = drawn
                break
        events = histories.events_of(h, types)
        facts += [f for f in (to_fact(e) for e in events) if isinstance(f, PaymentObserved)]
        truth[pi] = (expert, email, h)
    return bookings, facts, truth


async def project(projector, bookings, facts, rng: random.Random):
    items = [parse_booking_event(b) for b in bookings] + facts
    items += rng.sample(items, len(items) // 3)  # duplicates
    rng.shuffle(items)
    offset = 0
    while offset < len(items):
        size = rng.choice([1, 7, 50, 400])
        batch = [(Position("all", 0, offset + k, T0), item) for k, item in enumerate(items[offset:offset + size])]
        await projector.apply(batch)
        offset += size


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
async def test_histories_through_the_projector_match_their_truth(backend):
    bookings, facts, truth = world(seed=7)
    engine, projector = await fresh_projector(backend)
    await project(projector, bookings, facts, random.Random(1))
    async with engine.connect() as conn:
        rows = (await conn.execute(select(t.payments))).all()
        customers = (await conn.execute(select(t.customers))).all()
        aliases = (await conn.execute(select(t.payment_aliases))).all()
    await engine.dispose()

    by_id = {r.payment_id: r for r in rows}
    assert set(by_id) == set(truth), "one row per payment intent, nothing left parked under a charge id"
    expected = defaultdict(lambda: defaultdict(lambda: [0, 0, 0]))
    for pi, (expert, email, h) in truth.items():
        row = by_id[pi]
        assert row.meeting_id is not None, f"{pi} is tied to its meeting"
        assert money.payment_status(row.state) == h.payment_status(), pi
        assert money.refunded(row.state) == h.refunded(), pi
        if h.captured:
            figures = expected[(expert, email)][h.currency]
            figures[0] += h.spend()
            figures[1] += h.revenue()
            figures[2] += h.refunded()
    for alias in aliases:
        assert alias.payment_id in by_id, f"alias {alias.alias} points at a payment that exists"

    seen = {}
    for c in customers:
        seen[(c.expert_id, c.email)] = {cur: [c.spend.get(cur, 0), c.revenue.get(cur, 0), c.refunded.get(cur, 0)]
                                        for cur in set(c.spend) | set(c.revenue) | set(c.refunded)}
    want = {k: {cur: v for cur, v in by_cur.items()} for k, by_cur in expected.items()}
    for key, by_currency in want.items():
        assert seen.get(key) == by_currency, key
    for key in set(seen) - set(want):
        assert seen[key] == {}, f"{key} paid nothing"


async def test_the_same_records_in_another_order_and_batching_give_the_same_tables():
    bookings, facts, _ = world(seed=11, n=60)
    tables = []
    for order_seed in (2, 3):
        engine, projector = await fresh_projector("sqlite")
        await project(projector, bookings, facts, random.Random(order_seed))
        async with engine.connect() as conn:
            tables.append({
                "payments": sorted((r.payment_id, r.meeting_id, r.customer_id, money.spend(r.state),
                                    money.payment_status(r.state)) for r in await conn.execute(select(t.payments))),
                "customers": sorted((r.expert_id, r.customer_id, str(r.spend), str(r.revenue), str(r.refunded))
                                    for r in await conn.execute(select(t.customers))),
                "aliases": sorted(tuple(r) for r in await conn.execute(
                    select(t.payment_aliases.c.alias, t.payment_aliases.c.payment_id))),
            })
        await engine.dispose()
    assert tables[0] == tables[1]


async def test_a_charge_named_for_another_intent_never_joins_two_payments():
    # evidence that contradicts itself (one charge id seen under two intents) keeps both payments
    engine, projector = await fresh_projector("sqlite")
    first = s.stripe_event("charge.succeeded", s.charge("ch_shared", "pi_a", 5000), created=histories.T0)
    second = s.stripe_event("charge.succeeded", s.charge("ch_shared", "pi_b", 7000), created=histories.T0 + 60)
    fee = s.stripe_event("application_fee.refunded", s.application_fee("fee_x", "ch_own", 500, 100),
                         created=histories.T0)
    own = s.stripe_event("charge.succeeded", s.charge("ch_own", "pi_b", 7000), created=histories.T0 + 120)
    for n, event in enumerate((first, fee, second, own)):
        await projector.apply([(Position("all", 0, n, T0), to_fact(event))])
    async with engine.connect() as conn:
        rows = {r.payment_id: r for r in (await conn.execute(select(t.payments))).all()}
    await engine.dispose()
    assert set(rows) == {"pi_a", "pi_b"}, "a parked row still joins its own intent; the two intents stay apart"
    assert money.captured(rows["pi_a"].state) == 5000 and money.captured(rows["pi_b"].state) == 7000
    assert money.platform_fee(rows["pi_b"].state) == 400
