"""The read API (`api.app.create_app`, unchanged) plus one extra route for the comparison: the
first page as the platform first computed it, a GROUP BY of the meetings per request.

    python -m bench.baseline_app PORT      (settings from the environment, as `customers api`)

Both routes run in the same process, behind the same server, token check and connection pool,
and answer with the same response model, so that only the way the page is computed differs.
"""

from __future__ import annotations

import sys
from datetime import datetime

from fastapi import FastAPI
from sqlalchemy import text

from api.auth import PrincipalDep
from api.deps import ConnDep, NowDep
from api.schemas import Amount, AppointmentCounts, CustomerList, CustomerSummary
from bench.readmodel import BASELINE_PAGE
from customers.ids import customer_id
from customers.settings import Settings, get_settings


async def baseline_rows(conn, expert_id: str, now: datetime, limit: int = 50) -> list:
    """The shipped-first query, through SQLAlchemy on the request's connection like ours."""
    result = await conn.execute(text(BASELINE_PAGE), {"expert_id": expert_id, "now": now, "limit": limit})
    return [r._mapping for r in result]


BASELINE_INSIGHTS = """
WITH m AS (
  SELECT customer_id, start_time, end_time, cancelled, no_show, service_id, service_name,
         to_char(start_time AT TIME ZONE 'UTC', 'YYYY-MM') AS month
  FROM bench_meetings WHERE expert_id = :expert_id),
v AS (
  SELECT customer_id, start_time, month, row_number() OVER w AS n, lag(start_time) OVER w AS prev,
         lead(start_time) OVER w AS next
  FROM m WHERE NOT cancelled AND NOT no_show WINDOW w AS (PARTITION BY customer_id ORDER BY start_time))
SELECT month, 'booked' AS metric, '' AS dim, count(*) AS value, NULL AS label FROM m
  WHERE month BETWEEN :first AND :last GROUP BY month
UNION ALL SELECT month, 'cancelled', '', count(*), NULL FROM m
  WHERE cancelled AND month BETWEEN :first AND :last GROUP BY month
UNION ALL SELECT month, 'no_show', '', count(*), NULL FROM m
  WHERE no_show AND NOT cancelled AND month BETWEEN :first AND :last GROUP BY month
UNION ALL SELECT month, 'completed', '', count(*), NULL FROM m
  WHERE NOT cancelled AND NOT no_show AND end_time <= :now AND month BETWEEN :first AND :last GROUP BY month
UNION ALL SELECT month, 'new', '', count(*), NULL FROM v WHERE n = 1 AND month BETWEEN :first AND :last GROUP BY month
UNION ALL SELECT month, 'returning', '', count(DISTINCT customer_id), NULL FROM v
  WHERE n > 1 AND month BETWEEN :first AND :last GROUP BY month
UNION ALL SELECT month, 'back90', '', count(*), NULL FROM v
  WHERE n = 1 AND next IS NOT NULL AND next - start_time <= interval '90 days' AND month BETWEEN :first AND :last
  GROUP BY month
UNION ALL SELECT month, 'gap', extract(day FROM start_time - prev)::int::text, count(*), NULL FROM v
  WHERE n > 1 AND month BETWEEN :first AND :last GROUP BY 1, 3
UNION ALL SELECT month, 'returned', '', count(DISTINCT customer_id), NULL FROM v
  WHERE n > 1 AND start_time - prev > make_interval(days => :lapse_days) AND start_time <= :now
    AND month BETWEEN :first AND :last GROUP BY month
UNION ALL SELECT month, 'svc_appts', service_id, count(*), max(service_name) FROM m
  WHERE NOT cancelled AND month BETWEEN :first AND :last GROUP BY month, service_id
UNION ALL SELECT month, 'spend', currency, sum(spend), NULL FROM bench_payments
  WHERE expert_id = :expert_id AND month BETWEEN :first AND :last GROUP BY 1, 3
UNION ALL SELECT month, 'revenue', currency, sum(revenue), NULL FROM bench_payments
  WHERE expert_id = :expert_id AND month BETWEEN :first AND :last GROUP BY 1, 3
UNION ALL SELECT month, 'refunded', currency, sum(refunded), NULL FROM bench_payments
  WHERE expert_id = :expert_id AND month BETWEEN :first AND :last GROUP BY 1, 3
UNION ALL SELECT p.month, 'svc_spend', mm.service_id || chr(31) || p.currency, sum(p.spend), NULL
  FROM bench_payments p JOIN bench_meetings mm ON mm.expert_id = p.expert_id AND mm.meeting_id = p.meeting_id
  WHERE p.expert_id = :expert_id AND p.month BETWEEN :first AND :last GROUP BY 1, 3
"""


def add_baseline(app: FastAPI, settings: Settings) -> FastAPI:
    from fastapi import Query

    from api.insights import figures, months_between, stored_from
    from api.routes.insights import Insights

    @app.get("/bench/baseline/insights", response_model=Insights, response_model_by_alias=True)
    async def baseline_insights(principal: PrincipalDep, conn: ConnDep, now: NowDep,
                                first: str | None = Query(default=None, alias="from"),
                                last: str | None = Query(default=None, alias="to")) -> dict:
        """The same figures as `/api/insights`, computed per request from the plain history."""
        months = months_between(first, last, now)
        swept = (await conn.execute(text("SELECT swept_until FROM projection_versions WHERE state = 'live'"))).scalar()
        rows = (await conn.execute(text(BASELINE_INSIGHTS), {"expert_id": principal.expert_id, "first": months[0],
                                                              "last": months[-1], "now": swept,
                                                              "lapse_days": settings.customer_active_days})).all()
        labels = {r.dim: r.label for r in rows if r.metric == "svc_appts" and r.label}
        f = figures(months, stored_from(rows), labels)
        return {"from": months[0], "to": months[-1], "months": f.months, "period": f.period, "as_of": None,
                "counted_as_of": swept}

    @app.get("/bench/baseline/customers", response_model=CustomerList)
    async def baseline_customers(principal: PrincipalDep, conn: ConnDep, now: NowDep) -> CustomerList:
        rows = await baseline_rows(conn, principal.expert_id, now)
        return CustomerList(customers=[CustomerSummary(
            id=customer_id(settings.customer_id_secret, principal.expert_id, r["email"]), email=r["email"],
            name=r["name"], phone=r["phone"], first_seen_at=r["first_seen_at"],
            appointments=AppointmentCounts(total=r["appointments"], upcoming=r["upcoming"],
                                           past=r["appointments"] - r["upcoming"], cancelled=r["cancelled"]),
            total_spend=[Amount(currency=r["currency"], amount=r["total_spend"])] if r["total_spend"] else [],
            last_appointment_at=r["last_appointment_at"], next_appointment_at=r["next_appointment_at"],
        ) for r in rows], total=rows[0]["total"] if rows else 0, next_cursor=None, as_of=None)

    return app


def main() -> None:
    import uvicorn

    from api.app import create_app
    from customers.logs import configure

    settings = get_settings()
    configure("INFO")
    uvicorn.run(add_baseline(create_app(settings), settings), host="127.0.0.1", port=int(sys.argv[1]),
                access_log=False, log_config=None)


if __name__ == "__main__":
    main()
