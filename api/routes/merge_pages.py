"""The detail page's merge control: find the duplicate by email, confirm with both people side by
side, merge; and split a merged email off again. A merged customer's page moves (308) to the
survivor's."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from api.auth import Principal
from api.commands import CommandsUnavailable
from api.deps import ConnDep, MergesDep, NowDep
from api.merges import Refused
from api.notes import NotFound, valid_customer_id
from api.schemas import summary
from api.web import page_principal, templates
from customers.events import normalise_email
from projections import queries

router = APIRouter(tags=["pages"], include_in_schema=False)
PageUser = Annotated[Principal, Depends(page_principal)]

PROBLEMS = {"no-one": "No other customer of yours has that email.", "same": "That is this customer's own email.",
            "refused": "These two cannot be merged as they are now.", "unavailable":
            "That cannot be saved right now. Please try again in a minute."}


def _back(customer_id: str, notice: str, anchor: str = "person") -> RedirectResponse:
    return RedirectResponse(f"/customers/{customer_id}?{urlencode({'notice': notice})}#{anchor}", status_code=303)


def _problem(customer_id: str, code: str) -> RedirectResponse:
    return RedirectResponse(f"/customers/{customer_id}/merge?{urlencode({'problem': code})}", status_code=303)


@router.get("/customers/{customer_id}/merge", response_class=HTMLResponse)
async def merge_page(request: Request, customer_id: str, user: PageUser, conn: ConnDep,
                     email: str | None = Query(default=None, max_length=320),
                     problem: str | None = Query(default=None, max_length=20)):
    """Step one, the other person's email; step two (with `email`), both side by side to confirm."""
    row = await queries.customer_row(conn, user.expert_id, customer_id) if valid_customer_id(customer_id) else None
    if row is None:
        return templates.TemplateResponse(request, "not_found.html", {"user": user}, status_code=404)
    other = None
    if email and "\x00" not in email:
        page = await queries.list_customers(conn, queries.ListQuery(user.expert_id, email=normalise_email(email),
                                                                    archived=None, limit=1))
        other = page["rows"][0] if page["rows"] else None
        if other is None:
            problem = "no-one"
        elif other.customer_id == row.customer_id:
            other, problem = None, "same"
    return templates.TemplateResponse(request, "merge.html", {
        "user": user, "c": summary(row), "other": summary(other) if other is not None else None,
        "email": email or "", "problem": PROBLEMS.get(problem or ""),
    })


@router.post("/customers/{customer_id}/merge")
async def merge_form(customer_id: str, user: PageUser, merges: MergesDep, now: NowDep,
                     duplicate: Annotated[str, Form(max_length=100)] = ""):
    try:
        survivor, visible = await merges.merge(user.expert_id, customer_id, duplicate, now, wait=True)
    except NotFound:
        return _problem(customer_id, "no-one")
    except Refused:
        return _problem(customer_id, "refused")
    except CommandsUnavailable:
        return _problem(customer_id, "unavailable")
    return _back(survivor, "merged" if visible else "saved-pending")


@router.post("/customers/{customer_id}/unmerge")
async def unmerge_form(customer_id: str, user: PageUser, merges: MergesDep, now: NowDep,
                       email: Annotated[str, Form(max_length=320)] = ""):
    try:
        survivor, _duplicate, visible = await merges.unmerge(user.expert_id, customer_id, email, now, wait=True)
    except (NotFound, Refused):
        return _back(customer_id, "invalid")
    except CommandsUnavailable:
        return _back(customer_id, "unavailable")
    return _back(survivor, "unmerged" if visible else "saved-pending")
