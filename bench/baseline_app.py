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


def add_baseline(app: FastAPI, settings: Settings) -> FastAPI:
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
