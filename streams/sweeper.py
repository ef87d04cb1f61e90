"""The worker's clock: applies the passing of time to the projection on a schedule.

Every `SWEEP_INTERVAL_SECONDS` (and once when the worker starts) the projector sweeps its version
up to the present (`projections.sweep`): customers whose appointments started or ended since the
previous sweep are recounted, so stored counts are never older than one interval. Every worker
sweeps; a sweep another worker already made is a no-op, and a failed one is made good by the next.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone

import faust

from customers.settings import Settings
from projections.projector import Projector, VersionChanged
from streams.metrics import WorkerMetrics

log = logging.getLogger("customers.worker")


class Sweeper:
    def __init__(self, app: faust.App, settings: Settings, projector: Projector, metrics: WorkerMetrics) -> None:
        self.projector, self.metrics = projector, metrics
        app.task(self.sweep)
        app.timer(settings.sweep_interval_seconds, name="sweep")(self.sweep)

    async def sweep(self) -> None:
        try:
            swept = await self.projector.sweep(datetime.now(timezone.utc))
        except VersionChanged:
            return  # readers moved to a new version: the `project` agent restarts the worker on it
        except Exception as exc:  # noqa: BLE001 - a database outage: the next sweep covers this one's window
            log.warning("sweep failed (%s); the next one catches up", type(exc).__name__)
            return
        if swept is not None:
            self.metrics.swept(swept)
