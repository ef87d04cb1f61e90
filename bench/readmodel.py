"""A marketplace's read model written straight into the tables (COPY), and the same meetings in
the shape the platform first shipped: `baseline_meetings` joined to `baseline_services`.

Many experts with a few hundred meetings each, and one big expert with 10,000 customers. Every
meeting is in both shapes; each customer's summary row is derived from its meetings with the
service's own rules (cancelled meetings count apart; spend is the price of the others).
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any, Iterator

from customers.ids import customer_id, email_hash
from projections.meetings import stamp

FIRST = ["Ana", "Bruno", "Carla", "David", "Eva", "Filipe", "Greta", "Hugo", "Inês", "João", "Lara", "Miguel"]
LAST = ["Silva", "Costa", "Mendes", "Rocha", "Lopes", "Nunes", "Pereira", "Santos", "Ferreira", "Gomes"]
SERVICES = [("intro", "Introductory call", 3000, 30), ("session", "Session", 7000, 60),
            ("long", "Extended session", 12000, 90)]
BIG = "ex_big"

BASELINE_DDL = """
CREATE TABLE baseline_services (
    id text PRIMARY KEY, expert_id text NOT NULL, name text NOT NULL,
    price_amount bigint NOT NULL, currency text NOT NULL, minutes int NOT NULL);
CREATE TABLE baseline_meetings (
    id text PRIMARY KEY, expert_id text NOT NULL, service_id text NOT NULL,
    customer_email text NOT NULL, customer_name text NOT NULL, customer_phone text,
    start_time timestamptz NOT NULL, end_time timestamptz NOT NULL,
    status text NOT NULL, created_at timestamptz NOT NULL);
"""
BASELINE_INDEXES = "CREATE INDEX baseline_meetings_expert ON baseline_meetings (expert_id);"

# The first page as the platform first computed it: per request, a GROUP BY of the expert's
# meetings joined to their services, newest appointment first, with the total of customers.
BASELINE_PAGE = """
SELECT m.customer_email AS email,
       max(m.customer_name) AS name,
       max(m.customer_phone) AS phone,
       min(m.created_at) AS first_seen_at,
       count(*) FILTER (WHERE m.status <> 'cancelled') AS appointments,
       count(*) FILTER (WHERE m.status <> 'cancelled' AND m.start_time > :now) AS upcoming,
       count(*) FILTER (WHERE m.status = 'cancelled') AS cancelled,
       COALESCE(sum(s.price_amount) FILTER (WHERE m.status <> 'cancelled'), 0) AS total_spend,
       max(s.currency) AS currency,
       max(m.start_time) FILTER (WHERE m.status <> 'cancelled' AND m.start_time <= :now) AS last_appointment_at,
       min(m.start_time) FILTER (WHERE m.status <> 'cancelled' AND m.start_time > :now) AS next_appointment_at,
       max(m.start_time) FILTER (WHERE m.status <> 'cancelled') AS latest_start,
       count(*) OVER () AS total
