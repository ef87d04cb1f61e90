"""Benchmark 6: `GET /api/insights` for a big expert against the same figures computed on read.

    python -m bench.insights [--customers 10000] [--requests 200]

One expert with `--customers` customers, about five appointments each over two years (10%
cancelled, 3% no-shows) and a payment for most of them (some refunded in a later month). Ours:
the monthly sums the worker keeps, made here by the same pure rules the worker runs
(`projections.rules.insights`) over the generated histories and written into `insight_counts`.
The baseline: the same history as plain rows (`bench_meetings`, `bench_payments`, index on the
expert) and the figures computed per request with GROUP BY and window functions. Both are
served by one uvicorn process (the real API plus a bench-only route, `bench.baseline_app`), and
the months of both answers are compared before timing.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from datetime import datetime, timedelta, timezone

from bench.common import run_async, summary_ms
from customers.facts import ChargeSeen, IntentSeen, PaymentObserved, RefundSeen
from projections import payments as money
from projections.meetings import Meeting
from projections.rules.insights import contribution, money_of, payment_months

BIG = "ex_insights_big"
GOAL_P99_MS = 20
GOAL_FACTOR = 10
SERVICES = [("svc_intro", "Introductory session"), ("svc_follow", "Follow-up"), ("svc_long", "Long session")]

BASELINE_DDL = """
CREATE TABLE IF NOT EXISTS bench_meetings (expert_id text, customer_id text, meeting_id text, start_time timestamptz,
  end_time timestamptz, cancelled boolean, no_show boolean, service_id text, service_name text);
CREATE INDEX IF NOT EXISTS ix_bench_meetings_expert ON bench_meetings (expert_id);
CREATE TABLE IF NOT EXISTS bench_payments (expert_id text, customer_id text, meeting_id text, month text,
  currency text, spend bigint, revenue bigint, refunded bigint);
