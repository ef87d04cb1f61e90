"""`customers worker` with a fault the tests install: SIGKILL right after the Nth database commit
that applied records, before Kafka's commit. The service itself has no such switch.

    python -m testing.faulty_worker --kill-after-batches N [--metrics-port P]
"""

from __future__ import annotations

import argparse
import logging
import os
import signal

from customers.logs import configure
from customers.settings import get_settings
from streams.agents import Agents
from streams.worker import run

log = logging.getLogger("customers.worker")


def kill_after(batches: int):
    """A hook for `streams.worker.run`: wraps the applier's `applied` callback (told of every
    committed batch) so the process dies by SIGKILL once `batches` that applied records (not only
    skipped records the database had) have been committed."""

    def install(agents: Agents) -> None:
        told, committed = agents.applier.applied, 0

        def applied(result, *args) -> None:
            nonlocal committed
            told(result, *args)
            if not result.fresh:
                return
            committed += 1
            if committed >= batches:
                log.warning("fault injection: killing the worker after a database commit")
                os.kill(os.getpid(), signal.SIGKILL)

        agents.applier.applied = applied

    return install


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kill-after-batches", type=int, required=True)
    parser.add_argument("--metrics-port", type=int, default=0)
    args = parser.parse_args()
    settings = get_settings()
    configure("INFO", key=settings.customer_id_secret)
    run(settings, metrics_port=args.metrics_port or None, on_built=kill_after(args.kill_after_batches))


if __name__ == "__main__":
    main()
