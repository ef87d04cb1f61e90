"""`/api/customers`: the expert's customers, and one customer in full."""

from __future__ import annotations

import re
from typing import Literal

from fastapi import APIRouter, HTTPException, Query, Request, Response

from api.auth import PrincipalDep
from api.deps import ConnDep, NowDep, SettingsDep
from api.notes import valid_customer_id
from api.schemas import CustomerDetail, CustomerList, customer_list_json, detail, errors
from customers.events import normalise_email
from projections import queries
from customers.commands import FIELD_KEY, FieldDefinition, canonical, field_value

router = APIRouter(prefix="/api/customers", tags=["customers"])

NOT_FOUND = "customer not found"
TEXT = r"^[^\x00]*$"  # PostgreSQL text cannot hold NUL

Sort = Literal["last_appointment", "first_seen", "name", "appointments", "total_spend", "last_contact"]


def list_query(expert_id: str, q: str | None, email: str | None, sort: str, order: str | None,
               limit: int, cursor: str | None, tags: list[str] | None = None,
               fields: tuple[tuple[str, str], ...] = (), archived: bool | None = None,
               status: str | None = None) -> queries.ListQuery:
    """The query; `archived` unset means not archived, except for a look-up by email or a status
    filter (either: `status=archived` is the archive)."""
    email = normalise_email(email) if email else None
    if archived is None:
        archived = None if email or status else False
    return queries.ListQuery(expert_id=expert_id, q=q or None, email=email,
                             sort=sort, order=order, limit=limit, cursor=cursor or None,
                             tags=tuple(sorted({" ".join(t.split()).lower() for t in tags or () if t.strip()})),
                             fields=fields, archived=archived, status=status)


async def field_filters(conn, expert_id: str, request: Request) -> tuple[tuple[str, str], ...]:
    """`field.KEY=value` query parameters, each read as its definition reads a value; 400 naming
    the parameter when the key is not a field of the expert or the value does not fit it."""
    given = [(name, value) for name, value in request.query_params.multi_items() if name.startswith("field.")]
    if not given:
        return ()
    definitions = {d["key"]: FieldDefinition(**d) for d in await queries.field_definitions(conn, expert_id)}
    out = []
    for name, raw in given:
        key = name.removeprefix("field.")
        definition = definitions.get(key)
        if definition is None or re.fullmatch(FIELD_KEY, key) is None:
            raise HTTPException(400, f"{name}: no such custom field")
        value: object = raw
        if definition.type == "boolean":
            value = {"true": True, "false": False}.get(raw.lower(), raw)
        elif definition.type == "number":
            try:
                value = float(raw) if any(ch in raw for ch in ".eE") else int(raw)
            except ValueError:
                pass
        try:
            out.append((key, canonical(field_value(definition, value))))
        except ValueError as exc:
            raise HTTPException(400, f"{name}: {exc}") from exc
    return tuple(out)


@router.get("", response_model=CustomerList, responses=errors(400))
async def list_customers(
    request: Request,
    principal: PrincipalDep,
    conn: ConnDep,
    q: str | None = Query(default=None, max_length=200, pattern=TEXT,
                          description="case-insensitive substring of name or email"),
    email: str | None = Query(default=None, max_length=320, pattern=TEXT, description="one customer by email"),
    sort: Sort = "last_appointment",
    order: Literal["asc", "desc"] | None = Query(default=None, description="default: newest/largest first, names A-Z"),
    limit: int = Query(default=50, ge=1, le=500),
    cursor: str | None = Query(default=None, max_length=2000, description="`next_cursor` or `prev_cursor` of a page"),
    tag: list[str] = Query(default=[], max_length=20, description="customers with every one of these tags"),
    archived: bool | None = Query(default=None, description="archived customers instead (default: not archived; "
                                                            "a look-up by email finds either)"),
    status: Literal["new", "active", "lapsed", "archived"] | None = Query(
        default=None, description="customers with this status (new: first appointment upcoming or recent; "
                                  "active: a visit recent or one upcoming; lapsed: neither)"),
) -> Response:
    """Filters also include `field.KEY=value` (one per custom field, all must match)."""
    for t in tag:
        if not 1 <= len(t.strip()) <= 40 or "\x00" in t:
            raise HTTPException(400, "tag: each tag must be 1 to 40 characters")
    fields = await field_filters(conn, principal.expert_id, request)
    query = list_query(principal.expert_id, q, email, sort, order, limit, cursor, tag, fields, archived, status)
    try:
        page = await queries.list_customers(conn, query, request.app.state.totals)
    except queries.BadCursor as exc:
        raise HTTPException(400, str(exc)) from exc
    return Response(customer_list_json(page), media_type="application/json")  # a `CustomerList`


@router.get("/{customer_id}", response_model=CustomerDetail, responses=errors(404))
async def get_customer(customer_id: str, principal: PrincipalDep, conn: ConnDep, now: NowDep,
                       settings: SettingsDep) -> CustomerDetail:
    found = await queries.customer_detail(conn, principal.expert_id, customer_id) \
        if valid_customer_id(customer_id) else None
    if found is None:  # unknown and someone else's look the same
        raise HTTPException(404, NOT_FOUND)
    return detail(found, now, settings.livemode)
