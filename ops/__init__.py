"""The composition root: the `customers` command and every operation it runs (up, demo, replay, erase, reconcile, dlq)."""
