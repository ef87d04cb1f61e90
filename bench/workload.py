"""A marketplace's history as Kafka records, generated quickly and pre-loaded in batches.

Many experts (a few big, most small), customers who come back, meetings that are sometimes
rescheduled, cancelled or missed, and card payments for part of them. Booking events go to
`bookings` (keyed by expert); payments go to `customer-activity` as the facts the worker's
`normalise_stripe` agent would have written (keyed by expert). Deterministic for a seed.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Iterator

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from customers import kafka as names
from customers.settings import Settings

FIRST = ["Ana", "Bruno", "Carla", "David", "Eva", "Filipe", "Greta", "Hugo", "Inês", "João", "Lara", "Miguel"]
LAST = ["Silva", "Costa", "Mendes", "Rocha", "Lopes", "Nunes", "Pereira", "Santos", "Ferreira", "Gomes"]
SERVICES = [("svc_intro", "Introductory call", 3000, 30), ("svc_session", "Session", 7000, 60),
            ("svc_long", "Extended session", 12000, 90)]

Record = tuple[str, bytes, bytes]  # (topic without prefix, key, value)


@dataclass
class Mix:
    """Shares per meeting of the follow-up events, and of meetings paid by card."""

    rescheduled: float = 0.10
    cancelled: float = 0.05
    no_show: float = 0.03
    paid: float = 0.30  # a paid meeting brings two facts: payment_intent.succeeded, charge.succeeded
    chunk: int = 5000  # meetings whose follow-ups come after all of their creations

    @property
    def events_per_meeting(self) -> float:
        return 1 + self.rescheduled + self.cancelled + self.no_show + 2 * self.paid


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def marketplace(n_events: int, *, experts: int = 2000, seed: int = 7, mix: Mix | None = None,
                now: datetime | None = None) -> Iterator[Record]:
    """About `n_events` records (exactly that many: the last chunk is cut to size)."""
    mix = mix or Mix()
    rnd = random.Random(seed)
    now = (now or datetime.now(timezone.utc)).replace(microsecond=0)
    weights = [1 / (i + 1) ** 0.8 for i in range(experts)]  # a few big experts, a long tail
    customers_seen: dict[int, int] = defaultdict(int)
    produced = meeting_no = 0
    while produced < n_events:
        creations: list[Record] = []
        later: list[Record] = []
        expert_ids = rnd.choices(range(experts), weights=weights, k=mix.chunk)
        for e in expert_ids:
            meeting_no += 1
            expert = f"ex_{e:05d}"
            pool = customers_seen[e]
            c = rnd.randrange(pool) if pool and rnd.random() < 0.6 else pool  # returning or new customer
            customers_seen[e] = max(pool, c + 1)
            email = f"c{c:05d}.{expert}@example.com"
            name = f"{FIRST[c % len(FIRST)]} {LAST[(c // len(FIRST)) % len(LAST)]}"
            svc_id, svc_name, price, minutes = SERVICES[meeting_no % len(SERVICES)]
            start = now + timedelta(hours=rnd.randrange(-24 * 365, 24 * 120))
            booked = start - timedelta(days=rnd.randrange(1, 30))
            meeting, pi, ch = f"m_{meeting_no:08d}", f"pi_{meeting_no:08d}", f"ch_{meeting_no:08d}"
            paid = rnd.random() < mix.paid
            creations.append((names.BOOKINGS, expert.encode(), json.dumps({
                "event_id": f"evb_{meeting_no:08d}_c", "type": "booking.created", "schema_version": 1,
                "occurred_at": _iso(booked), "expert_id": expert, "meeting_id": meeting,
                "customer": {"email": email, "name": name, **({"phone": f"+3519{c:08d}"} if c % 3 == 0 else {})},
                "service": {"id": svc_id, "name": svc_name}, "start_time": _iso(start),
                "end_time": _iso(start + timedelta(minutes=minutes)), "timezone": "Europe/Lisbon",
                "price": {"amount": price, "currency": "eur"},
                "payment": {"payment_intent_id": pi} if paid else {}, "created_at": _iso(booked),
            }).encode()))
            roll = rnd.random()
            follow = None
            if roll < mix.rescheduled:
                moved = start + timedelta(days=rnd.randrange(1, 14))
                follow = {"type": "booking.rescheduled", "start_time": _iso(moved),
                          "end_time": _iso(moved + timedelta(minutes=minutes))}
            elif roll < mix.rescheduled + mix.cancelled:
                follow = {"type": "booking.cancelled", "reason": "customer asked", "cancelled_by": "customer"}
            elif roll < mix.rescheduled + mix.cancelled + mix.no_show:
                follow = {"type": "booking.no_show"}
            if follow:
                later.append((names.BOOKINGS, expert.encode(), json.dumps({
                    "event_id": f"evb_{meeting_no:08d}_f", "schema_version": 1,
                    "occurred_at": _iso(booked + timedelta(hours=1)), "expert_id": expert, "meeting_id": meeting,
                    **follow}).encode()))
            if paid:
                later += payment_facts(expert, meeting, pi, ch, price, booked)
        for record in creations + later:
            if produced >= n_events:
                return
            produced += 1
            yield record


def payment_facts(expert: str, meeting: str, pi: str, ch: str, amount: int, when: datetime) -> list[Record]:
    """What `normalise_stripe` writes for a card payment's two events (flat metadata ties it)."""
    fee = amount // 10
    common = {"type": "payment.observed", "occurred_at": _iso(when), "payment_id": pi, "payment_intent_id": pi,
              "expert_id": expert, "meeting_id": meeting, "currency": "eur", "created_at": _iso(when)}
    intent = {"status": "succeeded", "amount": amount, "amount_received": amount, "latest_charge": ch,
              "application_fee": fee}
    charge = {"id": ch, "status": "succeeded", "captured": True, "amount": amount, "amount_captured": amount,
              "amount_refunded": 0, "application_fee": fee,
              "card": {"brand": "visa", "last4": "4242", "exp_month": 8, "exp_year": 2030}}
    key = expert.encode()
    return [
        (names.ACTIVITY, key, json.dumps({**common, "stripe_event_id": f"evt_{pi}_pi", "intent": intent,
                                          "stripe_event_type": "payment_intent.succeeded"}).encode()),
        (names.ACTIVITY, key, json.dumps({**common, "stripe_event_id": f"evt_{pi}_ch", "charge_id": ch,
                                          "charge": charge, "stripe_event_type": "charge.succeeded"}).encode()),
    ]


