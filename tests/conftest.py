import asyncio

import pytest

from testing.harness import drop_created
from tests.integration.conftest import open_stack


def pytest_sessionfinish(session, exitstatus):
    """The databases the tests created go with the run (PostgreSQL keeps them otherwise, run after
    run, and a replica's base backup copies them all)."""
    try:
        asyncio.run(drop_created())
    except OSError:  # PostgreSQL is not up (a run without the infrastructure): nothing was created
        pass


@pytest.fixture(scope="module")
async def pg_stack():
    """A stack of its own for one test module, on a fresh PostgreSQL database."""
    async with open_stack("postgresql") as opened:
        yield opened