FROM baseline_meetings m JOIN baseline_services s ON s.id = m.service_id
WHERE m.expert_id = :expert_id
GROUP BY m.customer_email
ORDER BY latest_start DESC NULLS LAST, m.customer_email DESC
LIMIT :limit
"""


def plan(meetings: int, big_customers: int, big_meetings: int, experts: int) -> list[tuple[str, int, int]]:
    """(expert, customers, meetings) for the big expert and the others sharing the rest."""
    rest = max(0, meetings - big_meetings)
    each = rest // max(1, experts - 1)
    out = [(BIG, big_customers, big_meetings)]
    for i in range(experts - 1):
        n = each + (1 if i < rest - each * (experts - 1) else 0)
        out.append((f"ex_{i:05d}", max(1, n // 3), n))
    return out


def generate(meetings: int = 1_000_000, big_customers: int = 10_000, big_meetings: int = 50_000,
             experts: int = 2000, *, secret: str, now: datetime, seed: int = 5,
             version: int = 1) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """Chunks of rows per table: ("services"|"meetings"|"customers", rows), expert by expert."""
    rnd = random.Random(seed)
    now = now.replace(microsecond=0)
    number = 0
    for expert, n_customers, n_meetings in plan(meetings, big_customers, big_meetings, experts):
        services = [{"id": f"{expert}:{sid}", "expert_id": expert, "name": name, "price_amount": price,
                     "currency": "eur", "minutes": minutes} for sid, name, price, minutes in SERVICES]
        # every customer has at least one meeting; the rest go to returning customers, some of them
        # regulars (with 10,000 customers and 50,000 meetings the most loyal one has about 90)
        owners = list(range(n_customers)) + [int(n_customers * rnd.random() ** 1.5)
                                             for _ in range(n_meetings - n_customers)]
        per_customer: dict[int, list[dict[str, Any]]] = defaultdict(list)
        rows = []
        for c in owners:
            number += 1
            svc = services[number % 3]
            start = now + timedelta(hours=rnd.randrange(-24 * 700, 24 * 90))
            booked = start - timedelta(days=rnd.randrange(1, 40), minutes=rnd.randrange(0, 1440))
            roll = rnd.random()
            status = "cancelled" if roll < 0.05 else "no_show" if roll < 0.08 else "booked"
            email = f"c{c:05d}.{expert}@example.com"
            m = {"id": f"m_{number:08d}", "expert_id": expert, "service_id": svc["id"], "customer_email": email,
                 "customer_name": f"{FIRST[c % len(FIRST)]} {LAST[(c // len(FIRST)) % len(LAST)]}",
                 "customer_phone": f"+3519{c:08d}" if c % 3 == 0 else None, "start_time": start,
                 "end_time": start + timedelta(minutes=svc["minutes"]), "status": status, "created_at": booked,
                 "price": svc["price_amount"], "service_name": svc["name"]}
            per_customer[c].append(m)
            rows.append(m)
        yield "services", services
        yield "meetings", rows
        yield "customers", [_summary(expert, ms, secret, version, now) for ms in per_customer.values()]


def _summary(expert: str, meetings: list[dict[str, Any]], secret: str, version: int, now: datetime) -> dict[str, Any]:
    """The customer's row as `projections.summary.summarise` would write it for these meetings as of `now`."""
    email, name, phone = meetings[0]["customer_email"], meetings[0]["customer_name"], meetings[0]["customer_phone"]
    active = [m for m in meetings if m["status"] != "cancelled"]
    spend = sum(m["price"] for m in active)
    past = [m for m in active if m["start_time"] <= now]
    upcoming = [m for m in active if m["start_time"] > now]
    return {
        "version": version, "expert_id": expert, "customer_id": customer_id(secret, expert, email), "email": email,
        "email_hash": email_hash(secret, email), "name": name, "phone": phone,
        "search_text": f"{name.lower()} {email}", "first_seen_at": min(m["created_at"] for m in meetings),
        "appointments": len(active), "cancelled": len(meetings) - len(active),
        "no_shows": sum(1 for m in active if m["status"] == "no_show"),
        "upcoming": len(upcoming), "past": len(past),
        "last_appointment_at": max((m["start_time"] for m in past), default=None),
        "next_appointment_at": min((m["start_time"] for m in upcoming), default=None),
        "session_minutes": sum(int((m["end_time"] - m["start_time"]).total_seconds() // 60) for m in past
                               if m["end_time"] <= now and m["status"] != "no_show"),
        "spend": {"eur": spend} if spend else {}, "spend_sort": spend,
        "revenue": {"eur": spend - spend // 10} if spend else {}, "refunded": {},
        **_status(active, len(upcoming), max((m["start_time"] for m in past), default=None), now),
    }


def _status(active: list[dict[str, Any]], upcoming: int, last: datetime | None, now: datetime) -> dict[str, Any]:
    """The row's `first_appointment_at` and `status` as the worker would store them (default thresholds)."""
    from types import SimpleNamespace

    from projections.rules.status import status_of

    first = min((m["start_time"] for m in active), default=None)
    row = SimpleNamespace(archived=False, first_appointment_at=first, last_appointment_at=last, upcoming=upcoming)
    return {"first_appointment_at": first, "status": status_of(row, now)}


def meeting_row(m: dict[str, Any], secret: str, version: int, ids: dict[tuple[str, str], tuple[str, str]]) -> dict:
    """The read model's `meetings` row for one meeting."""
    key = (m["expert_id"], m["customer_email"])
    if key not in ids:
        ids[key] = (customer_id(secret, *key), email_hash(secret, m["customer_email"]))
    cid, ehash = ids[key]
    cancelled = m["status"] == "cancelled"
    return {
        "version": version, "expert_id": m["expert_id"], "meeting_id": m["id"], "customer_id": cid,
        "customer_email": m["customer_email"], "email_hash": ehash, "customer_name": m["customer_name"],
        "customer_phone": m["customer_phone"], "service_id": m["service_id"], "service_name": m["service_name"],
        "booked_start": m["start_time"], "booked_end": m["end_time"], "booked_timezone": "Europe/Lisbon",
        "created_version": stamp(m["created_at"], f"evb_{m['id']}"), "start_time": m["start_time"],
        "end_time": m["end_time"], "timezone": "Europe/Lisbon", "price_amount": m["price"], "price_currency": "eur",
        "payment_intent_id": f"pi_{m['id']}", "cancelled_at": m["start_time"] - timedelta(days=1) if cancelled else None,
        "cancel_reason": "customer asked" if cancelled else None, "cancelled_by": "customer" if cancelled else None,
        "no_show_at": m["end_time"] if m["status"] == "no_show" else None, "booked_at": m["created_at"],
        "first_seen_at": m["created_at"],
    }


class Copier:
    """COPY of dict rows into a table, by the table's actual columns the rows name (the others take
    their defaults)."""

    def __init__(self, conn, table: str) -> None:
        self.conn, self.table = conn, table
        self.columns: list[str] = []
        self.json: set[str] = set()

    async def prepare(self) -> "Copier":
        rows = await self.conn.fetch("SELECT column_name, data_type FROM information_schema.columns "
                                     "WHERE table_name = $1 ORDER BY ordinal_position", self.table)
        self.columns = [r["column_name"] for r in rows]
        self.json = {r["column_name"] for r in rows if r["data_type"] in ("json", "jsonb")}
        return self

    async def copy(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        columns = [c for c in self.columns if c in rows[0]]
        records = [tuple(json.dumps(r.get(c)) if c in self.json else r.get(c) for c in columns) for r in rows]
        await self.conn.copy_records_to_table(self.table, records=records, columns=columns)


async def load(conn, *, secret: str, now: datetime, meetings: int, big_customers: int, big_meetings: int,
               experts: int, chunk: int = 50_000) -> dict[str, int]:
    """Fill the read model (version 1, live) and the baseline tables with the same marketplace."""
    await conn.execute(BASELINE_DDL)
    await conn.execute("INSERT INTO projection_versions (version, state, consumer_group, created_at, switched_at) "
                       "VALUES (1, 'live', 'bench-v1', $1, $1)", now)
    await conn.execute('INSERT INTO projection_offsets (version, topic, partition, "offset", event_time) '
                       "VALUES (1, 'bookings', 0, 0, $1)", now)
    copiers = {name: await Copier(conn, name).prepare()
               for name in ("meetings", "customers", "baseline_meetings", "baseline_services")}
    pending: dict[str, list] = defaultdict(list)
    counts: dict[str, int] = defaultdict(int)
    ids: dict[tuple[str, str], tuple[str, str]] = {}

    async def flush(force: bool = False) -> None:
        for name, rows in pending.items():
            if rows and (force or len(rows) >= chunk):
                await copiers[name].copy(rows)
                counts[name] += len(rows)
                rows.clear()

    for kind, rows in generate(meetings, big_customers, big_meetings, experts, secret=secret, now=now):
        if kind == "services":
            pending["baseline_services"] += rows
        elif kind == "meetings":
            pending["baseline_meetings"] += rows
            pending["meetings"] += [meeting_row(m, secret, 1, ids) for m in rows]
        else:
            pending["customers"] += rows
        await flush()
    await flush(force=True)
    # each expert's generation, as the worker leaves it after writing their rows: what the API's
    # totals are kept by (`projections.queries.Kept`)
    await conn.execute("INSERT INTO projection_generations (version, scope, generation) "
                       "SELECT DISTINCT 1, expert_id, 1 FROM customers WHERE version = 1")
    await conn.execute(BASELINE_INDEXES)
    for table in ("meetings", "customers", "baseline_meetings", "baseline_services"):
        await conn.execute(f"VACUUM ANALYZE {table}")
    return dict(counts)
