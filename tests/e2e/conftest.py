from tests.integration.conftest import Stack, open_stack, stack  # noqa: F401  (the same real stack)
