"""The sink protocol: export one immutable batch, say whether it arrived, shut down.

Recording code knows nothing about CloudWatch or EMF; a sink knows nothing about jobs.
A sink may deliver part of a batch (one PutMetricData request out of three); it then
returns the part still owed, so a retry never sends a delivered datum twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from metricskit.batch import MetricBatch


@dataclass(frozen=True, slots=True)
class ExportResult:
    """The outcome of one export: success, or the part of the batch still to deliver.

    ``retryable`` is False for a batch the service will never accept (a validation error):
    the caller drops it, counting it, instead of retrying it forever. ``rejected`` counts the
    series (or datums) of the batch the sink left out for good because it can never publish
    them (an EMF series too large for a document): not owed, not retried; the job adds them
    to its MetricskitDroppedValues self-metric. ``retries`` counts the requests the sink
    itself sent again during this export (botocore's retries after throttling or a 5xx); the
    job adds them to its MetricskitRetries self-metric. ``error`` is the exception that
    stopped a failed export, when there was one: the job reads it at close (a client without
    credentials cannot succeed however long the last delivery retries).
    """

    success: bool
    remainder: MetricBatch | None = None
    retryable: bool = True
    rejected: int = 0
    retries: int = 0
    error: BaseException | None = None

    @classmethod
    def ok(cls, *, rejected: int = 0, retries: int = 0) -> ExportResult:
        return cls(True, rejected=rejected, retries=retries)

    @classmethod
    def failed(
        cls,
        remainder: MetricBatch,
        *,
        retryable: bool = True,
        rejected: int = 0,
        retries: int = 0,
        error: BaseException | None = None,
    ) -> ExportResult:
        return cls(False, remainder, retryable, rejected, retries, error)


@runtime_checkable
class Exporter(Protocol):
    """What ``Job(sink=...)`` needs of a sink object: ``export`` alone.

    >>> class Printer:                                     # doctest: +SKIP
    ...     def export(self, batch: MetricBatch) -> ExportResult:
    ...         print(len(batch))
    ...         return ExportResult.ok()
    >>> metricskit.Job("j", sink=Printer())               # doctest: +SKIP

    ``export`` must return an :class:`ExportResult` and should not raise; it may be slow (the
    flusher calls it, never two at once for one job). The other hooks are optional and found
    at run time: ``shutdown()`` (see :class:`Sink`) and ``after_fork()`` (see
    :class:`BaseSink`).
    """

    def export(self, batch: MetricBatch) -> ExportResult:
        """Deliver ``batch``; return what is still owed on failure."""
        ...


@runtime_checkable
class Sink(Exporter, Protocol):
    """A sink with ``shutdown()``: the built-in sinks, and what metricskit itself builds."""

    def shutdown(self) -> None:
        """Release resources. A job calls it when it closes as the last open job using this
        object; a job created later with the same object exports to it again and calls it
        again at its own close. So ``export()`` after ``shutdown()`` must work (reopen what
        ``shutdown()`` closed), and ``shutdown()`` may run more than once.

        Optional for an object passed as ``Job(sink=...)`` (see :class:`Exporter`).
        """
        ...


class BaseSink:
    """Defaults for the optional hooks; subclasses implement ``export``."""

    def export(self, batch: MetricBatch) -> ExportResult:  # pragma: no cover - abstract
        raise NotImplementedError

    def shutdown(self) -> None:
        """Nothing to release by default."""

    def after_fork(self) -> None:
        """Called in a forked child before it records: drop connections shared with the parent."""


class NullSink(BaseSink):
    """``sink="off"``: aggregates as usual (status() works) and publishes nothing."""

    def export(self, batch: MetricBatch) -> ExportResult:
        return ExportResult.ok()
