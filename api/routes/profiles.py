"""The expert's own data on customers: custom field definitions, field values, tags, archive,
and the contacts they log (communications).

Each write is a command on `customer-commands`, like a note. The answer waits (boundedly) for
the read model: 204 once it shows the change, else 202 with `Location` naming where it will
appear. A value that does not fit is a 422 naming the field; nothing is published then.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Query, Response
from fastapi.responses import JSONResponse

from api.auth import PrincipalDep
from api.commands import CommandsUnavailable
from api.deps import ConnDep, NowDep, ProfilesDep
from api.notes import NotFound
from api.profiles import Invalid
from api.schemas import CommunicationIn, CommunicationList, CommunicationOut, NoteAccepted, communication_out, errors
from projections import queries
from customers.commands import MAX_FIELDS, MAX_TAGS, FieldDefinition, check_definitions

router = APIRouter(tags=["custom fields, tags, archive"])


WRITTEN = {202: {"description": "accepted, not visible yet"}, **errors(400, 404, 503)}


def _invalid(exc: Invalid) -> JSONResponse:
    parts = exc.field.split(".")
    loc = ["body", *(parts[1:] if parts[0] in ("body", "fields") else parts)]
    return JSONResponse({"detail": [{"loc": loc, "msg": f"{exc.field}: {exc.message}", "type": "value_error"}]},
                        status_code=422)


def _answer(visible: bool, location: str) -> Response:
    return Response(status_code=204) if visible else Response(status_code=202, headers={"Location": location})


async def _write(action, location: str) -> Response:
    try:
        return _answer(await action, location)
    except NotFound as exc:
        raise HTTPException(404, "customer not found") from exc
    except Invalid as exc:
        return _invalid(exc)
    except CommandsUnavailable as exc:
        raise HTTPException(503, str(exc), headers={"Retry-After": "5"}) from exc


@router.get("/api/custom-fields", response_model=list[FieldDefinition], response_model_exclude_none=True)
async def get_custom_fields(principal: PrincipalDep, service: ProfilesDep) -> list[dict[str, Any]]:
    """The expert's custom field definitions, in their order."""
    return await service.definitions(principal.expert_id)


@router.put("/api/custom-fields", status_code=204, response_class=Response, responses=WRITTEN)
async def put_custom_fields(principal: PrincipalDep, service: ProfilesDep, now: NowDep,
                            definitions: Annotated[list[FieldDefinition], Body(max_length=MAX_FIELDS)]) -> Response:
    """Replace the definitions. A key left out hides its values, kept: defining it again shows them."""
    try:
        check_definitions(definitions)
    except ValueError as exc:
        return _invalid(Invalid("definitions", str(exc)))
    return await _write(service.define(principal.expert_id, definitions, now), "/api/custom-fields")


@router.put("/api/customers/{customer_id}/fields", status_code=204, response_class=Response, responses=WRITTEN)
async def put_fields(customer_id: str, principal: PrincipalDep, service: ProfilesDep, now: NowDep,
                     values: Annotated[dict[str, bool | int | float | str | None], Body(max_length=MAX_FIELDS)]
                     ) -> Response:
    """Set the named fields (each checked against its definition); `null` clears one."""
    return await _write(service.set_fields(principal.expert_id, customer_id, values, now),
                        f"/api/customers/{customer_id}")


@router.put("/api/customers/{customer_id}/tags", status_code=204, response_class=Response, responses=WRITTEN)
async def put_tags(customer_id: str, principal: PrincipalDep, service: ProfilesDep, now: NowDep,
                   tags: Annotated[list[str], Body(max_length=MAX_TAGS)]) -> Response:
    """The customer's whole set of tags (trimmed, lower-cased, each once)."""
    return await _write(service.set_tags(principal.expert_id, customer_id, tags, now),
                        f"/api/customers/{customer_id}")


@router.post("/api/customers/{customer_id}/archive", status_code=204, response_class=Response, responses=WRITTEN)
async def archive(customer_id: str, principal: PrincipalDep, service: ProfilesDep, now: NowDep) -> Response:
    """Leave the customer out of the default list (`archived=true` lists them)."""
    return await _write(service.set_archived(principal.expert_id, customer_id, True, now),
                        f"/api/customers/{customer_id}")


@router.post("/api/customers/{customer_id}/unarchive", status_code=204, response_class=Response, responses=WRITTEN)
async def unarchive(customer_id: str, principal: PrincipalDep, service: ProfilesDep, now: NowDep) -> Response:
    return await _write(service.set_archived(principal.expert_id, customer_id, False, now),
                        f"/api/customers/{customer_id}")


@router.post("/api/customers/{customer_id}/communications", status_code=201, response_model=CommunicationOut,
             responses={202: {"model": NoteAccepted, "description": "accepted, not visible yet"},
                        **errors(400, 404, 503)})
async def log_communication(customer_id: str, payload: CommunicationIn, principal: PrincipalDep,
                            service: ProfilesDep, now: NowDep, response: Response):
    """Record a contact with the customer (a call, an email or message sent outside the platform, a
    meeting in person); it joins the platform's messages in the detail's `communications`."""
    try:
        cid, row = await service.log_communication(principal.expert_id, customer_id, payload.channel,
                                                   payload.summary, payload.at, now)
    except NotFound as exc:
        raise HTTPException(404, "customer not found") from exc
    except CommandsUnavailable as exc:
        raise HTTPException(503, str(exc), headers={"Retry-After": "5"}) from exc
    location = f"/api/customers/{customer_id}/communications/{cid}"
    if row is None:
        return JSONResponse(NoteAccepted(id=cid).model_dump(), status_code=202, headers={"Location": location})
    response.headers["Location"] = location
    return communication_out(row)


@router.get("/api/customers/{customer_id}/communications", response_model=CommunicationList,
            responses=errors(400, 404))
async def list_communications(customer_id: str, principal: PrincipalDep, service: ProfilesDep, conn: ConnDep,
                              limit: int = Query(default=queries.TIMELINE_LIMIT, ge=1, le=queries.TIMELINE_MAX),
                              cursor: str | None = Query(default=None, max_length=1000,
                                                         description="`next_cursor` of the previous page"),
                              ) -> CommunicationList:
    """What the platform sent the customer and the contacts the expert logged, newest first, a
    page at a time."""
    try:
        await service.notes.require_customer(principal.expert_id, customer_id)
    except NotFound as exc:
        raise HTTPException(404, "customer not found") from exc
    try:
        rows, more = await queries.timeline_of(conn, queries.COMMUNICATIONS, principal.expert_id, customer_id,
                                               limit, cursor)
    except queries.BadCursor as exc:
        raise HTTPException(400, f"cursor: {exc}") from exc
    return CommunicationList(communications=[communication_out(r) for r in rows], next_cursor=more)


@router.get("/api/customers/{customer_id}/communications/{communication_id}", response_model=CommunicationOut,
            responses=errors(404))
async def get_communication(customer_id: str, communication_id: str, principal: PrincipalDep,
                            service: ProfilesDep) -> CommunicationOut:
    try:
        return communication_out(await service.communication(principal.expert_id, customer_id, communication_id))
    except NotFound as exc:
        raise HTTPException(404, "not found") from exc
