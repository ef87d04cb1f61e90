"""`/settings/fields`: the expert's custom field definitions, edited from a page.

Every action reads the definitions as they are, changes them (add, rename and edit choices, move,
remove) and writes the whole list back as `PUT /api/custom-fields` does: the same command, the same
rules and the same errors. A removed field's values are kept (defining its key again shows them).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import ValidationError

from api.auth import Principal
from api.commands import CommandsUnavailable
from api.deps import NowDep, ProfilesDep
from api.web import page_principal, templates
from customers.commands import FIELD_KEY, MAX_FIELDS, FieldDefinition, check_definitions

router = APIRouter(tags=["pages"], include_in_schema=False)
PageUser = Annotated[Principal, Depends(page_principal)]

TYPES = {"text": "Text", "number": "Number", "date": "Date", "boolean": "Yes / no", "choice": "Choice"}
NOTICES = {"added": "Field added.", "saved": "Fields saved.", "moved": "Order saved.", "removed":
           "Field removed. Its values are kept: adding a field with the same key shows them again.",
           "pending": "Saved. It will show here in a moment.",
           "unavailable": "Fields cannot be saved right now. Please try again in a minute."}


def _back(notice: str) -> RedirectResponse:
    return RedirectResponse(f"/settings/fields?{urlencode({'notice': notice})}", status_code=303)


def key_for(label: str, taken: set[str]) -> str:
    """A key from a label (`Date of birth` -> `date_of_birth`), made distinct from `taken`."""
    base = re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")
    base = ("f_" + base if base[:1].isdigit() else base)[:36].rstrip("_") or "field"
    key, n = base, 2
    while key in taken:
        key, n = f"{base}_{n}", n + 1
    return key


def _choices(text: str) -> list[str] | None:
    found = [c.strip() for c in re.split(r"[,\n]", text.replace("\x00", "")) if c.strip()]
    return list(dict.fromkeys(found)) or None


def problem_of(exc: Exception) -> str:
    """What a refusal says, as the API would say it (`definitions[i].field: message`)."""
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"] if p != "__root__")
        return f"{where}: {first['msg'].removeprefix('Value error, ')}" if where else \
            first["msg"].removeprefix("Value error, ")
    return str(exc)


async def _page(request: Request, user: Principal, service, *, notice: str | None = None,
                problem: str | None = None, draft: dict[str, str] | None = None, status_code: int = 200):
    return templates.TemplateResponse(request, "fields.html", {
        "user": user, "definitions": await service.definitions(user.expert_id), "types": TYPES,
        "max_fields": MAX_FIELDS, "notice": NOTICES.get(notice or ""),
        "notice_kind": "error" if notice == "unavailable" else "ok", "problem": problem, "draft": draft or {},
    }, status_code=status_code)


async def _define(request: Request, service, user: Principal, now, definitions: list[dict[str, Any]], done: str,
                  draft: dict[str, str] | None = None):
    """Write the definitions and go back to the page; a refusal is the page again (400) saying why,
    with what was typed in the new field's form."""
    try:
        if len(definitions) > MAX_FIELDS:
            raise ValueError(f"at most {MAX_FIELDS} fields")
        checked = []
        for d in definitions:
            try:
                checked.append(FieldDefinition(**d))
            except ValidationError as exc:  # named by what the expert sees: its label, else its key
                raise ValueError(f"{d.get('label') or d.get('key') or 'new field'}: {problem_of(exc)}") from exc
        check_definitions(checked)
    except (ValidationError, ValueError) as exc:
        return await _page(request, user, service, problem=problem_of(exc), draft=draft, status_code=400)
    try:
        visible = await service.define(user.expert_id, checked, now)
    except CommandsUnavailable:
        return _back("unavailable")
    return _back(done if visible else "pending")


@router.get("/settings/fields", response_class=HTMLResponse)
async def fields_page(request: Request, user: PageUser, service: ProfilesDep, notice: str | None = None):
    return await _page(request, user, service, notice=notice)


@router.post("/settings/fields/add")
async def add_field(request: Request, user: PageUser, service: ProfilesDep, now: NowDep,
                    label: Annotated[str, Form(max_length=200)] = "",
                    type: Annotated[str, Form(max_length=20)] = "text",
                    key: Annotated[str, Form(max_length=100)] = "",
                    choices: Annotated[str, Form(max_length=10_000)] = ""):
    current = await service.definitions(user.expert_id)
    label = label.replace("\x00", "").strip()
    key = key.strip() or key_for(label, {d["key"] for d in current})
    added = {"key": key, "label": label, "type": type}
    if type == "choice":
        added["choices"] = _choices(choices)
    draft = {"label": label, "type": type, "key": key, "choices": choices}
    return await _define(request, service, user, now, [*current, added], "added", draft)


@router.post("/settings/fields")
async def save_fields(request: Request, user: PageUser, service: ProfilesDep, now: NowDep):
    """Labels and choices of the fields as the form shows them (`label.KEY`, `choices.KEY`)."""
    form = await request.form()
    out = []
    for d in await service.definitions(user.expert_id):
        changed = dict(d)
        if (label := form.get(f"label.{d['key']}")) is not None:
            changed["label"] = str(label).replace("\x00", "").strip()
        if d["type"] == "choice" and (choices := form.get(f"choices.{d['key']}")) is not None:
            changed["choices"] = _choices(str(choices))
        out.append(changed)
    return await _define(request, service, user, now, out, "saved")


@router.post("/settings/fields/{key}/move")
async def move_field(request: Request, key: str, user: PageUser, service: ProfilesDep, now: NowDep,
                     to: Annotated[Literal["up", "down"], Form()] = "up"):
    current = await service.definitions(user.expert_id)
    at = next((i for i, d in enumerate(current) if d["key"] == key), None)
    if at is None or re.fullmatch(FIELD_KEY, key) is None:
        return await _page(request, user, service, problem="no such custom field", status_code=404)
    other = at - 1 if to == "up" else at + 1
    if 0 <= other < len(current):
        current[at], current[other] = current[other], current[at]
    return await _define(request, service, user, now, current, "moved")


@router.post("/settings/fields/{key}/remove")
async def remove_field(request: Request, key: str, user: PageUser, service: ProfilesDep, now: NowDep):
    current = await service.definitions(user.expert_id)
    if not any(d["key"] == key for d in current):
        return await _page(request, user, service, problem="no such custom field", status_code=404)
    return await _define(request, service, user, now, [d for d in current if d["key"] != key], "removed")
