"""`/customers` and `/customers/{id}`: the Customers section, rendered on the server from the
same queries and response builders as the JSON API. Note forms post back here."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from api.auth import Principal
from api.commands import CommandsUnavailable
from api.deps import ConnDep, NotesDep, NowDep, ProfilesDep, SettingsDep
from api.notes import NotFound, valid_customer_id
from api.profiles import Invalid
from api.routes.customers import TEXT, Sort, list_query
from api.schemas import detail, summary
from api.charts import Series, stacked_bars
from api.routes.insights import read
from api.web import money, page_principal, templates
from customers.commands import MAX_FIELDS, MAX_TAGS, MAX_TEXT_VALUE
from projections import queries

router = APIRouter(tags=["pages"], include_in_schema=False)
PageUser = Annotated[Principal, Depends(page_principal)]

SORT_LABELS = {"name": "Name", "appointments": "Appointments", "total_spend": "Total spend",
               "last_appointment": "Last appointment", "first_seen": "First seen", "last_contact": "Last contact"}
NOTICES = {
    "added": "Note added.",
    "pending": "Note saved. It will appear here in a moment.",
    "deleted": "Note deleted.",
    "delete-pending": "Note deletion accepted. It will disappear in a moment.",
    "empty": "A note cannot be empty.",
    "unavailable": "Notes cannot be saved right now. Please try again in a minute.",
    "gone": "That note no longer exists.",
    "tags": "Tags saved.",
    "fields": "Fields saved.",
    "archived": "Customer archived. They are left out of your list; “Archived” lists them.",
    "unarchived": "Customer back in your list.",
    "logged": "Contact logged.",
    "saved-pending": "Saved. It will show here in a moment.",
    "invalid": "That could not be saved.",
    "merged": "Merged. Everything of both is on this page now; “Split” below undoes it.",
    "unmerged": "Split. The other email is a customer of its own again.",
}
ERRORS = ("empty", "unavailable", "gone", "invalid")
# why a form was refused: the address carries the code, the page shows the text; an unknown code
# shows nothing more than "That could not be saved." (no text of the address reaches the page)
PROBLEMS = {
    "channel-and-summary": "a channel and a summary are needed",
    "not-a-time": "the time is not a date and time",
    "tag-length": "each tag must be 1 to 40 characters",
    "tag-nul": "a tag must not contain NUL",
    "tag-count": f"at most {MAX_TAGS} tags",
    "field-count": f"at most {MAX_FIELDS} values",
    "no-field": "no such custom field",
    "boolean": "must be true or false",
    "number": "must be a number",
    "finite": "must be a finite number",
    "range": "is out of range",
    "string": "must be a string",
    "nul": "must not contain NUL",
    "date": "must be a date, YYYY-MM-DD",
    "choice": "must be one of the field's choices",
    "text-length": f"must be 1 to {MAX_TEXT_VALUE} characters",
    "unfit": "the value does not fit",
}


STATUS_LABELS = {"new": "New", "active": "Active", "lapsed": "Lapsed"}


@router.get("/customers", response_class=HTMLResponse)
async def customers_page(
    request: Request, user: PageUser, conn: ConnDep,
    q: str | None = Query(default=None, max_length=200, pattern=TEXT),
    sort: Sort = "last_appointment",
    order: Literal["asc", "desc"] | None = None,
    cursor: str | None = Query(default=None, max_length=2000),
    limit: int = Query(default=25, ge=1, le=100),
    tag: list[str] = Query(default=[], max_length=20),
    archived: bool = False,
    status: Literal["new", "active", "lapsed"] | None = None,
):
    tags = [t for t in tag if 1 <= len(t.strip()) <= 40 and "\x00" not in t]
    if archived:
        status = None
    query = list_query(user.expert_id, q, None, sort, order, limit, cursor, tags, (), archived, status)
    try:
        page = await queries.list_customers(conn, query, request.app.state.totals)
    except queries.BadCursor:  # a stale link: start from the first page
        return RedirectResponse(request.url.remove_query_params("cursor"), status_code=303)
    filters = {"q": q or "", "tag": list(query.tags), "archived": "true" if archived else "", "status": status or ""}
    return templates.TemplateResponse(request, "customers.html", {
        "user": user, "q": q or "", "sort": sort, "order": query.direction, "limit": limit,
        "filters": filters, "tags": list(query.tags), "archived": archived, "status": status,
        "statuses": STATUS_LABELS,
        "customers": [summary(r) for r in page["rows"]],
        "total": page["total"],
        "next_cursor": page["next_cursor"], "prev_cursor": page["prev_cursor"], "as_of": page["as_of"],
        "sorts": SORT_LABELS, "first_page": not cursor,
    })


@router.get("/customers/{customer_id}", response_class=HTMLResponse)
async def customer_page(request: Request, customer_id: str, user: PageUser, conn: ConnDep, now: NowDep,
                        settings: SettingsDep,
                        notice: str | None = None,
                        problem: str | None = Query(default=None, max_length=40),
                        field: str | None = Query(default=None, max_length=40),
                        notes_before: str | None = Query(default=None, max_length=1000),
                        comms_before: str | None = Query(default=None, max_length=1000)):
    try:
        found = await queries.customer_detail(conn, user.expert_id, customer_id, notes_cursor=notes_before,
                                              communications_cursor=comms_before) \
            if valid_customer_id(customer_id) else None
    except queries.BadCursor:  # a stale link: the newest of each
        return RedirectResponse(request.url.remove_query_params(["notes_before", "comms_before"]), status_code=303)
    if found is None:
        return templates.TemplateResponse(request, "not_found.html", {"user": user}, status_code=404)
    if found["row"].customer_id != customer_id:  # merged into another: that one's page, for good
        return RedirectResponse(request.url.replace(path=f"/customers/{found['row'].customer_id}"), status_code=308)
    customer = detail(found, now, settings.livemode)
    upcoming = [a for a in customer.appointments if a.status in ("upcoming", "in_progress")]
    text = _notice(notice, problem, field, found.get("definitions", []))
    stored = dict(found["profile"].fields) if found.get("profile") is not None else {}
    return templates.TemplateResponse(request, "customer.html", {
        "user": user, "c": customer, "upcoming": list(reversed(upcoming)),
        "past": [a for a in customer.appointments if a not in upcoming],
        "definitions": found.get("definitions", []), "values": stored, "now": now,
        "notice": text, "notice_kind": "error" if notice in ERRORS else "ok",
        "notes_before": notes_before, "comms_before": comms_before,
        "status_notes": {"new": "First appointment upcoming or recent", "active": "A recent visit or one upcoming",
                         "lapsed": "No recent visit and none upcoming", "archived": "Archived"},
    })


def _notice(notice: str | None, problem: str | None, field: str | None, definitions: list[dict]) -> str | None:
    """The message for the codes in the address, from `NOTICES` and `PROBLEMS` only; a field is
    named by the label of the expert's own field with that key."""
    text = NOTICES.get(notice or "")
    if notice != "invalid" or problem not in PROBLEMS:
        return text
    label = next((d["label"] for d in definitions if field and d.get("key") == field), None)
    return f"That could not be saved: {f'{label}: ' if label else ''}{PROBLEMS[problem]}."


