"""Insights of one expert: monthly figures and the period's rates, assembled from the stored
monthly sums (`insight_counts`, kept by the worker: `projections.rules.insights`); nothing is
counted from meetings or payments on read."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from projections.queries import PERIOD_METRICS

# a real month, 0001-01 to 9999-12 (no lookaround: the routes' pydantic patterns use the same text)
MONTH_PATTERN = r"^(000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})-(0[1-9]|1[0-2])$"
MONTH = re.compile(MONTH_PATTERN)
FIRST_MONTH = 12  # the index of 0001-01
MAX_MONTHS = 36
DEFAULT_MONTHS = 12
TOP = 10


class BadRange(ValueError):
    pass


def _index(month: str) -> int:
    y, m = month.split("-")
    return int(y) * 12 + int(m) - 1


def _month(index: int) -> str:
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def months_between(first: str | None, last: str | None, now: datetime) -> list[str]:
    """The months asked for: default the last 12 up to this one (UTC), at most 36. A `from`
    computed from `to` starts no earlier than 0001-01."""
    for name, value in (("from", first), ("to", last)):
        if value is not None and not MONTH.fullmatch(value):
            raise BadRange(f"{name}: a month is YYYY-MM")
    end = _index(last) if last else _index(now.strftime("%Y-%m"))
    start = _index(first) if first else max(end - DEFAULT_MONTHS + 1, FIRST_MONTH)
    if first and not last:
        end = min(start + DEFAULT_MONTHS - 1, _index(now.strftime("%Y-%m")))
        end = max(end, start)
    if start > end:
        raise BadRange("from: after to")
    if end - start + 1 > MAX_MONTHS:
        raise BadRange(f"from, to: at most {MAX_MONTHS} months")
    return [_month(i) for i in range(start, end + 1)]


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def median_days(gaps: dict[int, int]) -> float | None:
    """The median of a histogram {days: count}: the middle value, or the mean of the two middle ones."""
    total = sum(gaps.values())
    if not total:
        return None
    wanted = [(total - 1) // 2, total // 2]
    found, seen = [], 0
    for days in sorted(gaps):
        count = gaps[days]
        for w in wanted:
            if seen <= w < seen + count:
                found.append(days)
        seen += count
    return sum(found) / len(found)


@dataclass
class Figures:
    months: list[dict[str, Any]]
    period: dict[str, Any]
    currencies: list[str]


def figures(months: list[str], stored: dict, labels: dict[str, str]) -> Figures:
    """The response's `months` and `period` from the stored sums: `monthly` rows (month, metric,
    dim, value), and over the months `gaps` (dim = days, value) and `services` (metric, dim, value)."""
    per: dict[str, dict[str, int]] = {m: {} for m in months}
    money: dict[str, dict[str, dict[str, int]]] = {m: {} for m in months}
    for month, metric, dim, value in stored["monthly"]:
        if month not in per:
            continue
        if metric in ("spend", "revenue", "refunded"):
            money[month].setdefault(dim, {"spend": 0, "revenue": 0, "refunded": 0})[metric] += value
        else:
            per[month][metric] = per[month].get(metric, 0) + value
    gaps = {int(dim): int(value) for dim, value in stored["gaps"] if value}  # sums may come as decimals
    services: dict[str, dict[str, Any]] = {}
    for row in stored["services"]:
        metric, dim, value = row[0], row[1], int(row[2])
        if metric == "svc_appts":
            services.setdefault(dim, {"appointments": 0, "money": {}})["appointments"] += value
        else:
            service, _, currency = dim.partition("\x1f")
            s = services.setdefault(service, {"appointments": 0, "money": {}})
            s["money"][currency] = s["money"].get(currency, 0) + value
    currencies = sorted({c for m in money.values() for c in m})
    out = []
    for m in months:
        c = per[m]
        out.append({"month": m, "new_customers": c.get("new", 0), "returning_customers": c.get("returning", 0),
                    "lapsed_returned": c.get("returned", 0),
                    "completed": c.get("completed", 0), "cancelled": c.get("cancelled", 0),
                    "no_shows": c.get("no_show", 0), "booked": c.get("booked", 0),
                    "money": [{"currency": cur, "total_spend": v["spend"], "expert_revenue": v["revenue"],
                               "refunded": v["refunded"]} for cur, v in sorted(money[m].items())]})
    total = {k: sum(per[m].get(k, 0) for m in months) for k in ("booked", "cancelled", "no_show", "new", "back90",
                                                                    "returned")}
    summed = {cur: {"total_spend": 0, "expert_revenue": 0, "refunded": 0} for cur in currencies}
    for m in months:
        for cur, v in money[m].items():
            summed[cur]["total_spend"] += v["spend"]
            summed[cur]["expert_revenue"] += v["revenue"]
            summed[cur]["refunded"] += v["refunded"]

    def service_out(sid: str, s: dict) -> dict[str, Any]:
        return {"service": {"id": sid, "name": labels.get(sid)}, "appointments": s["appointments"],
                "money": [{"currency": cur, "total_spend": v} for cur, v in sorted(s["money"].items())]}

    by_appts = sorted(services.items(), key=lambda kv: (-kv[1]["appointments"], kv[0]))
    by_spend = sorted(services.items(), key=lambda kv: (-sum(kv[1]["money"].values()), kv[0]))
    period = {
        "booked": total["booked"],
        "cancellation_rate": _rate(total["cancelled"], total["booked"]),
        "no_show_rate": _rate(total["no_show"], total["booked"] - total["cancelled"]),
        "returned_within_90_days": _rate(total["back90"], total["new"]),
        "lapsed_returned": total["returned"],
        "median_days_between_appointments": median_days(gaps),
        "top_services": [service_out(k, v) for k, v in by_appts[:TOP] if v["appointments"]],
        "top_services_by_spend": [service_out(k, v) for k, v in by_spend[:TOP] if sum(v["money"].values())],
        "money": [{"currency": cur, **summed[cur]} for cur in currencies],
    }
    return Figures(out, period, currencies)


def stored_from(rows: list) -> dict:
    """Rows (month, metric, dim, value, ...) of any origin, arranged as `figures` reads them."""
    monthly = [(r[0], r[1], r[2], r[3]) for r in rows if r[1] not in PERIOD_METRICS]
    gaps: dict[str, int] = {}
    services: dict[tuple[str, str], int] = {}
    for r in rows:
        if r[1] == "gap":
            gaps[r[2]] = gaps.get(r[2], 0) + r[3]
        elif r[1] in PERIOD_METRICS:
            services[(r[1], r[2])] = services.get((r[1], r[2]), 0) + r[3]
    return {"monthly": monthly, "gaps": list(gaps.items()),
            "services": [(metric, dim, value) for (metric, dim), value in services.items()]}
