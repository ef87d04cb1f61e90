"""The pages' session cookie: a development sign-in (only with DEV_SIGN_IN) and sign-out.

In production the identity provider's sign-in sets the same cookie (`customers_session`) with
its JWT; `/dev/sign-in` does not exist there.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from api.auth import COOKIE, issue_token, same_origin
from api.deps import SettingsDep
from api.web import local_path, templates
from customers.settings import Settings

TTL_SECONDS = 12 * 3600
EXPERT_ID = r"^[A-Za-z0-9_.:@|-]{1,200}$"

router = APIRouter(tags=["session"], include_in_schema=False)
dev_router = APIRouter(prefix="/dev", tags=["session"], include_in_schema=False)


def _signed_in(request: Request, settings: Settings, expert_id: str, target: str | None) -> RedirectResponse:
    token = issue_token(settings, expert_id, ttl_seconds=TTL_SECONDS)
    response = RedirectResponse(local_path(target), status_code=303)
    response.set_cookie(COOKIE, token, max_age=TTL_SECONDS, path="/", httponly=True, samesite="lax",
                        secure=request.url.scheme == "https")
    return response


@dev_router.get("/sign-in", response_class=HTMLResponse)
async def sign_in_page(request: Request, settings: SettingsDep,
                       next: str | None = Query(default=None, max_length=2000),
                       expert_id: str | None = Query(default=None, pattern=EXPERT_ID)):
    if expert_id:  # a one-click link for local development
        return _signed_in(request, settings, expert_id, next)
    return templates.TemplateResponse(request, "sign_in.html", {"next": local_path(next), "user": None})


@dev_router.post("/sign-in")
async def sign_in(request: Request, settings: SettingsDep, expert_id: Annotated[str, Form(pattern=EXPERT_ID)],
                  next: Annotated[str | None, Form(max_length=2000)] = None):
    if not same_origin(request):
        raise HTTPException(403, "cross-origin request refused")
    return _signed_in(request, settings, expert_id, next)


@router.post("/sign-out")
async def sign_out(request: Request):
    if not same_origin(request):  # like every write the cookie carries: another site cannot sign one out
        raise HTTPException(403, "cross-origin request refused")
    response = RedirectResponse("/customers", status_code=303)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="lax", secure=request.url.scheme == "https")
    return response
