"""`/api/customers`: the expert's customers, and one customer in full."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, HTTPException, Query

from api.auth import PrincipalDep
from api.deps import ConnDep, NowDep
from api.notes import valid_customer_id
from api.schemas import CustomerDetail, CustomerList, detail, errors, summary
from customers.events import normalise_email
from projections import queries

router = APIRouter(prefix="/api/customers", tags=["customers"])

NOT_FOUND = "customer not found"
TEXT = r"^[^\x00]*$"  # PostgreSQL text cannot hold NUL

Sort = Literal["last_appointment", "first_seen", "name", "appointments", "total_spend"]


def list_query(expert_id: str, q: str | None, email: str | None, sort: str, order: str | None,
               limit: int, cursor: str | None) -> queries.ListQuery:
    return queries.ListQuery(expert_id=expert_id, q=q or None, email=normalise_email(email) if email else None,
                             sort=sort, order=order, limit=limit, cursor=cursor or None)


@router.get("", response_model=CustomerList, responses=errors(400))
async def list_customers(
    principal: PrincipalDep,
    conn: ConnDep,
    q: str | None = Query(default=None, max_length=200, pattern=TEXT,
                          description="case-insensitive substring of name or email"),
    email: str | None = Query(default=None, max_length=320, pattern=TEXT, description="one customer by email"),
    sort: Sort = "last_appointment",
    order: Literal["asc", "desc"] | None = Query(default=None, description="default: newest/largest first, names A-Z"),
    limit: int = Query(default=50, ge=1, le=500),
    cursor: str | None = Query(default=None, max_length=2000, description="`next_cursor` or `prev_cursor` of a page"),
) -> CustomerList:
    query = list_query(principal.expert_id, q, email, sort, order, limit, cursor)
    try:
        page = await queries.list_customers(conn, query)
    except queries.BadCursor as exc:
        raise HTTPException(400, str(exc)) from exc
    return CustomerList(customers=[summary(r) for r in page["rows"]], total=page["total"],
                        next_cursor=page["next_cursor"], prev_cursor=page["prev_cursor"], as_of=page["as_of"])


@router.get("/{customer_id}", response_model=CustomerDetail, responses=errors(404))
async def get_customer(customer_id: str, principal: PrincipalDep, conn: ConnDep, now: NowDep) -> CustomerDetail:
    found = await queries.customer_detail(conn, principal.expert_id, customer_id) \
        if valid_customer_id(customer_id) else None
    if found is None:  # unknown and someone else's look the same
        raise HTTPException(404, NOT_FOUND)
    return detail(found, now)
