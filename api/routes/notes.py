"""`/api/customers/{id}/notes`: the expert's private notes on a customer.

A write is a command on `customer-commands`. The answer waits (boundedly) for the read model:
201 / 204 once it shows the change, else 202 with `Location` naming where it will appear.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Response
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


@router.get("", response_model=NoteList, responses=errors(404))
async def list_notes(customer_id: str, principal: PrincipalDep, notes: NotesDep, conn: ConnDep) -> NoteList:
    try:
        await notes.require_customer(principal.expert_id, customer_id)
    except NotFound as exc:
        raise HTTPException(404, "customer not found") from exc
    rows = await queries.notes_of(conn, principal.expert_id, customer_id)
    return NoteList(notes=[note_out(r) for r in rows])


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
