import pytest

from tests.integration.conftest import open_stack


@pytest.fixture(scope="module")
async def pg_stack():
    """A stack of its own for one test module, on a fresh PostgreSQL database."""
    async with open_stack("postgresql") as opened:
        yield opened
