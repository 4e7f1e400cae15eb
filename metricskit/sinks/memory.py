"""An in-memory sink: keeps every exported batch, for tests and ``sink="memory"``."""

from __future__ import annotations

import threading
import time

from metricskit.batch import Metric, MetricBatch, MetricKind
from metricskit.sinks.base import BaseSink, ExportResult


class MemorySink(BaseSink):
    """Keeps exported batches in a list and answers questions about them.

    >>> sink = MemorySink()
    >>> with metricskit.Job("j", sink=sink) as job:   # doctest: +SKIP
    ...     job.processed(3)
    >>> sink.sum("RecordsProcessed")                    # doctest: +SKIP
    3.0

    ``fail_exports`` makes exports fail (as an outage would) until set back to False;
    ``concurrent_exports_seen`` is the most exports ever in progress at once (1 is correct).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._batches: list[MetricBatch] = []
        self.fail_exports = False
        self.export_delay = 0.0
        self.export_calls = 0
        self.concurrent_exports_seen = 0
        self._in_export = 0

    def export(self, batch: MetricBatch) -> ExportResult:
        with self._lock:
            self._in_export += 1
            self.concurrent_exports_seen = max(self.concurrent_exports_seen, self._in_export)
            self.export_calls += 1
        try:
            if self.export_delay:
                time.sleep(self.export_delay)  # widens the window in which overlap would show
            if self.fail_exports:
                return ExportResult.failed(batch)
            with self._lock:
                self._batches.append(batch)
            return ExportResult.ok()
        finally:
            with self._lock:
                self._in_export -= 1

    @property
    def batches(self) -> list[MetricBatch]:
        """Every batch delivered so far, oldest first."""
        with self._lock:
            return list(self._batches)

    def metrics(self, name: str | None = None, **dimensions: str) -> list[Metric]:
        """Delivered metrics, optionally only those named ``name`` with these dimensions."""
        return [m for b in self.batches for m in b if _matches(m, name, dimensions)]

    def sum(self, name: str, **dimensions: str) -> float:
        """Sum of a counter, or of a distribution's observations, over every batch."""
        return sum(m.total for m in self.metrics(name, **dimensions))

    def count(self, name: str, **dimensions: str) -> float:
        """How many observations a distribution received over every batch."""
        return sum(m.sample_count for m in self.metrics(name, **dimensions))

    def last(self, name: str, **dimensions: str) -> float | None:
        """The last delivered value of a gauge (or counter delta), or None."""
        found = self.metrics(name, **dimensions)
        return found[-1].value if found else None

    def values(self, name: str, **dimensions: str) -> list[float]:
        """A distribution's observations expanded from Values/Counts (bucket representatives)."""
        expanded: list[float] = []
        for metric in self.metrics(name, **dimensions):
            if metric.kind is MetricKind.DISTRIBUTION:
                for value, count in zip(metric.values, metric.counts, strict=True):
                    expanded.extend([value] * int(count))
        return expanded

    def names(self) -> set[str]:
        """Every metric name delivered so far."""
        return {m.name for m in self.metrics()}

    def clear(self) -> None:
        with self._lock:
            self._batches.clear()


def _matches(metric: Metric, name: str | None, dimensions: dict[str, str]) -> bool:
    if name is not None and metric.name != name:
        return False
    return all(metric.key.dimension(k) == v for k, v in dimensions.items())
