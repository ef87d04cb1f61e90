"""`/api/insights`: how the expert's practice is doing, by month and over a period, from the
monthly sums the worker keeps (`api.insights`); and the monthly rows as CSV."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from api.auth import PrincipalDep
from api.deps import ConnDep, NowDep
from api.insights import MONTH_PATTERN, BadRange, Figures, figures, months_between
from api.schemas import errors
from projections import queries

router = APIRouter(prefix="/api/insights", tags=["insights"])


class MonthMoney(BaseModel):
    currency: str
    total_spend: int
    expert_revenue: int
    refunded: int


class Month(BaseModel):
    month: str
    new_customers: int
    returning_customers: int
    lapsed_returned: int  # customers who came back after a lapse (CUSTOMER_ACTIVE_DAYS without a visit)
    completed: int
    cancelled: int
    no_shows: int
    booked: int
    money: list[MonthMoney]


class ServiceRef(BaseModel):
    id: str
    name: str | None


class ServiceSpend(BaseModel):
    currency: str
    total_spend: int


class TopService(BaseModel):
    service: ServiceRef
    appointments: int
    money: list[ServiceSpend]


class Period(BaseModel):
    booked: int
    cancellation_rate: float | None
    no_show_rate: float | None
    returned_within_90_days: float | None
    lapsed_returned: int  # over the period: returns after a lapse, once per customer and month
    median_days_between_appointments: float | None
    top_services: list[TopService]
    top_services_by_spend: list[TopService]
    money: list[MonthMoney]


class Insights(BaseModel):
    from_: str = Field(alias="from")
    to: str
    months: list[Month]
    period: Period
    as_of: datetime | None
    counted_as_of: datetime | None

    model_config = {"populate_by_name": True}


async def read(conn, expert_id: str, first: str | None, last: str | None, now: datetime,
               kept: queries.Kept | None = None) -> tuple[list[str], Figures, Any, Any]:
    """The months asked for and their figures (kept per generation of the expert's rows in `kept`,
    `projections.queries.Kept`), with `as_of` and the sweep's watermark."""
    try:
        months = months_between(first, last, now)
    except BadRange as exc:
        raise HTTPException(400, str(exc)) from exc

    def make(stored: dict) -> Figures:
        labels = {dim: label for metric, dim, _value, label in stored["services"] if metric == "svc_appts" and label}
        return figures(months, stored, labels)
    f, as_of, swept = await queries.kept_insights(conn, expert_id, months[0], months[-1], make, kept)
    return months, f, as_of, swept


@router.get("", response_model=Insights, response_model_by_alias=True, responses=errors(400))
async def get_insights(request: Request, principal: PrincipalDep, conn: ConnDep, now: NowDep,
                       first: str | None = Query(default=None, alias="from", pattern=MONTH_PATTERN,
                                                 description="first month, YYYY-MM, 0001-01 to 9999-12 "
                                                             "(default: 11 months before `to`, not before 0001-01)"),
                       last: str | None = Query(default=None, alias="to", pattern=MONTH_PATTERN,
                                                description="last month, YYYY-MM (default: this month, UTC)")) -> dict:
    """Per month: new and returning customers, appointments completed (as of `counted_as_of`, the
    worker's last sweep), cancelled and no-shows, money per currency; over the period: rates,
    the median time between appointments, top services. At most 36 months."""
    months, f, as_of, swept = await read(conn, principal.expert_id, first, last, now, request.app.state.insights)
    return {"from": months[0], "to": months[-1], "months": f.months, "period": f.period, "as_of": as_of,
            "counted_as_of": swept}


@router.get("/export.csv", response_class=Response,
            responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}},
                             "description": "one line per month, money in columns per currency"}, **errors(400)})
async def export_insights(request: Request, principal: PrincipalDep, conn: ConnDep, now: NowDep,
                          first: str | None = Query(default=None, alias="from", pattern=MONTH_PATTERN),
                          last: str | None = Query(default=None, alias="to", pattern=MONTH_PATTERN)) -> Response:
    _months, f, _as_of, _swept = await read(conn, principal.expert_id, first, last, now,
                                            request.app.state.insights)
    header = ["month", "new_customers", "returning_customers", "lapsed_returned", "completed", "cancelled", "no_shows", "booked"]
    header += [f"{kind}_{cur}" for cur in f.currencies for kind in ("total_spend", "expert_revenue", "refunded")]
    buffer = io.StringIO()
    out = csv.writer(buffer)
    out.writerow(header)
    for m in f.months:
        by = {x["currency"]: x for x in m["money"]}
        out.writerow([m["month"], m["new_customers"], m["returning_customers"], m["lapsed_returned"],
                      m["completed"], m["cancelled"],
                      m["no_shows"], m["booked"]]
                     + [by.get(cur, {}).get(kind, 0) for cur in f.currencies
                        for kind in ("total_spend", "expert_revenue", "refunded")])
    return Response(buffer.getvalue(), media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": 'attachment; filename="insights.csv"', "Cache-Control": "no-store"})
