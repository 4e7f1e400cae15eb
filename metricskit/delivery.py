"""Pending periods on their way to a sink: ordered, merged when too many, retried with backoff.

The flusher submits one batch per period. When the sink fails (CloudWatch down, throttled for
minutes), batches stay queued in order. Past ``max_queued`` the two oldest merge into one
coarser period: counters and distribution counts add exactly, so an outage of any length
costs time resolution, never counts, and memory stays bounded by series x buckets.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable

from metricskit.backoff import Backoff
from metricskit.batch import MetricBatch
from metricskit.sinks.base import Exporter, ExportResult

logger = logging.getLogger("metricskit")

_BROKEN_CONTRACT: ExportResult = ExportResult(False, None, retryable=False)
"""Stands for an export whose sink returned something other than an ExportResult."""


class Delivery:
    """Owns the queue of undelivered batches for one job and its sink.

    ``deliver`` is serialized by a lock, so the sink is never entered twice at once.
    """

    def __init__(
        self,
        sink: Exporter,
        *,
        max_queued: int,
        base_backoff: float,
        clock: Callable[[], float],
    ) -> None:
        self._sink = sink
        self._max_queued = max(1, max_queued)
        self._backoff = Backoff(base_backoff)
        self._clock = clock
        self._pending: deque[MetricBatch] = deque()
        self._queue_lock = threading.Lock()
        self.export_lock = threading.Lock()
        self.failed_exports = 0
        self.dropped_batches = 0
        self.merged_periods = 0
        self.rejected_series = 0
        """Series the sink left out for good (``ExportResult.rejected``), summed."""
        self.retries = 0
        """Exports of a batch kept after a failed one, plus the requests the sink itself sent
        again (``ExportResult.retries``)."""
        self._head_failed = False
        self._warned_contract = False
        self.last_error: BaseException | None = None
        """What stopped the last failed export, if the sink said (None after a success)."""

    @property
    def queued(self) -> int:
        """Batches waiting for delivery."""
        with self._queue_lock:
            return len(self._pending)

    def pending(self) -> tuple[MetricBatch, ...]:
        """The batches waiting for delivery, oldest first (a snapshot)."""
        with self._queue_lock:
            return tuple(self._pending)

    def submit(self, batch: MetricBatch) -> None:
        """Queue a period; merge the oldest ones when the queue is over its bound."""
        if not batch.metrics:
            return
        with self._queue_lock:
            self._pending.append(batch)
            while len(self._pending) > self._max_queued:
                oldest = self._pending.popleft()
                self._pending[0] = oldest.merged_with(self._pending[0])
                self.merged_periods += 1

    def deliver(self, *, force: bool = False) -> bool:
        """Export queued batches oldest first; stop at the first failure.

        Returns True when nothing is left queued. Unless ``force``, does nothing while the
        backoff after a failure has not yet elapsed. The caller holds ``export_lock``.
        """
        if not force and not self._backoff.ready(self._clock()):
            return False
        while True:
            with self._queue_lock:
                if not self._pending:
                    return True
                batch = self._pending[0]
            result = self._export(batch)
            with self._queue_lock:
                self.last_error = None if result.success else result.error
                self.rejected_series += result.rejected
                self.retries += result.retries + self._head_failed
                if result.success or not result.retryable:
                    self._pending.popleft()
                    self._head_failed = False
                    if not result.success:
                        self.dropped_batches += 1
                        if result is _BROKEN_CONTRACT:
                            self.failed_exports += 1
                    else:
                        self._backoff.succeeded()
                    continue
                if result.remainder is not None:
                    self._pending[0] = result.remainder
                self._head_failed = True
                self.failed_exports += 1
                self._backoff.failed(self._clock())
                return False

    def _export(self, batch: MetricBatch) -> ExportResult:
        try:
            result: object = self._sink.export(batch)
        except Exception:  # a sink that breaks its contract must not kill the flusher
            logger.exception("metricskit: sink %r raised; the batch is kept", self._sink)
            return ExportResult.failed(batch)
        if isinstance(result, ExportResult):
            return result
        # Nothing says what arrived: retrying could send it all twice, at every flush. Drop
        # it, counted as a failed export, and say once what the sink must return.
        if not self._warned_contract:
            self._warned_contract = True
            logger.error(
                "metricskit: sink %r returned %r from export(); export() must return an "
                "ExportResult (ExportResult.ok(), or ExportResult.failed(remainder) for what "
                "is still owed). Such batches are dropped, not retried, and counted in "
                "MetricskitFailedExports",
                self._sink,
                result,
            )
        return _BROKEN_CONTRACT

    def reset_after_fork(self) -> None:
        """In a forked child: the parent delivers what it had queued, and reports its own
        failures; the child counts from zero."""
        self._queue_lock = threading.Lock()
        self.export_lock = threading.Lock()
        self._pending.clear()
        self._backoff.succeeded()
        self.failed_exports = 0
        self.dropped_batches = 0
        self.merged_periods = 0
        self.rejected_series = 0
        self.retries = 0
        self._head_failed = False
