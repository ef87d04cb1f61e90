"""`POST /api/customers/{id}/merge` and `/unmerge`: one person, one customer (CONTRACT v1.2).

Both answer 202 once the command is on `customer-commands` (the worker projects it; the detail of
either id then shows the survivor); 404 for a customer that is not the expert's, 409 for customers
that cannot be merged as they are, 503 when Kafka cannot take the command.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from api.auth import PrincipalDep
from api.commands import CommandsUnavailable
from api.deps import MergesDep, NowDep
from api.merges import Refused
from api.notes import NotFound
from api.schemas import errors
from customers.commands import CUSTOMER_ID

router = APIRouter(prefix="/api/customers/{customer_id}", tags=["customers"])


class MergeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    duplicate: str = Field(pattern=CUSTOMER_ID, description="the customer to merge into this one")


class UnmergeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: str = Field(min_length=3, max_length=320, pattern=r"^[^\x00]*$",
                       description="the email of a customer merged into this one")


class Accepted(BaseModel):
    id: str  # the surviving customer
    status: str = "pending"


def _refused(exc: Refused) -> HTTPException:
    """A 422 as the request's validation answers one (naming the field); 404 and 409 as text."""
    if exc.status == 422:
        return HTTPException(422, [{"type": "value_error", "loc": ["body", exc.field], "msg": exc.message,
                                    "input": None}])
    return HTTPException(exc.status, str(exc))


def _accepted(survivor: str) -> JSONResponse:
    return JSONResponse(Accepted(id=survivor).model_dump(), status_code=202,
                        headers={"Location": f"/api/customers/{survivor}"})


async def _answered(action) -> JSONResponse:
    """Run a merge or an unmerge (its first result: the survivor) and answer as the contract says."""
    try:
        survivor = (await action)[0]
    except NotFound as exc:
        raise HTTPException(404, "customer not found") from exc
    except Refused as exc:
        raise _refused(exc) from exc
    except CommandsUnavailable as exc:
        raise HTTPException(503, str(exc), headers={"Retry-After": "5"}) from exc
    return _accepted(survivor)


@router.post("/merge", status_code=202, response_model=Accepted, responses=errors(400, 404, 409, 503))
async def merge(customer_id: str, payload: MergeIn, principal: PrincipalDep, merges: MergesDep, now: NowDep):
    """Make one customer of two: `duplicate` counts in this one from the worker's next batch."""
    return await _answered(merges.merge(principal.expert_id, customer_id, payload.duplicate, now))


@router.post("/unmerge", status_code=202, response_model=Accepted, responses=errors(400, 404, 409, 503))
async def unmerge(customer_id: str, payload: UnmergeIn, principal: PrincipalDep, merges: MergesDep, now: NowDep):
    """Split the customer of `email` from this one again, as if never merged."""
    return await _answered(merges.unmerge(principal.expert_id, customer_id, payload.email, now))