async def preload(settings: Settings, records: Iterator[Record], *, partitions: int | None = None,
                  batch_bytes: int = 512 * 1024, in_flight: int = 16) -> dict[str, int]:
    """Produce `records` in full batches per partition, partitioned by key as any producer would.

    Returns the number of records per topic (without prefix).
    """
    await names.ensure_topics(settings)
    partitions = partitions or settings.topic_partitions
    all_parts = list(range(partitions))
    choose = DefaultPartitioner()
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all",
                                max_batch_size=batch_bytes, max_request_size=batch_bytes * 2,
                                request_timeout_ms=60_000, linger_ms=50)
    await producer.start()
    counts: dict[str, int] = defaultdict(int)
    pending: set[asyncio.Future] = set()
    batches: dict[tuple[str, int], object] = {}

    async def flush(topic: str, partition: int) -> None:
        batch = batches.pop((topic, partition), None)
        if batch is None:
            return
        pending.add(await producer.send_batch(batch, settings.topic(topic), partition=partition))
        while len(pending) >= in_flight:
            done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for fut in done:
                fut.result()
            pending.difference_update(done)

    try:
        for topic, key, value in records:
            partition = choose(key, all_parts, all_parts)
            batch = batches.get((topic, partition))
            if batch is None:
                batch = batches[(topic, partition)] = producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None) is None:
                await flush(topic, partition)
                batch = batches[(topic, partition)] = producer.create_batch()
                batch.append(key=key, value=value, timestamp=None)
            counts[topic] += 1
        for topic, partition in list(batches):
            await flush(topic, partition)
        for fut in pending:
            await fut
    finally:
        await producer.stop()
    return dict(counts)


async def main() -> None:
    import argparse

    from bench.common import bench_settings

    parser = argparse.ArgumentParser(description="time the generation and pre-load of a workload")
    parser.add_argument("--events", type=int, default=100_000)
    args = parser.parse_args()
    settings = bench_settings("postgresql+asyncpg://unused/unused")
    started = time.perf_counter()
    generated = sum(1 for _ in marketplace(args.events))
    gen = time.perf_counter() - started
    started = time.perf_counter()
    counts = await preload(settings, marketplace(args.events))
    print(f"generated {generated} in {gen:.1f}s; generated+produced {counts} in "
          f"{time.perf_counter() - started:.1f}s under {settings.topic_prefix}")


if __name__ == "__main__":
    asyncio.run(main())