def _back(customer_id: str, notice: str, anchor: str = "notes", problem: str | None = None,
          field: str | None = None) -> RedirectResponse:
    """Back to the customer's page; `problem` is a key of `PROBLEMS`, `field` a custom field's key."""
    codes = {k: v for k, v in (("notice", notice), ("problem", problem), ("field", field)) if v}
    return RedirectResponse(f"/customers/{customer_id}?{urlencode(codes)}#{anchor}", status_code=303)


def _refused(exc: Invalid) -> tuple[str, str | None]:
    """(the `PROBLEMS` code of a refusal, the custom field it names, if any)."""
    code = next((c for c, text in PROBLEMS.items() if text == exc.message), "unfit")
    return code, exc.field.removeprefix("fields.") if exc.field.startswith("fields.") else None


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


async def _saved(request: Request, user, customer_id: str, action, done: str, anchor: str):
    """Run a profile write from a form, and go back to the customer with what became of it."""
    try:
        visible = await action
    except NotFound:
        return templates.TemplateResponse(request, "not_found.html", {"user": user}, status_code=404)
    except Invalid as exc:
        problem, field = _refused(exc)
        return _back(customer_id, "invalid", anchor, problem=problem, field=field)
    except CommandsUnavailable:
        return _back(customer_id, "unavailable", anchor)
    return _back(customer_id, done if visible else "saved-pending", anchor)


@router.post("/customers/{customer_id}/tags")
async def tags_form(request: Request, customer_id: str, user: PageUser, service: ProfilesDep, now: NowDep,
                    tags: Annotated[str, Form(max_length=1000)] = ""):
    """Tags as typed, separated by commas."""
    wanted = [t for t in (part.strip() for part in tags.replace("\x00", "").split(",")) if t]
    return await _saved(request, user, customer_id, service.set_tags(user.expert_id, customer_id, wanted, now),
                        "tags", "relationship")


@router.post("/customers/{customer_id}/fields")
async def fields_form(request: Request, customer_id: str, user: PageUser, service: ProfilesDep, now: NowDep):
    """One input per defined field (`field.KEY`); an empty one clears the value."""
    form = await request.form()
    definitions = {d["key"]: d for d in await service.definitions(user.expert_id)}
    values: dict = {}
    for key, definition in definitions.items():
        raw = form.get(f"field.{key}")
        if raw is None:
            continue
        raw = str(raw).replace("\x00", "").strip()
        if raw == "":
            values[key] = None
        elif definition["type"] == "boolean":
            values[key] = raw == "true"
        elif definition["type"] == "number":
            try:
                values[key] = float(raw) if any(ch in raw for ch in ".eE") else int(raw)
            except ValueError:
                values[key] = raw  # refused by the check, naming the field
        else:
            values[key] = raw
    return await _saved(request, user, customer_id, service.set_fields(user.expert_id, customer_id, values, now),
                        "fields", "relationship")


