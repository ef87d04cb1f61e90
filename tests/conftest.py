import asyncio

import pytest

from testing.harness import delete_created_topics, drop_created
from tests.integration.conftest import open_stack


def pytest_sessionfinish(session, exitstatus):
    """The databases and topics the tests created go with the run: PostgreSQL and Kafka keep them
    otherwise, run after run (a replica's base backup copies every database; the broker keeps
    every partition's files open, and runs out of them)."""
    for cleanup in (drop_created, delete_created_topics):
        try:
            asyncio.run(asyncio.wait_for(cleanup(), 120))
        except Exception:  # noqa: BLE001 - the infrastructure is down, or slow: left for the next reset
            pass


@pytest.fixture(scope="module")
async def pg_stack():
    """A stack of its own for one test module, on a fresh PostgreSQL database."""
    async with open_stack("postgresql") as opened:
        yield opened
