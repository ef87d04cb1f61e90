"""The read API and pages: built by `create_app` from settings (the composition root)."""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI

from api.auth import TokenVerifier
from api.routes import customers
from customers.settings import Settings
from projections.db import make_engine


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        await app.state.engine.dispose()

    app = FastAPI(title="customers", version="1", lifespan=lifespan)
    app.state.settings = settings
    app.state.engine = make_engine(settings.database_url)
    app.state.verifier = TokenVerifier(settings)
    app.include_router(customers.router)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict:
        return {"status": "ok"}

    return app
