from tests.integration.conftest import Stack, stack  # noqa: F401  (same real stack)
