"""`/admin/...`: the service's own account of itself, and erasures. Admin role only."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field, field_validator

from api.auth import AdminDep
from api.commands import CommandsUnavailable
from api.schemas import errors
from ops.erasure import erase
from customers.events import normalise_email
from projections.versions import versions

router = APIRouter(prefix="/admin", tags=["admin"])


class ErasureIn(BaseModel):
    email: str = Field(min_length=3, max_length=320)

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        value = normalise_email(value)
        if "@" not in value:
            raise ValueError("not an email address")
        return value


class ErasureOut(BaseModel):
    status: str
    email_hash: str


@router.post("/erasures", status_code=202, response_model=ErasureOut, responses=errors(400, 403, 503))
async def create_erasure(body: ErasureIn, request: Request, _admin: AdminDep) -> ErasureOut:
    """Erase a person from every expert's read model and notes, and keep them out of replays."""
    state = request.app.state
    try:
        command = await erase(state.settings, state.engine, state.commands.send, body.email)
    except CommandsUnavailable as exc:
        raise HTTPException(503, "Kafka is unavailable; the erasure is in the ledger, retry to publish it",
                            headers={"Retry-After": "5"}) from exc
    return ErasureOut(status="accepted", email_hash=command.email_hash)


@router.get("/status", responses=errors(403))
async def status(request: Request, _admin: AdminDep) -> dict:
    """Versions, lag per partition against the broker's high watermarks, newest applied event."""
    state = request.app.state
    async with state.engine.connect() as conn:
        known = await versions(conn)
    try:
        report = await state.lag.measure()
    except Exception as exc:  # noqa: BLE001
        return {"versions": known, "kafka": f"unavailable: {type(exc).__name__}"}
    return {
        "live_version": report.version,
        "versions": known,
        "as_of": report.newest_event,
        "lag": {"total": report.total,
                "partitions": [{"topic": tp[0], "partition": tp[1], **p} for tp, p in sorted(report.partitions.items())]},
    }
