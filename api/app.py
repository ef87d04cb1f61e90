"""The read API and pages: built by `create_app` from settings (the composition root)."""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from api.auth import TokenVerifier
from api.commands import CommandBus
from api.middleware import AccessLog, SecurityHeaders
from api.merges import Merges
from api.notes import Notes
from api.profiles import Profiles
from api.ops import ApiMetrics, LagProbe
from api.routes import (admin, customers, export, field_settings, insights, merge_pages, merges, metrics, notes, pages,
                        profiles, session)
from api.web import HERE, SignInRequired, sign_in_url, templates
from customers.bodies import BodyLimit, shown_errors
from customers.settings import Settings
from customers.telemetry import fastapi_options
from projections.queries import Kept, make_engine


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        await app.state.commands.close()
        await app.state.engine.dispose()

    app = FastAPI(title="customers", version="1", lifespan=lifespan,
                  description="An expert's customers: list, detail, notes and export.", **fastapi_options(settings))
    app.state.settings = settings
    # read only (every change goes through Kafka), each statement on its own: no BEGIN and ROLLBACK
    # around a page (a statement under READ COMMITTED has its own snapshot anyway; the export asks
    # for one snapshot of its own)
    app.state.engine = make_engine(settings.reads_from, isolation_level="AUTOCOMMIT")
    app.state.totals = Kept()  # list totals per expert generation (`projections.queries.Kept`)
    app.state.insights = Kept(2_000)  # insights' figures, the same way
    app.state.verifier = TokenVerifier(settings)
    app.state.commands = CommandBus(settings)
    app.state.metrics = ApiMetrics()
    app.state.lag = LagProbe(settings, app.state.engine)
    app.state.notes = Notes(app.state.engine, app.state.commands, settings.notes_visible_wait_seconds)
    app.state.profiles = Profiles(app.state.notes)
    app.state.merges = Merges(app.state.notes, settings.customer_id_secret)

    app.add_middleware(BodyLimit, max_bytes=settings.api_max_body_bytes)  # inside: its 413 gets the headers
    app.add_middleware(SecurityHeaders)
    app.add_middleware(AccessLog)

    _include_api(app)
    _include_pages(app, settings)
    _include_operations(app)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        if exc.status_code == 405:  # Allow: every method of the path, not only the first route's
            exc.headers = {**(exc.headers or {}), "Allow": ", ".join(_methods_of(app, request))}
        return await http_exception_handler(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError):  # what was sent, shortened
        return JSONResponse({"detail": jsonable_encoder(shown_errors(exc.errors()))}, status_code=422)

    return app


def _methods_of(app: FastAPI, request: Request) -> list[str]:
    methods: set[str] = set()
    for route in app.router.routes:
        match, _ = route.matches(request.scope)
        if match != Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return sorted(methods)


def _include_api(app: FastAPI) -> None:
    app.include_router(export.router)  # before customers: `/export.csv` is not a `/{customer_id}`
    app.include_router(customers.router)
    app.include_router(notes.router)
    app.include_router(profiles.router)
    app.include_router(merges.router)
    app.include_router(insights.router)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict:
        return {"status": "ok"}


def _include_pages(app: FastAPI, settings: Settings) -> None:
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(pages.router)
    app.include_router(field_settings.router)
    app.include_router(merge_pages.router)
    app.include_router(session.router)
    dev_sign_in = settings.dev_sign_in and bool(settings.auth_jwt_secret)
    if dev_sign_in:
        app.include_router(session.dev_router)

    @app.exception_handler(SignInRequired)
    async def _sign_in(request: Request, _exc: SignInRequired):
        if dev_sign_in:
            return RedirectResponse(sign_in_url(request), status_code=303)
        return templates.TemplateResponse(request, "sign_in_required.html", {"user": None}, status_code=401,
                                          headers={"WWW-Authenticate": "Bearer"})

    @app.get("/", include_in_schema=False)
    async def home() -> RedirectResponse:
        return RedirectResponse("/customers", status_code=303)


def _include_operations(app: FastAPI) -> None:
    """Operations endpoints, each resource in a router of its own:

    - `api/routes/admin.py`: `/admin/...` (status, erasures), guarded by `api.auth.AdminDep`;
    - `api/routes/metrics.py`: `/readyz` and `/metrics`.

    They are included here, after the API and the pages.
    """
    app.include_router(admin.router)
    app.include_router(metrics.router)