@router.post("/customers/{customer_id}/archive")
async def archive_form(request: Request, customer_id: str, user: PageUser, service: ProfilesDep, now: NowDep):
    return await _saved(request, user, customer_id, service.set_archived(user.expert_id, customer_id, True, now),
                        "archived", "person")


@router.post("/customers/{customer_id}/unarchive")
async def unarchive_form(request: Request, customer_id: str, user: PageUser, service: ProfilesDep, now: NowDep):
    return await _saved(request, user, customer_id, service.set_archived(user.expert_id, customer_id, False, now),
                        "unarchived", "person")


@router.post("/customers/{customer_id}/communications")
async def log_form(request: Request, customer_id: str, user: PageUser, service: ProfilesDep, now: NowDep,
                   channel: Annotated[str, Form(max_length=20)] = "phone",
                   summary: Annotated[str, Form(max_length=2000)] = "",
                   at: Annotated[str, Form(max_length=40)] = ""):
    """A contact the expert had; `at` as the browser's datetime-local, in UTC (the form says so)."""
    from datetime import datetime, timezone

    text = summary.replace("\x00", "").strip()
    if not text or channel not in ("phone", "email", "message", "in_person"):
        return _back(customer_id, "invalid", "communications", problem="channel-and-summary")
    try:
        when = datetime.fromisoformat(at) if at else now
        when = when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when.astimezone(timezone.utc)
    except ValueError:
        return _back(customer_id, "invalid", "communications", problem="not-a-time")

    async def logged() -> bool:
        _cid, row = await service.log_communication(user.expert_id, customer_id, channel, text, when, now)
        return row is not None
    return await _saved(request, user, customer_id, logged(), "logged", "communications")


@router.get("/insights", response_class=HTMLResponse)
async def insights_page(request: Request, user: PageUser, conn: ConnDep, now: NowDep,
                        first: str | None = Query(default=None, alias="from", max_length=7),
                        last: str | None = Query(default=None, alias="to", max_length=7)):
    """KPI cards and two charts (revenue by month, refunded on net; new and returning customers),
    each with a text summary and a table of the same numbers."""

    try:
        months, f, as_of, swept = await read(conn, user.expert_id, first, last, now, request.app.state.insights)
    except HTTPException:  # a bad range in the address: the last twelve months instead
        return RedirectResponse("/insights", status_code=303)
    labels = [m["month"] for m in f.months]
    short = [datetime.strptime(m, "%Y-%m").strftime("%b %y") for m in labels]
    totals = {m["currency"]: m for m in f.period["money"]}
    main = max(totals, key=lambda c: totals[c]["total_spend"] + totals[c]["refunded"], default=None)

    def of(month: dict, name: str) -> int:
        return next((x[name] for x in month["money"] if x["currency"] == main), 0)
    net = [max(of(m, "total_spend"), 0) for m in f.months]
    refunded = [of(m, "refunded") for m in f.months]
    new = [m["new_customers"] for m in f.months]
    returning = [m["returning_customers"] for m in f.months]
    busiest = max(range(len(labels)), key=lambda i: net[i], default=None)
    revenue_text = (f"Revenue in {main.upper()} from {short[0]} to {short[-1]}: "
                    f"{money(sum(net), main)} net of refunds, {money(sum(refunded), main)} refunded"
                    + (f"; the best month was {short[busiest]} with {money(net[busiest], main)}." if busiest is not None
                       and net[busiest] else ".")) if main else "No payments in these months."
    people_text = (f"From {short[0]} to {short[-1]}: {sum(new)} new customers and "
                   f"{sum(returning)} returning customer-months.")
    charts = {
        "revenue": stacked_bars("chart-revenue", f"Revenue by month ({main.upper() if main else 'no payments'})",
                                revenue_text, short,
                                [Series("net", net, "bar-net"), Series("refunded", refunded, "bar-refunded")],
                                tick_text=lambda v: money(v, main) if main else str(v)),
        "people": stacked_bars("chart-people", "New and returning customers by month", people_text, short,
                               [Series("new", new, "bar-new"), Series("returning", returning, "bar-returning")]),
    }
    completed = sum(m["completed"] for m in f.months)
    return templates.TemplateResponse(request, "insights.html", {
        "user": user, "f": f, "months": f.months, "short": short, "main": main, "charts": charts,
        "revenue_text": revenue_text, "people_text": people_text, "first": labels[0], "last": labels[-1],
        "net": net, "refunded": refunded, "new": new, "returning": returning, "completed": completed,
        "as_of": as_of, "swept": swept, "totals": f.period["money"],
    })