CREATE INDEX IF NOT EXISTS ix_bench_payments_expert ON bench_payments (expert_id);
"""


def history(customers: int, now: datetime, seed: int = 7):
    """(meetings, payment states by customer) of one big expert, and the plain rows of both."""
    rng = random.Random(seed)
    per_customer, meeting_rows, payment_rows = {}, [], []
    for c in range(customers):
        cid = f"c_{c:032x}"
        meetings, states = [], []
        start = now - timedelta(days=rng.randint(0, 700), hours=rng.randint(0, 12))
        for n in range(rng.randint(1, 9)):
            mid = f"m_{c}_{n}"
            service_id, service_name = SERVICES[min(n, 2) if rng.random() < 0.8 else rng.randrange(3)]
            cancelled = rng.random() < 0.10
            no_show = not cancelled and rng.random() < 0.03
            m = Meeting(expert_id=BIG, meeting_id=mid, customer_id=cid, service_id=service_id,
                        service_name=service_name, booked_start=start, booked_end=start + timedelta(hours=1),
                        created_version=f"v{mid}", cancelled_at=start - timedelta(days=1) if cancelled else None,
                        no_show_at=start + timedelta(minutes=30) if no_show else None)
            meetings.append(m)
            meeting_rows.append((BIG, cid, mid, m.start_time, m.end_time, cancelled, no_show, service_id, service_name))
            if not cancelled and rng.random() < 0.8:
                amount = rng.choice([4500, 6000, 7500, 9000])
                paid_at = start - timedelta(days=rng.randint(0, 10))
                refunds = ([RefundSeen(id=f"re_{mid}", charge_id=f"ch_{mid}", amount=amount // 2, status="succeeded",
                                       created_at=paid_at + timedelta(days=rng.randint(1, 60)))]
                           if rng.random() < 0.06 else [])
                state = money.from_fact(PaymentObserved(
                    stripe_event_id=f"evt_{mid}", stripe_event_type="charge.succeeded", occurred_at=paid_at,
                    payment_id=f"pi_{mid}", payment_intent_id=f"pi_{mid}", expert_id=BIG, meeting_id=mid,
                    currency="eur", created_at=paid_at,
                    intent=IntentSeen(status="succeeded", amount=amount, amount_received=amount,
                                      latest_charge=f"ch_{mid}", application_fee=amount // 10),
                    charge=ChargeSeen(id=f"ch_{mid}", status="succeeded", captured=True, amount=amount,
                                      amount_captured=amount),
                    refunds=refunds))
                states.append((money_of(state), mid))
                for month, row in payment_months(state).items():
                    payment_rows.append((BIG, cid, mid, month, "eur", row["spend"], row["revenue"], row["refunded"]))
            start += timedelta(days=rng.randint(7, 120), hours=rng.randint(-3, 3))
        per_customer[cid] = (meetings, states)
    return per_customer, meeting_rows, payment_rows


def sums(per_customer: dict, as_of: datetime) -> list[tuple]:
    """What the worker would hold in `insight_counts` for these customers, as of `as_of`."""
    total: dict[tuple[str, str, str], int] = {}
    labels = {sid: name for sid, name in SERVICES}
    for meetings, states in per_customer.values():
        for key, value in contribution(meetings, states, as_of).items():
            total[key] = total.get(key, 0) + value
    return [(1, BIG, month, metric, dim, value, labels.get(dim) if metric == "svc_appts" else None)
            for (month, metric, dim), value in sorted(total.items()) if value]


async def load(url: str, customers: int, now: datetime) -> dict:
    import asyncpg

    from projections.db import make_engine
    from projections.versions import ensure_live

    engine = make_engine(url)
    await ensure_live(engine, "bench")
    async with engine.begin() as conn:  # the sweep's watermark: counts as of now
        from projections import tables as t

        await conn.execute(t.projection_versions.update().values(swept_until=now))
    await engine.dispose()
    per_customer, meeting_rows, payment_rows = history(customers, now)
    ours = sums(per_customer, now)
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute(BASELINE_DDL)
        await conn.copy_records_to_table("insight_counts_v1", records=ours,
                                         columns=["version", "expert_id", "month", "metric", "dim", "value", "label"])
        await conn.copy_records_to_table("bench_meetings", records=meeting_rows)
        await conn.copy_records_to_table("bench_payments", records=payment_rows)
        # the expert's generation, as the worker leaves it after writing their rows: what the API
        # keeps the figures by (`projections.queries.Kept`)
        await conn.execute("INSERT INTO projection_generations (version, scope, generation) VALUES (1, $1, 1)", BIG)
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    return {"insight_rows": len(ours), "meetings": len(meeting_rows), "payment_rows": len(payment_rows)}


async def compare(customers: int, requests: int):
    from api.auth import issue_token as token_for
    from bench.api_latency import counted_afresh, timed_get
    from bench.common import Result, Row, ServiceProcess, bench_database
    from bench.rawhttp import Connection, request_bytes

    result = Result("insights", "GET /api/insights, big expert, vs on-read GROUP BY")
    result.sizes = {"customers": customers, "requests_each": requests,
                    "baseline": "bench_meetings + bench_payments (index on expert_id), GROUP BY month with window "
                                "functions for first visits, returns and gaps, per request"}
    now = datetime.now(timezone.utc).replace(microsecond=0)
    async with bench_database() as (db_name, settings):
        started = time.perf_counter()
        result.details["load"] = {**await load(settings.database_url, customers, now),
                                  "seconds": round(time.perf_counter() - started, 1)}
        token = token_for(settings, BIG, ttl_seconds=3600)
        with ServiceProcess(settings, "api-insights", argv=["-m", "bench.baseline_app", "{port}"]) as served:
            host, auth = f"127.0.0.1:{served.port}", {"Authorization": f"Bearer {token}"}
            last = now.strftime("%Y-%m")
            first = (now - timedelta(days=365 * 2)).strftime("%Y-%m")
            query = f"?from={first}&to={last}"
            ours_raw = request_bytes("GET", f"/api/insights{query}", host, auth)
            base_raw = request_bytes("GET", f"/bench/baseline/insights{query}", host, auth)
            conn = await Connection.open("127.0.0.1", served.port)
            try:
                ours_body = json.loads((await timed_get(conn, ours_raw))[1])
                base_body = json.loads((await timed_get(conn, base_raw))[1])
                same = ours_body["months"] == base_body["months"] and ours_body["period"] == base_body["period"]
                for _ in range(10):
                    await timed_get(conn, ours_raw)
                    await timed_get(conn, base_raw)
                ours, base = [], []
                for i in range(requests):
                    pair = ((ours_raw, ours), (base_raw, base)) if i % 2 else ((base_raw, base), (ours_raw, ours))
                    for raw, into in pair:
                        into.append((await timed_get(conn, raw))[0])
            finally:
                conn.close()
            made = await counted_afresh(served.port, token, settings.database_url, BIG, requests,
                                        f"/api/insights{query}")
    o, b = summary_ms(ours), summary_ms(base)
    result.details.update(ours=o, baseline=b, made_afresh=made, months_equal=same, months=len(ours_body["months"]))
    factor = b["p99_ms"] / o["p99_ms"]
    result.rows += [
        Row("insights", "GET /api/insights p99 (HTTP, 25 months)", o["p99_ms"], "ms", baseline=b["p99_ms"],
            baseline_label="the same figures computed on read (GROUP BY), same process and data",
            ratio=round(factor, 1), goal=f"p99 < {GOAL_P99_MS} ms and >= {GOAL_FACTOR}x faster",
            met=o["p99_ms"] < GOAL_P99_MS and factor >= GOAL_FACTOR,
            attainment=round(min(GOAL_P99_MS / o["p99_ms"], factor / GOAL_FACTOR), 3),
            note=f"{customers:,} customers, {result.details['load']['meetings']:,} appointments; p50 {o['p50_ms']} ms "
                 f"against {b['p50_ms']} ms; monthly and period figures of both equal: {'yes' if same else 'NO'}; "
                 "the figures kept for the expert's generation, as nothing writes while it runs"),
        Row("insights", "GET /api/insights p99, the expert's rows changed before each request", made["p99_ms"], "ms",
            baseline=b["p99_ms"], baseline_label="the same figures computed on read (GROUP BY), same process and data",
            ratio=round(b["p99_ms"] / made["p99_ms"], 1),
            note=f"p50 {made['p50_ms']} ms; the figures made from the monthly sums on every request (a new "
                 "generation each time)"),
    ]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    result = run_async(compare(args.customers, args.requests))
    for row in result.rows:
        print(row)
    print(json.dumps({k: v for k, v in result.details.items()}, indent=2, default=str))


if __name__ == "__main__":
    main()
