"""The worker's Prometheus metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from projections.projector import Applied
from projections.sweep import Swept


class WorkerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.applied = Counter("customers_events_applied", "Events applied to the read model, by type",
                               ["type"], registry=r)
        self.skipped = Counter("customers_events_skipped", "Events skipped (already applied, erased)",
                               ["reason"], registry=r)
        self.latency = Histogram("customers_apply_seconds", "Time to apply one batch in one transaction",
                                 registry=r, buckets=(.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5))
        self.batch_size = Histogram("customers_apply_batch_size", "Records per applied batch", registry=r,
                                    buckets=(1, 10, 50, 100, 250, 500, 1000))
        self.retries = Counter("customers_batch_retries", "Batches run again for another worker's sake "
                               "(more keys to lock than their records named, a deadlock)", registry=r)
        self.dead_letters = Counter("customers_dead_letters", "Records sent to a dead-letter topic",
                                    ["topic"], registry=r)
        self.newest_event = Gauge("customers_newest_event_timestamp_seconds",
                                  "Kafka timestamp of the newest record applied", registry=r)
        self.swept_until = Gauge("customers_swept_until_timestamp_seconds",
                                 "Time up to which appointment counts are applied (the last sweep)", registry=r)
        self.recounted = Counter("customers_sweep_recounted", "Customers recounted by sweeps", registry=r)

    def observe(self, result: Applied, seconds: float, records: int) -> None:
        for kind, n in result.by_type.items():
            self.applied.labels(type=kind).inc(n)
        if result.skipped_offsets:
            self.skipped.labels(reason="already_applied").inc(result.skipped_offsets)
        if result.skipped_erased:
            self.skipped.labels(reason="erased").inc(result.skipped_erased)
        if result.retries:
            self.retries.inc(result.retries)
        self.latency.observe(seconds)
        self.batch_size.observe(records)
        if result.newest_event_time:
            self.newest_event.set(result.newest_event_time.timestamp())

    def swept(self, swept: Swept) -> None:
        self.swept_until.set(swept.until.timestamp())
        self.recounted.inc(swept.customers)


def peak_rss_mb(pid: int | None = None) -> float | None:
    """Peak resident memory of a process since it started (or since its count was reset: Linux
    VmHWM), in MiB; None where /proc does not tell."""
    try:
        with open(f"/proc/{pid or 'self'}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None
