"""`/api/customers/export.csv`: every customer of the expert with summary figures, streamed."""

from __future__ import annotations

from typing import AsyncIterator

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from api.auth import PrincipalDep
from api.deps import EngineDep
from api.export import Currencies, Layout, csv_chunks
from api.schemas import errors
from projections import queries

router = APIRouter(prefix="/api/customers", tags=["customers"])

CSV = "text/csv; charset=utf-8"


@router.get("/export.csv", response_class=StreamingResponse,
            responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}},
                             "description": "RFC 4180 CSV, one line per customer, money in columns per currency"},
                       **errors()})
async def export_csv(principal: PrincipalDep, engine: EngineDep) -> StreamingResponse:

    async def body() -> AsyncIterator[bytes]:
        # its own connection: the response outlives the request's dependencies
        # one snapshot for both passes, the currencies then the lines (SQLite's transactions are one)
        async with engine.connect() as conn:
            await conn.execution_options(  # the app's engine runs other reads without transactions
                isolation_level="REPEATABLE READ" if conn.dialect.name == "postgresql" else "SERIALIZABLE")
            await conn.begin()
            currencies = Currencies()
            async for row, _profile in queries.stream_customers(conn, principal.expert_id, profiles=False):
                currencies.add(row)
            fields = tuple(d["key"] for d in await queries.field_definitions(conn, principal.expert_id))
            layout = Layout(currencies.sorted(), fields)
            async for chunk in csv_chunks(layout, queries.stream_customers(conn, principal.expert_id)):
                yield chunk

    return StreamingResponse(body(), media_type=CSV, headers={
        "Content-Disposition": 'attachment; filename="customers.csv"', "Cache-Control": "no-store"})
