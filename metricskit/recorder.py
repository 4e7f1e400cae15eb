"""The recording API shared by a :class:`~metricskit.Job` and its stages.

Every method here is on the worker's hot path or close to it: memory only, no I/O, no
logging, no validation per call beyond what keeps bad values out (STYLE.md 3). Names and
units are validated once, the first time a metric name is used.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from metricskit import catalog, config
from metricskit.aggregation import CounterCell, DistributionCell, GaugeCell, Timer
from metricskit.batch import Dimensions, Metric, MetricKind, SeriesKey, distribution
from metricskit.errors import ConfigurationError, InvalidMetricError
from metricskit.eta import Estimate, EtaEstimator
from metricskit.lock_holders import holds_lock
from metricskit.validation import check_metric_name, check_unit

logger = logging.getLogger("metricskit")

_STANDARD_NAMES: Final = frozenset(
    e.name for e in (*catalog.standard_metrics(), *catalog.self_metrics())
)


@dataclass(frozen=True, slots=True)
class JobStatus:
    """A snapshot of progress: records done, total, percent, rate (records/s) and ETA (s).

    >>> job.status().percent            # doctest: +SKIP
    42.0

    ``percent`` is ``100 * done / total`` (at most 100); None when the total is unknown or 0.
    It stays as it is while the job is stalled. ``rate`` is None until the estimator has
    two samples (the job's or stage's start is the first, so the first call after some
    progress has one; after a fork, or when a job table's job-wide count first replaces
    this worker's own, it starts again), and 0 when no record was done lately (stalled).
    ``eta_seconds`` is None when the total is unknown, before the first rate, and while the
    job is stalled (nothing says when it will resume); 0 once the job closed as completed
    (with a job table: once the job item says completed).
    """

    done: float
    total: float | None
    percent: float | None
    rate: float | None
    eta_seconds: float | None
    errors: float = 0.0


def check_total(total: object) -> float | None:
    """``total`` if it is a finite number >= 0 or None; else a ConfigurationError."""
    if total is None:
        return None
    if isinstance(total, bool) or not isinstance(total, int | float) or not 0 <= total < math.inf:
        raise ConfigurationError(f"total must be a finite number >= 0 or None, got {total!r}")
    return total


_ONE: Final = 1
"""``n is _ONE`` picks the tick path of processed() & co: identity with CPython's cached int 1
is the cheapest test, and unlike ``n == 1`` it never raises (a Decimal sNaN refuses to
compare). Any other 1 (1.0, Decimal(1), numpy's) takes the add path and counts the same."""


class DropCounter:
    """Counts values dropped at record time and warns once per metric name."""

    def __init__(self) -> None:
        self.cell = CounterCell()
        self._warned: set[str] = set()
        self._lock = threading.Lock()

    def report(self, name: str, value: object) -> None:
        self.cell.tick()
        if name in self._warned:
            return
        with self._lock:
            if name in self._warned:
                return
            self._warned.add(name)
        logger.warning(
            "metricskit: dropped value %r for %s (NaN, inf, negative counts, non-numbers and "
            "values beyond +/-1.174271e108 are not published); further drops for it are "
            "counted in %s without a warning",
            value,
            name,
            catalog.DROPPED_VALUES,
        )

    def reset_after_fork(self) -> None:
        self.cell.reset_after_fork()
        self._lock = threading.Lock()


class SeriesBudget:
    """How many series one job may add besides its standard ones (``max_series``).

    Metrics and stages are admitted when first defined (never on the record path); past the
    cap they are created but never published: what they record is counted in
    MetricskitDroppedValues at each flush, and one warning names the cap. The job's own
    standard metrics are never counted, so they are never dropped.
    """

    def __init__(self, job_id: str, cap: int, *, per_series: int) -> None:
        self.job_id = job_id
        self.cap = cap
        self.per_series = per_series
        """Series each metric publishes: 2 with a WorkerId (the job-wide copy), else 1."""
        self.used = 0
        self._lock = threading.Lock()
        self._warned = False

    def admit(self, what: str, series: int) -> bool:
        """Count ``series`` more metrics (times ``per_series``) if they fit; warn once if not."""
        wanted = series * self.per_series
        with self._lock:
            if self.used + wanted <= self.cap:
                self.used += wanted
                return True
            if self._warned:
                return False
            self._warned = True
        logger.warning(
            "metricskit: job %s reached its cap of %d series (max_series=, %s); %s and every "
            "new metric or stage after it are not published, what they record is counted in "
            "%s. Metrics and stages defined before keep publishing, and so do the job's "
            "standard metrics",
            self.job_id,
            self.cap,
            config.ENV_MAX_SERIES,
            what,
            catalog.DROPPED_VALUES,
        )
        return False

    def reset_after_fork(self) -> None:
        self._lock = threading.Lock()


STAGE_SERIES: Final = 9
"""What a stage publishes: 4 counters, RecordsPerSecond, RecordsDone and, with a total,
RecordsTotal, ProgressPercentage and ETASeconds (a stage counts as 9 against max_series)."""


class Recorder:
    """Counters, distributions and gauges for one set of dimensions, plus its progress."""

    def __init__(
        self,
        *,
        dimensions: Dimensions,
        total: float | None,
        clock: Callable[[], float],
        drops: DropCounter,
        budget: SeriesBudget | None = None,
    ) -> None:
        self._dimensions = dimensions
        self._budget = budget
        self._unpublished: set[str] = set()
        """Metrics defined past the job's series cap: recorded, never published."""
        self._total = check_total(total)
        self._clock = clock
        self._drops = drops
        self._processed = CounterCell()
        self._failed = CounterCell()
        self._retried = CounterCell()
        self._checkpointed = CounterCell()
        self._processed_tick = self._processed.tick
        self._failed_tick = self._failed.tick
        self._retried_tick = self._retried.tick
        self._checkpointed_tick = self._checkpointed.tick
        self._distributions: dict[str, DistributionCell] = {}
        self._distribution_units: dict[str, str] = {}
        self._timer_types: dict[str, Callable[[], Timer]] = {}
        self._gauges: dict[str, GaugeCell] = {}
        self._gauge_units: dict[str, str] = {}
        self._definition_lock = threading.Lock()
        self._keys: dict[tuple[str, str], SeriesKey] = {}
        self._estimator = EtaEstimator()
        # The start is a sample (nothing done yet), so the first status() or flush after some
        # progress already has a rate; otherwise status() had rate None however long the job
        # had run and however much it had done, until a second call.
        self._estimator.update(clock(), 0.0)
        self._estimator_lock = threading.Lock()
        self._estimating_provisional = False  # the estimator's samples are provisional counts
        self._done_at_last_collect = 0.0

    # -- recording (hot path) -------------------------------------------------------------

    def processed(self, n: float = 1) -> None:
        """Count ``n`` records as finished (default 1)."""
        if n is _ONE:
            self._processed_tick()
        elif not self._processed.add(n):
            self._drops.report(catalog.RECORDS_PROCESSED, n)

    def failed(self, n: float = 1) -> None:
        """Count ``n`` records as failed."""
        if n is _ONE:
            self._failed_tick()
        elif not self._failed.add(n):
            self._drops.report(catalog.ERROR_COUNT, n)

    def retried(self, n: float = 1) -> None:
        """Count ``n`` retries."""
        if n is _ONE:
            self._retried_tick()
        elif not self._retried.add(n):
            self._drops.report(catalog.RETRY_COUNT, n)

    def checkpointed(self, n: float = 1) -> None:
        """Count ``n`` checkpoints written."""
        if n is _ONE:
            self._checkpointed_tick()
        elif not self._checkpointed.add(n):
            self._drops.report(catalog.CHECKPOINT_COUNT, n)

    def observe(self, name: str, value: float, unit: str = "Milliseconds") -> None:
        """Add ``value`` to the distribution ``name`` (published with p50/p90/p99 support)."""
        cell = self._distributions.get(name)
        if cell is None or unit != cell.unit:
            cell = self._define_distribution(name, unit)
        cell.record(value)

    def distribution(self, name: str, unit: str = "Milliseconds") -> DistributionCell:
        """A bound handle on the distribution ``name`` for hot loops: validated once, here.

        ``handle.observe(v)`` skips the name lookup of ``job.observe(name, v)`` (~2x cheaper):

        >>> latency = job.distribution("KafkaLatency")          # doctest: +SKIP
        >>> latency.observe(msg.latency() * 1000)               # doctest: +SKIP
        """
        cell = self._distributions.get(name)
        if cell is None or cell.unit != unit:
            cell = self._define_distribution(name, unit)
        return cell

    def timer(self, name: str) -> Timer:
        """Time a block in milliseconds into the distribution ``name``.

        >>> with job.timer("KafkaLatency"):      # doctest: +SKIP
        ...     producer.produce(row)
        """
        timer_type = self._timer_types.get(name)
        if timer_type is None:
            timer_type = self._define_timer(name)
        return timer_type()

    def gauge(self, name: str, value: float, unit: str = "None") -> None:
        """Set the gauge ``name``; the last value in each period is published."""
        cell = self._gauges.get(name)
        if cell is None or unit != self._gauge_units[name]:
            cell = self._define_gauge(name, unit)
        if not cell.set(value):
            self._drops.report(name, value)

    # -- definitions (once per name) ------------------------------------------------------

    def _check_user_name(self, name: str, unit: str) -> None:
        check_metric_name(name)
        check_unit(unit)
        if name in _STANDARD_NAMES:
            raise InvalidMetricError(
                f"{name!r} is a standard metricskit metric; use the dedicated method "
                "(processed, failed, retried, checkpointed) or another name"
            )
        # EMF writes dimension values and metric values as members of one JSON object, so a
        # metric named like a dimension cannot be published there; refuse it for every sink,
        # so that switching METRICSKIT_SINK never loses a metric.
        dimension_names = {*catalog.METRICSKIT_DIMENSIONS, *(d for d, _ in self._dimensions)}
        if name in dimension_names:
            raise InvalidMetricError(
                f"metric {name!r} is named like a dimension; EMF cannot publish a metric "
                "named like one of its dimensions. Dimension names here: "
                + ", ".join(sorted(dimension_names))
            )

    def _admit(self, name: str) -> None:
        """Count a new metric against the job's series cap; past it, never publish it."""
        if self._budget is not None and not self._budget.admit(f"metric {name!r}", 1):
            self._unpublished.add(name)

    def _define_distribution(self, name: str, unit: str) -> DistributionCell:
        with self._definition_lock:
            if name in self._distributions:
                if self._distribution_units[name] != unit:
                    raise InvalidMetricError(
                        f"distribution {name!r} was defined with unit "
                        f"{self._distribution_units[name]!r}; it cannot also use {unit!r}"
                    )
                return self._distributions[name]
            self._check_user_name(name, unit)
            if name in self._gauges:
                raise InvalidMetricError(f"{name!r} is already a gauge; use another name")
            cell = DistributionCell(name, self._drops.report, unit)
            self._admit(name)
            self._distribution_units[name] = unit
            self._distributions[name] = cell
            return cell

    def _define_timer(self, name: str) -> Callable[[], Timer]:
        cell = self.distribution(name, "Milliseconds")
        with self._definition_lock:
            timer_type = self._timer_types.get(name)
            if timer_type is None:
                timer_type = self._timer_types[name] = cell.timer_type(self._clock)
            return timer_type

    def _define_gauge(self, name: str, unit: str) -> GaugeCell:
        with self._definition_lock:
            if name in self._gauges:
                if self._gauge_units[name] != unit:
                    raise InvalidMetricError(
                        f"gauge {name!r} was defined with unit {self._gauge_units[name]!r}; "
                        f"it cannot also use {unit!r}"
                    )
                return self._gauges[name]
            self._check_user_name(name, unit)
            if name in self._distributions:
                raise InvalidMetricError(f"{name!r} is already a distribution; use another name")
            cell = GaugeCell(name)
            self._admit(name)
            self._gauge_units[name] = unit
            self._gauges[name] = cell
            return cell

    # -- progress --------------------------------------------------------------------------

    @property
    def total(self) -> float | None:
        return self._total

    def set_total(self, total: float | None) -> None:
        """Set or change the number of records the job will process (None: unknown).

        Raises :class:`~metricskit.errors.ConfigurationError` unless ``total`` is a finite
        number >= 0 or None.
        """
        self._total = check_total(total)

    def _done(self) -> tuple[float, bool]:
        """Records done as this recorder reports it (job-wide where a registry says so), and
        whether that is *provisional*: this worker's own count standing in for the job-wide
        one that a registry has not answered with yet."""
        return self._processed.total(), False

    @holds_lock
    def status(self) -> JobStatus:
        """Records done, total, percent, rate and ETA as of now."""
        done, provisional = self._done()
        now = self._clock()
        total = self.total
        estimate = self._estimate(now, done, total, provisional=provisional)
        percent = None if not total else min(100.0, 100.0 * done / total)
        return JobStatus(
            done=done,
            total=total,
            percent=percent,
            rate=estimate.rate,
            eta_seconds=estimate.eta_seconds,
            errors=self._failed.total(),
        )

    def _estimate(
        self, now: float, done: float, total: float | None, *, provisional: bool
    ) -> Estimate:
        """Feed the estimator ``done`` at ``now``; the rate and ETA it then gives towards
        ``total`` (the one the caller publishes the percentage against).

        A completed job has nothing left to do, so its ETA is 0 (see ``_job_completed``).
        """
        with self._estimator_lock:
            if self._estimating_provisional and not provisional:
                # The job-wide count replaces this worker's own: what it adds (the records
                # other workers, or earlier runs, did before) is no progress made since the
                # last sample, and the samples so far measured this worker's rate, not the
                # job's. Start again from the job-wide count. (Rather than rebasing the
                # history by the jump, which would keep a per-worker rate that is a fraction
                # of the job's when several run; and rather than feeding nothing until the
                # registry answers, which would leave a worker whose table never answers
                # without any ETA: until then the local count is the best there is, as for
                # RecordsDone and ProgressPercentage.)
                self._estimator.reset()
            self._estimating_provisional = provisional
            self._estimator.update(now, done)
            remaining = None if total is None else max(0.0, total - done)
            estimate = self._estimator.estimate(remaining)
        # Before asking whether the estimator has an ETA: a job that completed has none left
        # to wait for even when the estimator has no rate (closed before a second sample) or
        # calls it stalled (a pause before closing). Without a total there is no ETA at all.
        if remaining is not None and self._job_completed():
            return Estimate(rate=estimate.rate, eta_seconds=0.0)
        return estimate

    def _job_completed(self) -> bool:
        """True once the whole job is known to have completed; a Job overrides this.

        Nothing is left to do then, so the ETA is 0 even when ``done`` stopped short of
        ``total`` (rows that failed, or a line count that over-estimated the records).
        """
        return False

    # -- collection (flusher thread) -------------------------------------------------------

    def _key(self, name: str, unit: str) -> SeriesKey:
        key = self._keys.get((name, unit))
        if key is None:
            key = self._keys[(name, unit)] = SeriesKey(name, unit, self._dimensions)
        return key

    def _counter(self, name: str, value: float) -> Metric:
        return Metric(self._key(name, catalog.unit_of(name)), MetricKind.COUNTER, value=value)

    def _gauge_metric(self, name: str, value: float, unit: str | None = None) -> Metric:
        key = self._key(name, unit or catalog.unit_of(name))
        return Metric(key, MetricKind.GAUGE, value=value)

    def collect(self, now: float, period_seconds: float) -> list[Metric]:
        """Take everything recorded since the last collect as metrics for one period."""
        processed = self._processed.take_delta()
        metrics = [
            self._counter(catalog.RECORDS_PROCESSED, processed),
            self._counter(catalog.ERROR_COUNT, self._failed.take_delta()),
            self._counter(catalog.RETRY_COUNT, self._retried.take_delta()),
            self._counter(catalog.CHECKPOINT_COUNT, self._checkpointed.take_delta()),
        ]
        if period_seconds > 0:
            metrics.append(
                self._gauge_metric(catalog.RECORDS_PER_SECOND, processed / period_seconds)
            )
        try:
            done, provisional = self._done_for_collect(processed)
            metrics.extend(self._progress_metrics(now, done, provisional=provisional))
        except Exception:  # the counts just taken must go out whatever progress does
            logger.exception(
                "metricskit: progress of %s not published this period", self._dimensions
            )
        unpublished = self._unpublished
        dropped = 0.0
        for name, gauge in list(self._gauges.items()):
            value = gauge.take()
            if value is None:
                continue
            if name in unpublished:
                dropped += 1  # the period's value, past the series cap
            else:
                metrics.append(self._gauge_metric(name, value, self._gauge_units[name]))
        for name, cell in list(self._distributions.items()):
            counts = cell.take()
            if not counts:
                continue
            if name in unpublished:
                dropped += sum(counts.values())  # every observation, past the series cap
            else:
                metrics.append(
                    distribution(self._key(name, self._distribution_units[name]), counts)
                )
        if dropped:
            self._drops.cell.add(dropped)
        return metrics

    def _done_for_collect(self, processed_delta: float) -> tuple[float, bool]:
        """Cumulative done to publish, and whether it is provisional (see ``_done``); a job
        with a registry overrides this."""
        self._done_at_last_collect += processed_delta
        return self._done_at_last_collect, False

    def _progress_metrics(self, now: float, done: float, *, provisional: bool) -> list[Metric]:
        metrics = [self._gauge_metric(catalog.RECORDS_DONE, done)]
        total = self.total
        if total is not None:
            metrics.append(self._gauge_metric(catalog.RECORDS_TOTAL, total))
            if total > 0:
                percent = min(100.0, 100.0 * done / total)
                metrics.append(self._gauge_metric(catalog.PROGRESS_PERCENTAGE, percent))
        eta = self._estimate(now, done, total, provisional=provisional).eta_seconds
        if eta is not None:
            metrics.append(self._gauge_metric(catalog.ETA_SECONDS, eta))
        return metrics

    def reset_after_fork(self) -> None:
        """In a forked child: the parent reports what it recorded, so the child's deltas start
        from zero. Its records done go on from the parent's count at the fork, flushed or not,
        as its ``status().done`` does (the total the counter keeps): published from the
        parent's last flush instead, RecordsDone would disagree with ``status()`` by what the
        parent had not flushed yet, and the ETA estimator would be fed both in turn."""
        for cell in (self._processed, self._failed, self._retried, self._checkpointed):
            cell.reset_after_fork()
        self._done_at_last_collect = self._processed.total()
        for gauge in self._gauges.values():
            gauge.reset_after_fork()
        for dist in self._distributions.values():
            dist.reset_after_fork()
        self._definition_lock = threading.Lock()
        self._estimator_lock = threading.Lock()
        self._estimator.reset()
        self._estimating_provisional = False
