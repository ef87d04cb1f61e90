"""The retry policy of a batch, shared by the worker and `customers replay`.

A database outage is waited out (nothing is lost or dead-lettered meanwhile), however long it
lasts; any other failure is tried again up to `attempts` times, then raised for the dead-letter
handling (`streams.poison`). A failure that is not recognised as an outage still counts as one
while the database does not answer `select 1`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable

from projections.db import TRANSIENT, reachable
from projections.projector import Applied, Position, Projector, VersionChanged

log = logging.getLogger("customers.poison")


async def apply_with_retry(projector: Projector, batch: list[tuple[Position, Any]], *, attempts: int,
                           applied: Callable[[Applied, float, int], None]) -> None:
    """Apply `batch`; `applied(result, seconds, records)` is told once it is committed.

    `VersionChanged` is raised as it comes: nothing of the refused batch was written.
    """
    failures = outages = 0
    while True:
        started = time.perf_counter()
        try:
            result = await projector.apply(batch)
        except VersionChanged:
            raise
        except TRANSIENT as exc:
            outages += 1
            log.warning("database unavailable (%s), retrying", type(exc).__name__)
            await asyncio.sleep(min(5.0, 0.2 * outages))
            continue
        except Exception as exc:
            if not await reachable(projector.engine):
                # an outage that surfaced as another error: wait for the database, lose nothing
                outages += 1
                log.warning("database unreachable (%s), retrying", type(exc).__name__)
                await asyncio.sleep(min(5.0, 0.2 * outages))
                continue
            failures += 1
            if failures >= attempts:
                raise
            await asyncio.sleep(0.1 * failures)
            continue
        applied(result, time.perf_counter() - started, len(batch))
        return
