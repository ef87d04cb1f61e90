import tempfile
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from api.app import create_app as create_api
from api.auth import issue_token
from projections.db import migrate
from testing.harness import WorkerProcess, asgi_client, fresh_pg_database, settings_for
from webhooks.app import create_app as create_intake


@asynccontextmanager
async def open_stack(backend: str, **overrides):
    """Worker (a real process) + intake + API on the real broker, over a fresh database."""
    if backend == "postgresql":
        url = overrides.pop("database_url", None) or await fresh_pg_database()
    else:
        url = f"sqlite+aiosqlite:///{Path(tempfile.mkdtemp()) / 'customers.db'}"
    settings = settings_for(url, **overrides)
    await migrate(url)
    worker = WorkerProcess(settings, name=f"worker-{backend}").start()
    intake_app, api_app = create_intake(settings), create_api(settings)
    stack = None
    try:
        async with asgi_client(intake_app) as intake, asgi_client(api_app) as api:
            stack = Stack(backend, settings, worker, intake, api)
            stack.api_app = api_app
            yield stack
    finally:
        (stack.worker if stack else worker).stop()
        await intake_app.state.intake.close()
        await api_app.state.commands.close()
        await api_app.state.engine.dispose()


@pytest.fixture(scope="module", params=["postgresql", "sqlite"])
async def stack(request):
    async with open_stack(request.param) as opened:
        yield opened


class Stack:
    def __init__(self, backend, settings, worker, intake, api):
        self.backend, self.settings, self.worker, self.intake, self.api = backend, settings, worker, intake, api

    def token(self, expert_id: str, **kw) -> str:
        return issue_token(self.settings, expert_id, **kw)

    def auth(self, expert_id: str, **kw) -> dict:
        return {"Authorization": f"Bearer {self.token(expert_id, **kw)}"}

    async def post_bookings(self, events):
        return await self.intake.post("/events/bookings", json=events,
                                      headers={"Authorization": f"Bearer {self.settings.ingest_token}"})

    async def post_stripe(self, event, secret: str | None = None):
        from webhooks.signing import signature_header
        import json

        body = event if isinstance(event, bytes) else json.dumps(event).encode()
        sig = signature_header(body, secret or self.settings.webhook_secrets[0])
        return await self.intake.post("/webhooks/stripe", content=body,
                                      headers={"Stripe-Signature": sig, "Content-Type": "application/json"})
