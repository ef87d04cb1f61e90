"""`/customers` and `/customers/{id}`: the Customers section, rendered on the server from the
same queries and response builders as the JSON API. Note forms post back here."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from api.auth import Principal
from api.commands import CommandsUnavailable
from api.deps import ConnDep, NotesDep, NowDep
from api.notes import NotFound, valid_customer_id
from api.routes.customers import TEXT, Sort, list_query
from api.schemas import detail, summary
from api.web import page_principal, templates
from projections import queries

router = APIRouter(tags=["pages"], include_in_schema=False)
PageUser = Annotated[Principal, Depends(page_principal)]

SORT_LABELS = {"name": "Name", "appointments": "Appointments", "total_spend": "Total spend",
               "last_appointment": "Last appointment", "first_seen": "First seen"}
NOTICES = {
    "added": "Note added.",
    "pending": "Note saved. It will appear here in a moment.",
    "deleted": "Note deleted.",
    "delete-pending": "Note deletion accepted. It will disappear in a moment.",
    "empty": "A note cannot be empty.",
    "unavailable": "Notes cannot be saved right now. Please try again in a minute.",
    "gone": "That note no longer exists.",
}


@router.get("/customers", response_class=HTMLResponse)
async def customers_page(
    request: Request, user: PageUser, conn: ConnDep,
    q: str | None = Query(default=None, max_length=200, pattern=TEXT),
    sort: Sort = "last_appointment",
    order: Literal["asc", "desc"] | None = None,
    cursor: str | None = Query(default=None, max_length=2000),
    limit: int = Query(default=25, ge=1, le=100),
):
    query = list_query(user.expert_id, q, None, sort, order, limit, cursor)
    try:
        page = await queries.list_customers(conn, query)
    except queries.BadCursor:  # a stale link: start from the first page
        return RedirectResponse(request.url.remove_query_params("cursor"), status_code=303)
    return templates.TemplateResponse(request, "customers.html", {
        "user": user, "q": q or "", "sort": sort, "order": query.direction, "limit": limit,
        "customers": [summary(r, page["profiles"].get(r.customer_id)) for r in page["rows"]],
        "total": page["total"],
        "next_cursor": page["next_cursor"], "prev_cursor": page["prev_cursor"], "as_of": page["as_of"],
        "sorts": SORT_LABELS, "first_page": not cursor,
    })


@router.get("/customers/{customer_id}", response_class=HTMLResponse)
async def customer_page(request: Request, customer_id: str, user: PageUser, conn: ConnDep, now: NowDep,
                        notice: str | None = None):
    found = await queries.customer_detail(conn, user.expert_id, customer_id) \
        if valid_customer_id(customer_id) else None
    if found is None:
        return templates.TemplateResponse(request, "not_found.html", {"user": user}, status_code=404)
    customer = detail(found, now, request.app.state.settings.livemode)
    upcoming = [a for a in customer.appointments if a.status in ("upcoming", "in_progress")]
    return templates.TemplateResponse(request, "customer.html", {
        "user": user, "c": customer, "upcoming": list(reversed(upcoming)),
        "past": [a for a in customer.appointments if a not in upcoming],
        "notice": NOTICES.get(notice or ""), "notice_kind": "error" if notice in ("empty", "unavailable", "gone")
        else "ok",
    })


def _back(customer_id: str, notice: str) -> RedirectResponse:
    return RedirectResponse(f"/customers/{customer_id}?notice={notice}#notes", status_code=303)


@router.post("/customers/{customer_id}/notes")
async def add_note_form(request: Request, customer_id: str, user: PageUser, notes: NotesDep, now: NowDep,
                        body: Annotated[str, Form(max_length=10_000)] = ""):
    text = body.replace("\x00", "").strip()
    if not text:
        return _back(customer_id, "empty")
    try:
        added = await notes.add(user.expert_id, customer_id, text, now)
    except NotFound:
        return templates.TemplateResponse(request, "not_found.html", {"user": user}, status_code=404)
    except CommandsUnavailable:
        return _back(customer_id, "unavailable")
    return _back(customer_id, "added" if added.row is not None else "pending")


@router.post("/customers/{customer_id}/notes/{note_id}/delete")
async def delete_note_form(customer_id: str, note_id: str, user: PageUser, notes: NotesDep, now: NowDep):
    try:
        done = await notes.delete(user.expert_id, customer_id, note_id, now)
    except NotFound:
        return _back(customer_id, "gone")
    except CommandsUnavailable:
        return _back(customer_id, "unavailable")
    return _back(customer_id, "deleted" if done else "delete-pending")
