"""`/admin/...`: the service's own account of itself, and erasures. Admin role only."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field, field_validator

from api.auth import AdminDep
from api.commands import CommandsUnavailable
from api.deps import CommandsDep, EngineDep, LagDep, SettingsDep
from api.schemas import errors
from customers.commands import erasure
from customers.events import normalise_email
from projections import queries

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
async def create_erasure(body: ErasureIn, _admin: AdminDep, settings: SettingsDep,
                         commands: CommandsDep) -> ErasureOut:
    """Erase a person from every expert's read model and notes, and keep them out of replays.

    The command is published; the worker projects it, the `erasures` ledger included."""
    command = erasure(settings.customer_id_secret, body.email)
    try:
        await commands.send(command)
    except CommandsUnavailable as exc:
        raise HTTPException(503, "Kafka is unavailable; nothing was erased yet, retry",
                            headers={"Retry-After": "5"}) from exc
    return ErasureOut(status="accepted", email_hash=command.email_hash)


@router.get("/status", responses=errors(403))
async def status(_admin: AdminDep, engine: EngineDep, lag: LagDep) -> dict:
    """Versions, lag per partition against the broker's high watermarks, newest applied event."""
    async with engine.connect() as conn:
        known = await queries.versions(conn)
    try:
        report = await lag.measure()
    except Exception as exc:  # noqa: BLE001
        return {"versions": known, "kafka": f"unavailable: {type(exc).__name__}"}
    return {
        "live_version": report.version,
        "versions": known,
        "as_of": report.newest_event,
        "lag": {"total": report.total,
                "partitions": [{"topic": tp[0], "partition": tp[1], **p} for tp, p in sorted(report.partitions.items())]},
    }
