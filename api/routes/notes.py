"""`/api/customers/{id}/notes`: the expert's private notes on a customer.

A write is a command on `customer-commands`. The answer waits (boundedly) for the read model:
201 / 204 once it shows the change, else 202 with `Location` naming where it will appear.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Query, Response
from fastapi.responses import JSONResponse

from api.auth import PrincipalDep
from api.commands import CommandsUnavailable
from api.deps import ConnDep, NotesDep, NowDep
from api.notes import NotFound
from api.schemas import NoteAccepted, NoteIn, NoteList, NoteOut, errors, note_out
from projections import queries

router = APIRouter(prefix="/api/customers/{customer_id}/notes", tags=["notes"])


def _location(customer_id: str, note_id: str) -> str:
    return f"/api/customers/{customer_id}/notes/{note_id}"


@router.get("", response_model=NoteList, responses=errors(400, 404))
async def list_notes(customer_id: str, principal: PrincipalDep, notes: NotesDep, conn: ConnDep,
                     limit: int = Query(default=queries.TIMELINE_LIMIT, ge=1, le=queries.TIMELINE_MAX),
                     cursor: str | None = Query(default=None, max_length=1000,
                                                description="`next_cursor` of the previous page")) -> NoteList:
    """The expert's notes on the customer, newest first, a page at a time."""
    try:
        await notes.require_customer(principal.expert_id, customer_id)
    except NotFound as exc:
        raise HTTPException(404, "customer not found") from exc
    try:
        rows, more = await queries.timeline_of(conn, queries.NOTES, principal.expert_id, customer_id, limit, cursor)
    except queries.BadCursor as exc:
        raise HTTPException(400, f"cursor: {exc}") from exc
    return NoteList(notes=[note_out(r) for r in rows], next_cursor=more)


@router.get("/{note_id}", response_model=NoteOut, responses=errors(404))
async def get_note(customer_id: str, note_id: str, principal: PrincipalDep, notes: NotesDep) -> NoteOut:
    try:
        return note_out(await notes.find(principal.expert_id, customer_id, note_id))
    except NotFound as exc:
        raise HTTPException(404, "note not found") from exc


@router.post("", status_code=201, response_model=NoteOut,
             responses={202: {"model": NoteAccepted, "description": "accepted, not visible yet"},
                        **errors(400, 404, 503)})
async def add_note(customer_id: str, payload: NoteIn, principal: PrincipalDep, notes: NotesDep, now: NowDep,
                   response: Response):
    try:
        added = await notes.add(principal.expert_id, customer_id, payload.body, now)
    except NotFound as exc:
        raise HTTPException(404, "customer not found") from exc
    except CommandsUnavailable as exc:
        raise HTTPException(503, str(exc), headers={"Retry-After": "5"}) from exc
    location = _location(customer_id, added.note_id)
    if added.row is None:
        return JSONResponse(NoteAccepted(id=added.note_id).model_dump(), status_code=202,
                            headers={"Location": location})
    response.headers["Location"] = location
    return note_out(added.row)


@router.delete("/{note_id}", status_code=204, response_class=Response,
               responses={202: {"description": "accepted, not visible yet"}, **errors(404, 503)})
async def delete_note(customer_id: str, note_id: str, principal: PrincipalDep, notes: NotesDep,
                      now: NowDep) -> Response:
    try:
        done = await notes.delete(principal.expert_id, customer_id, note_id, now)
    except NotFound as exc:
        raise HTTPException(404, "note not found") from exc
    except CommandsUnavailable as exc:
        raise HTTPException(503, str(exc), headers={"Retry-After": "5"}) from exc
    if done:
        return Response(status_code=204)
    return Response(status_code=202, headers={"Location": _location(customer_id, note_id)})
