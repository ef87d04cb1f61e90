"""`/api/customers`: the expert's customers, and one customer in full."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, HTTPException, Query

from api.auth import PrincipalDep
from api.deps import ConnDep, NowDep
from api.schemas import CustomerDetail, CustomerList, detail, summary
from customers.events import normalise_email
from projections import queries

router = APIRouter(prefix="/api/customers", tags=["customers"])

NOT_FOUND = "customer not found"


@router.get("", response_model=CustomerList)
async def list_customers(
    principal: PrincipalDep,
    conn: ConnDep,
    now: NowDep,
    q: str | None = Query(default=None, max_length=200),
    email: str | None = Query(default=None, max_length=320),
    sort: Literal["last_appointment", "first_seen", "name", "appointments", "total_spend"] = "last_appointment",
    order: Literal["asc", "desc"] | None = None,
    limit: int = Query(default=50, ge=1, le=500),
    cursor: str | None = Query(default=None, max_length=2000),
) -> CustomerList:
    query = queries.ListQuery(expert_id=principal.expert_id, q=q or None,
                              email=normalise_email(email) if email else None,
                              sort=sort, order=order, limit=limit, cursor=cursor)
    try:
        page = await queries.list_customers(conn, query)
    except queries.BadCursor as exc:
        raise HTTPException(400, str(exc)) from exc
    return CustomerList(customers=[summary(r, now)[0] for r in page["rows"]], total=page["total"],
                        next_cursor=page["next_cursor"], as_of=page["as_of"])


@router.get("/{customer_id}", response_model=CustomerDetail, responses={404: {"description": NOT_FOUND}})
async def get_customer(customer_id: str, principal: PrincipalDep, conn: ConnDep, now: NowDep) -> CustomerDetail:
    found = await queries.customer_detail(conn, principal.expert_id, customer_id)
    if found is None:  # unknown and someone else's look the same
        raise HTTPException(404, NOT_FOUND)
    return detail(found, now)
