"""``metricskit.Job``: the three lines a worker adds.

A Job aggregates in memory (see :mod:`metricskit.recorder`) and a background flusher ships one
batch per interval to the sink. Nothing here raises into the worker after construction, and
nothing on the record path touches the network.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from types import TracebackType
from typing import Final, Literal

from metricskit import catalog, config, process_hooks, sink_users
from metricskit.batch import Metric, MetricBatch, MetricKind, SeriesKey
from metricskit.delivery import Delivery
from metricskit.errors import ConfigurationError, InvalidDimensionError
from metricskit.flusher import PeriodicFlusher
from metricskit.handoff import Handoff
from metricskit.lock_holders import holds_lock
from metricskit.progress import TerminalProgress, progress_bar_wanted
from metricskit.recorder import STAGE_SERIES, DropCounter, JobStatus, Recorder, SeriesBudget
from metricskit.registry import JobRegistry, WorkerRegistration
from metricskit.sinks.base import Exporter, NullSink, Sink
from metricskit.validation import (
    check_compute_profile,
    check_dimension_value,
    check_dimensions,
    check_hourly_rate,
    check_job_id,
    check_namespace,
)

logger = logging.getLogger("metricskit")

_capture_sink: ContextVar[Exporter | None] = ContextVar("metricskit_capture_sink", default=None)
"""Set by :func:`metricskit.testing.capture` so jobs built without a sink record in memory."""
_active_captures: list[Exporter] = []
"""Every capture() block open in the process, innermost last: a job built on a thread that
did not inherit the capture's context (``threading.Thread``, a ThreadPoolExecutor worker)
records into the innermost one."""
_captures_lock = threading.Lock()


def _reset_captures_lock_in_child() -> None:
    # A thread of the parent inside push_capture/pop_capture at fork time held the lock; it
    # does not exist in the child, where Job(sink=None) would wait on the lock for ever.
    global _captures_lock  # noqa: PLW0603 - the lock itself must be replaced
    _captures_lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_captures_lock_in_child)


def push_capture(sink: Exporter) -> None:
    """Make ``sink`` the innermost open capture of the process (see metricskit.testing)."""
    with _captures_lock:
        _active_captures.append(sink)


def pop_capture(sink: Exporter) -> None:
    """Close the capture of ``sink``, wherever it is in the stack (blocks on several threads
    need not end in the order they began)."""
    with _captures_lock:
        for index in range(len(_active_captures) - 1, -1, -1):
            if _active_captures[index] is sink:
                del _active_captures[index]
                return


def _captured_sink() -> Exporter | None:
    """The capture's sink for a job built here: this context's, else the innermost open."""
    captured = _capture_sink.get()
    if captured is not None:
        return captured
    with _captures_lock:
        return _active_captures[-1] if _active_captures else None


SINK_NAMES: Final = frozenset({"cloudwatch", "emf", "memory", "off"})
FinalStatus = Literal["completed", "failed", "interrupted"]
FINAL_STATUSES: Final[tuple[FinalStatus, ...]] = ("completed", "failed", "interrupted")
_CLOSER: Final = "closer"


@dataclasses.dataclass
class _CloseRun:
    """How far a close has got, kept on the job so that a close() cut short by an exception
    from a signal handler (Ctrl-C while it waits) is resumed by the next close(): that one
    waits for the work already handed off instead of starting it again or giving up."""

    status: FinalStatus
    deadline: float
    registry: Handoff | None = None
    registry_until: float = 0.0
    registered: bool | None = None
    drain: Handoff | None = None
    delivered: bool | None = None
    sink_released: bool = False


def make_sink(name: str) -> Sink:
    """Build the sink called ``name`` (one of SINK_NAMES) with its default settings."""
    if name == "cloudwatch":
        from metricskit.sinks.cloudwatch import CloudWatchSink

        return CloudWatchSink()
    if name == "emf":
        from metricskit.sinks.emf import EMFSink

        return EMFSink()
    if name == "memory":
        from metricskit.sinks.memory import MemorySink

        return MemorySink()
    if name == "off":
        return NullSink()
    raise ConfigurationError(f"sink {name!r} is not one of {', '.join(sorted(SINK_NAMES))}")


class Stage(Recorder):
    """A named stage of a job: its own progress, errors and latency, with a ``Stage`` dimension.

    >>> denoise = job.stage("denoise", total=10_000)     # doctest: +SKIP
    >>> denoise.processed()                               # doctest: +SKIP

    With a job registry its records done are job-wide, like the job's own, so its ``total``
    is the whole job's too.
    """

    def __init__(self, job: Job, name: str, total: float | None) -> None:
        check_dimension_value(catalog.STAGE, name)
        dims = (*job.dimensions[:1], (catalog.STAGE, name), *job.dimensions[1:])
        super().__init__(
            dimensions=dims,
            total=total,
            clock=job.clock,
            drops=job._drops,
            budget=job._series_budget,
        )
        self.name = name
        self._job = job
        self.published = job._series_budget.admit(f"stage {name!r}", STAGE_SERIES)
        """False for a stage created past the job's series cap: it records (its status()
        works) but publishes nothing; what it would have published is counted as dropped."""

    def _done(self) -> tuple[float, bool]:
        registration = self._job.registration
        local = self._processed.total()
        return (local, False) if registration is None else registration.stage_done(self.name, local)

    def _done_for_collect(self, processed_delta: float) -> tuple[float, bool]:
        if self._job.registration is None:
            return super()._done_for_collect(processed_delta)
        # The job collects (and syncs with the registry) before its stages.
        return self._done()


class Job(Recorder):
    """Instrumentation for one batch job: counts, latency, progress and ETA, shipped in batches.

    >>> with metricskit.Job("csv-job-1", namespace="CSVToKafka", total=1_000_000) as job:
    ...     for row in rows:                                  # doctest: +SKIP
    ...         with job.timer("KafkaLatency"):
    ...             producer.send(row)
    ...         job.processed()

    Unset arguments come from ``METRICSKIT_*`` variables (see :mod:`metricskit.config`),
    then defaults: namespace ``metricskit``, sink ``cloudwatch``, a 60 s flush interval.
    ``sink`` is a name (``"cloudwatch"``, ``"emf"``, ``"memory"``, ``"off"``) or a sink
    object. ``clock`` is a monotonic ``() -> float`` in seconds, injectable for tests; it
    times periods, rates and the ETA. Batches are dated by the wall clock, except with an
    injected clock, which dates them too (see :meth:`wall_time`).

    With a job table (``registry``, ``job_table`` or ``METRICSKIT_JOB_TABLE``) the workers of
    one job share its progress through DynamoDB (see :mod:`metricskit.registry`);
    ``compute_profile``/``hourly_rate`` go there for the cost tracker. ``progress_bar``
    (default ``METRICSKIT_PROGRESS_BAR``, else on only when stderr is a terminal) draws a
    tqdm bar with the same numbers as the metrics. ``max_series`` (``METRICSKIT_MAX_SERIES``,
    default 1000) caps the series the job's own metrics and stages add: past it new ones are
    counted in MetricskitDroppedValues instead of published (see docs/OPERATIONS.md).
    """

    def __init__(
        self,
        job_id: str,
        *,
        namespace: str | None = None,
        total: float | None = None,
        sink: str | Exporter | None = None,
        flush_interval: float | None = None,
        dimensions: Mapping[str, str] | None = None,
        clock: Callable[[], float] | None = None,
        high_resolution: bool | None = None,
        shutdown_timeout: float | None = None,
        worker_id: str | None = None,
        max_queued_periods: int | None = None,
        max_series: int | None = None,
        job_table: str | None = None,
        registry: JobRegistry | None = None,
        compute_profile: str | None = None,
        hourly_rate: float | None = None,
        progress_bar: bool | None = None,
        handle_sigterm: bool = True,
    ) -> None:
        check_job_id(job_id)
        self.job_id = job_id
        # An argument is the programmer's: a bad one raises. A variable is the deployment's:
        # a bad one warns and falls back (see metricskit.config).
        self.namespace = (
            check_namespace(namespace) if namespace is not None else config.env_namespace()
        )
        self.flush_interval = _setting_seconds(
            "flush_interval",
            flush_interval,
            config.ENV_FLUSH_INTERVAL,
            config.DEFAULT_FLUSH_INTERVAL,
            config.flush_interval_range(),
        )
        self.shutdown_timeout = _setting_seconds(
            "shutdown_timeout",
            shutdown_timeout,
            config.ENV_SHUTDOWN_TIMEOUT,
            config.DEFAULT_SHUTDOWN_TIMEOUT,
            config.SHUTDOWN_TIMEOUT_RANGE,
        )
        self.storage_resolution = _storage_resolution(high_resolution)
        dims = self._series_dimensions(
            job_id, dimensions, worker_id if worker_id is not None else config.env_worker_id()
        )
        self.dimensions = dims
        self._per_worker = dims[-1][0] == catalog.WORKER_ID
        self._job_wide_keys: dict[SeriesKey, SeriesKey] = {}
        self.clock: Callable[[], float] = _check_clock(clock)
        queued = _positive_int(
            "max_queued_periods",
            max_queued_periods,
            config.env_positive_int(
                config.ENV_MAX_QUEUED_PERIODS, config.DEFAULT_MAX_QUEUED_PERIODS
            ),
        )
        series_cap = _positive_int(
            "max_series",
            max_series,
            config.env_positive_int(config.ENV_MAX_SERIES, config.DEFAULT_MAX_SERIES),
        )
        self._series_budget = SeriesBudget(
            job_id, series_cap, per_series=2 if self._per_worker else 1
        )
        _check_registry_arguments(registry, compute_profile, hourly_rate)
        _optional_bool("progress_bar", progress_bar)
        self.sink: Exporter = self._resolve_sink(sink)
        super().__init__(
            dimensions=dims,
            total=total,
            clock=self.clock,
            drops=DropCounter(),
            budget=self._series_budget,
        )
        self._mono_start = _check_reading(self.clock, self.clock())
        self._wall_start = time.time()
        # The default clock cannot date a batch (see wall_time); an injected one (a test's)
        # dates it from its own readings, so what a test publishes does not depend on when.
        self._dates_from_wall_clock = self.clock is time.monotonic
        self._last_collect = self._mono_start
        self._stages: dict[str, Stage] = {}
        self._stages_lock = threading.Lock()
        self._delivery = Delivery(
            self.sink, max_queued=queued, base_backoff=self.flush_interval, clock=self.clock
        )
        self._failed_exports_reported = 0
        self._retries_reported = 0
        self._rejected_reported = 0
        self._init_close_state()
        self._flusher = PeriodicFlusher(
            self._periodic_flush, self.flush_interval, name=f"metricskit-flusher-{job_id}"
        )
        # The flush() under way, if any: later calls wait for it rather than start another
        # helper thread, so flush() in a loop during an outage cannot pile threads up.
        self._flush_lock = threading.Lock()
        self._flush_running: Handoff | None = None
        self._owner_pid = os.getpid()
        self._registration: WorkerRegistration | None = None
        # Everything that can refuse an argument comes before anything that starts a thread.
        self._progress_bar = self._make_progress_bar(progress_bar)
        try:
            self._registration = self._join_registry(
                registry, job_table, compute_profile, hourly_rate, total
            )
        except Exception:
            self._close_progress_bar()
            raise
        sink_users.acquire(self.sink)  # released by close(): after the last use, shutdown()
        if not isinstance(self.sink, NullSink) or self._registration is not None:
            self._flusher.start()
        if self._progress_bar is not None:
            self._progress_bar.start()
        process_hooks.track(self)
        if handle_sigterm:
            process_hooks.install_sigterm_handler()

    def _init_close_state(self) -> None:
        self._closed = False
        self._stop_requested = False  # SIGTERM arrived and the application handles it
        # The first close() call stores (thread id, token) here with one atomic setdefault:
        # no lock that a signal handler re-entering close() on the same thread could
        # deadlock on, and that handler can tell it interrupted the close (same thread id).
        self._close_claim: dict[str, tuple[int, object]] = {}
        self._close_run: _CloseRun | None = None
        self._close_done = threading.Event()
        self._close_result = False
        self.final_status: FinalStatus | None = None

    @staticmethod
    def _series_dimensions(
        job_id: str, dimensions: Mapping[str, str] | None, worker: str | None
    ) -> tuple[tuple[str, str], ...]:
        """``JobId``, the user's dimensions (``METRICSKIT_DIMENSIONS`` when none are given),
        then ``WorkerId`` when there is a worker id."""
        added = 2 + (worker is not None)  # JobId, a stage's Stage, WorkerId
        if dimensions is None:
            dimensions = config.env_dimensions(extra_count=added)
        user_dims = check_dimensions(
            dimensions, reserved=catalog.reserved_dimension_names(), extra_count=added
        )
        dims = ((catalog.JOB_ID, job_id), *user_dims)
        if worker is not None:
            dims = (*dims, (catalog.WORKER_ID, check_dimension_value(catalog.WORKER_ID, worker)))
        return dims

    @staticmethod
    def _resolve_sink(sink: str | Exporter | None) -> Exporter:
        if sink is None:
            captured = _captured_sink()
            if captured is not None:
                return captured
            name = config.env_choice(config.ENV_SINK, SINK_NAMES, config.DEFAULT_SINK)
            return make_sink(name)
        if isinstance(sink, str):
            return make_sink(sink.lower())
        if not callable(getattr(sink, "export", None)):
            raise ConfigurationError(
                f"sink must be one of {', '.join(sorted(SINK_NAMES))} or an object with "
                f"export(batch), got {sink!r}"
            )
        return sink

    # -- job registry and progress bar (see metricskit.registry / metricskit.progress) -------

    def _join_registry(
        self,
        registry: JobRegistry | None,
        table: str | None,
        compute_profile: str | None,
        hourly_rate: float | None,
        total: float | None,
    ) -> WorkerRegistration | None:
        if registry is None:
            name = table if table is not None else config.env_job_table()
            if name is None:
                if compute_profile is not None or hourly_rate is not None:
                    logger.info("metricskit: compute_profile/hourly_rate need a job table")
                return None
            registry = JobRegistry(name)
        registration = WorkerRegistration(
            registry,
            self.job_id,
            namespace=self.namespace,
            total=total,
            started_at=self._wall_start,
            compute_profile=compute_profile,
            hourly_rate=hourly_rate,
            monotonic_now=self._mono_start,
            retry_base_seconds=self.flush_interval,
        )
        # Register at once, off the worker's thread (the flusher's first turn is a minute away).
        threading.Thread(
            target=registration.register,
            args=(self._wall_start,),
            name=f"metricskit-register-{self.job_id}",
            daemon=True,
        ).start()
        return registration

    @property
    def registration(self) -> WorkerRegistration | None:
        """This worker's membership of the job registry, if there is one."""
        return self._registration

    @property
    def total(self) -> float | None:
        """The job's total. With a registry, the job item's (the last reply's): whoever set
        it, this worker at the start or any worker later; this worker's own until the item's
        is known, and after its own ``set_total`` until the item has that one."""
        registration = self._registration
        return self._total if registration is None else registration.job_total(self._total)

    def set_total(self, total: float | None) -> None:
        """Set or change the job's total; with a registry, the job item's too (next flush).

        ``None`` (unknown) leaves the item's total alone, and with it the job's (``total``).
        """
        super().set_total(total)
        registration = self._registration
        if registration is not None and self._total is not None:
            registration.set_total(self._total)

    def _done(self) -> tuple[float, bool]:
        registration = self._registration
        local = self._processed.total()
        return (local, False) if registration is None else registration.job_done(local)

    def _done_for_collect(self, processed_delta: float) -> tuple[float, bool]:
        registration = self._registration
        if registration is None:
            return super()._done_for_collect(processed_delta)
        if self._closed:
            # close() has sent (or is sending) everything with its final update: no more calls.
            return registration.job_done(self._processed.total())
        now = self.clock()
        return registration.sync(
            self._processed.total(),
            self._failed.total(),
            self.wall_time(now),
            now,
            stages=self._stages_done(),
        )

    def _stages_done(self) -> dict[str, float]:
        """Each stage's name and the records this worker has done in it."""
        with self._stages_lock:
            stages = list(self._stages.values())
        return {stage.name: stage._processed.total() for stage in stages}

    def _job_completed(self) -> bool:
        if self.final_status != "completed":
            return False
        # With a registry, other workers may still be running: ask what the last one set.
        registration = self._registration
        return registration is None or registration.job_status == "completed"

    def _finish_registry_work(self, status: FinalStatus) -> Callable[[], bool]:
        """The job-table update that ends this worker's share (run off the caller's thread)."""
        registration = self._registration
        assert registration is not None  # for mypy: only called with a registration
        if self.inherited:
            # A forked copy hands over its counts and leaves; the job's outcome is its
            # parent's to decide, whatever ended the copy: Pool.terminate() (which every
            # `with Pool()` ends in) SIGTERMs idle workers, and a task's exception through a
            # `with job:` in a child is that task's, not the job's.
            status = "completed"
        now = self.clock()
        return lambda: registration.finish(
            status,
            self._processed.total(),
            self._failed.total(),
            self.wall_time(now),
            now,
            stages=self._stages_done(),
        )

    def _make_progress_bar(self, argument: bool | None) -> TerminalProgress | None:
        wanted = argument
        if wanted is None:
            wanted = config.env_bool(config.ENV_PROGRESS_BAR, None)
        if not progress_bar_wanted(wanted):
            return None
        try:
            bar = TerminalProgress(self.status, desc=self.job_id)
        except ConfigurationError as exc:
            if argument:  # asked for in the code: say why it cannot be
                raise
            if wanted:  # asked for by METRICSKIT_PROGRESS_BAR: a deployment setting warns
                logger.warning(
                    "metricskit: ignoring %s=true (%s); no progress bar",
                    config.ENV_PROGRESS_BAR,
                    exc,
                )
            return None  # a terminal but no tqdm: no bar
        return bar

    def _close_progress_bar(self) -> None:
        bar, self._progress_bar = self._progress_bar, None
        if bar is not None:
            bar.close()

    # -- stages ----------------------------------------------------------------------------

    @holds_lock
    def stage(self, name: str, *, total: float | None = None) -> Stage:
        """The stage ``name`` of this job (created on first use), with its own progress."""
        with self._stages_lock:
            existing = self._stages.get(name)
            if existing is not None:
                if total is not None:
                    existing.set_total(total)
                return existing
            if len(self.dimensions) + 1 > 30:
                raise InvalidDimensionError("a stage would exceed CloudWatch's 30 dimensions")
            if self._closed:
                # Like any recording after close: never an exception in the worker; the
                # flusher has stopped, so what the stage records is not sent.
                logger.warning(
                    "metricskit: job %r is closed; stage %r records nothing", self.job_id, name
                )
            created = self._stages[name] = Stage(self, name, total)
            return created

    # -- flushing --------------------------------------------------------------------------

    def wall_time(self, monotonic: float) -> float:
        """Epoch seconds for a reading of this job's clock taken just now: what dates a
        batch, the job item's ``heartbeat_at`` and its ``finished_at``.

        >>> job.wall_time(job.clock())      # doctest: +SKIP
        1767225600.25

        With the default clock that is the wall clock at the call (``time.time()``), not the
        start plus the monotonic time since: Linux's CLOCK_MONOTONIC stands still while the
        machine is suspended (EC2 hibernation, Spot hibernate, a paused VM) and never follows
        a step of the wall clock (NTP correcting a wrong start clock), so a derived time
        would stay behind by the suspension (or the step) for the rest of the job: data in
        the past, a stalled alarm, and past CloudWatch's two weeks every request refused.
        Periods, rates and the ETA keep the monotonic clock, which no step disturbs. With an
        injected clock (a test's ``FakeClock``) the time is derived from its readings, so a
        test's timestamps follow the clock it moves.
        """
        if self._dates_from_wall_clock:
            return time.time()
        return self._wall_start + (monotonic - self._mono_start)

    def _collect(self) -> MetricBatch:
        now = self.clock()
        period = max(0.0, now - self._last_collect)
        self._last_collect = now
        metrics: list[Metric] = self.collect(now, period)
        metrics.append(self._gauge_metric(catalog.JOB_COMPLETED, self._completed_flag()))
        with self._stages_lock:
            stages = list(self._stages.values())
        for stage in stages:
            try:
                collected = stage.collect(now, period)
                if stage.published:
                    metrics.extend(collected)
                else:  # past the series cap: counted, not published
                    self._drops.cell.add(float(len(collected)))
            except Exception:  # one stage's fault must not cost the job's counts taken above
                logger.exception("metricskit: stage %r not collected this period", stage.name)
        if self._per_worker:
            metrics.extend(self._job_wide_copies(metrics))
        metrics.extend(self._self_metrics())
        return MetricBatch(
            namespace=self.namespace,
            timestamp=self.wall_time(now),
            metrics=tuple(metrics),
            period_seconds=period,
            storage_resolution=self.storage_resolution,
        )

    def _completed_flag(self) -> float:
        """1.0 once this job is closed as completed by the process that created it, else 0.0.

        The stalled alarm repeats the last value it saw: a job that stops publishing after a
        1 finished, one that stops after a 0 died, failed or was interrupted (and should page).
        A forked copy leaves the job's outcome to its parent, so it always says 0.
        """
        completed = self.final_status == "completed" and not self.inherited
        return 1.0 if completed else 0.0

    def _job_wide_copies(self, metrics: list[Metric]) -> list[Metric]:
        """Each per-worker metric again without ``WorkerId``: the series every worker adds to.

        ``WorkerId`` adds series rather than replacing the job's own, so dashboards, alarms
        and metric math that read a job by ``JobId`` (and ``Stage``) see every worker.
        """
        copies = []
        for metric in metrics:
            key = self._job_wide_keys.get(metric.key)
            if key is None:
                dims = tuple(d for d in metric.key.dimensions if d[0] != catalog.WORKER_ID)
                key = SeriesKey(metric.key.name, metric.key.unit, dims)
                self._job_wide_keys[metric.key] = key
            copies.append(dataclasses.replace(metric, key=key))
        return copies

    def _self_metrics(self) -> list[Metric]:
        """Drops, failed exports, retries and queued periods, published only when non-zero.

        Drops are the values dropped at record time plus the series the sink left out for
        good since the last flush (an EMF series too large for a document, every flush).
        """
        found: list[Metric] = []
        rejected = self._delivery.rejected_series - self._rejected_reported
        self._rejected_reported += rejected
        drops = self._drops.cell.take_delta() + rejected
        failed = self._delivery.failed_exports - self._failed_exports_reported
        self._failed_exports_reported += failed
        retries = self._delivery.retries - self._retries_reported
        self._retries_reported += retries
        queued = self._delivery.queued
        for name, value, kind in (
            (catalog.DROPPED_VALUES, drops, MetricKind.COUNTER),
            (catalog.FAILED_EXPORTS, float(failed), MetricKind.COUNTER),
            (catalog.RETRIES, float(retries), MetricKind.COUNTER),
            (catalog.QUEUED_PERIODS, float(queued), MetricKind.GAUGE),
        ):
            if value:
                key = SeriesKey(name, catalog.unit_of(name), self.dimensions[:1])
                found.append(Metric(key, kind, value=value))
        return found

    def _flush_once(self, *, force: bool) -> bool:
        """Collect a period and try to deliver everything queued. Never raises."""
        with self._delivery.export_lock:
            try:
                batch = self._collect()
                self._delivery.submit(batch)
                delivered = self._delivery.deliver(force=force)
                logger.debug(
                    "metricskit: job %s flushed %d series; %d period(s) still queued; "
                    "%d failed export(s), %d retr(ies) so far",
                    self.job_id,
                    len(batch),
                    self._delivery.queued,
                    self._delivery.failed_exports,
                    self._delivery.retries,
                )
                return delivered
            except Exception:
                logger.exception("metricskit: flush of job %s failed; will try again", self.job_id)
                return False

    def _drain(self, deadline: float) -> bool:
        """Collect the last period, then retry delivery until it succeeds or time is up.

        Never raises."""
        if self._flush_once(force=True):
            return True
        pause = 0.1
        while time.monotonic() + pause < deadline:
            if _cannot_succeed(self._delivery.last_error):
                return False
            time.sleep(pause)
            pause = min(pause * 2, 2.0)
            with self._delivery.export_lock:
                try:
                    if self._delivery.deliver(force=True):
                        return True
                except Exception:  # a sink's fault must not end the close early
                    logger.exception(
                        "metricskit: delivery of job %s failed at close; will try again",
                        self.job_id,
                    )
        return False

    def _periodic_flush(self) -> None:
        if self._closed:
            return  # close() delivers the rest; the flusher thread only stays to help it
        self._flush_once(force=False)

    def flush(self, timeout: float | None = None) -> bool:
        """Send what was recorded now; True when everything queued was delivered.

        >>> job.flush(timeout=5.0)          # doctest: +SKIP
        True

        Waits at most ``timeout`` seconds (default: the shutdown timeout). A failed or slow
        delivery never raises (it returns False and what is pending stays queued); a
        ``timeout`` that is not a number of seconds above 0 and at most 3600 is a programming
        error and raises ConfigurationError. While an earlier flush() is still delivering
        (a hung endpoint), a call waits for that one and then sends its own, rather than
        start another delivery beside it.
        """
        wait = (
            self.shutdown_timeout
            if timeout is None
            else _seconds("timeout", timeout, config.SHUTDOWN_TIMEOUT_RANGE)
        )
        deadline = time.monotonic() + wait
        while True:
            running: Handoff | None = None
            ours = False
            try:
                with self._flush_lock:
                    running = self._flush_running
                    ours = running is None or running.finished
                    if ours:
                        running = self._flush_running = Handoff(f"metricskit-flush-{self.job_id}")
                assert running is not None  # for mypy: set above when there was none
                if ours:
                    running.launch(lambda: self._flush_once(force=True), self._flusher.run_soon)
            except BaseException:
                # An exception from a signal handler (Ctrl-C, an application's sys.exit)
                # between creating and launching: a Handoff that never runs would make every
                # later flush(), and the SIGTERM flush, wait its whole timeout for it.
                if ours and running is not None:
                    running.abandon()
                raise
            if not running.wait(deadline - time.monotonic()):
                self._warn_unfinished(wait)
                return False
            if ours:
                return running.result is True
            # An earlier call's flush ended; it may have collected before this call began.
            if time.monotonic() >= deadline:
                return False

    def _await(self, run: Handoff, timeout: float) -> bool:
        """Wait for ``run`` (work off this thread, see :mod:`metricskit.handoff`) at most
        ``timeout`` seconds; True when it finished and returned True."""
        if not run.wait(timeout):
            self._warn_unfinished(timeout)
            return False
        return run.result is True

    def _warn_unfinished(self, timeout: float) -> None:
        logger.warning(
            "metricskit: job %s: delivery did not finish within %.1f s; %d period(s) pending",
            self.job_id,
            timeout,
            self._delivery.queued,
        )

    def _run_soon(self, task: Callable[[], None]) -> bool:
        """Hand ``task`` to this job's flusher thread (for where no thread can start)."""
        return self._flusher.run_soon(task)

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    @holds_lock
    def close(self, status: FinalStatus | None = None) -> bool:
        """Flush once more, mark the job finished and stop the flusher. Safe to call twice.

        >>> job.close("failed")             # doctest: +SKIP
        True

        ``status`` is ``"completed"`` (the default, also for None), ``"failed"`` or
        ``"interrupted"``; any other value raises ConfigurationError at once and leaves the
        job open (flusher running), so a corrected ``close()`` still closes it.
        Returns True when everything recorded was delivered within the shutdown timeout.
        A call while another thread is closing the job waits for that close (at most the
        shutdown timeout) and returns its result, so a SIGTERM handler never lets the
        process exit under a close still delivering. A signal handler that calls close()
        while its own thread is closing the job returns False at once (that close resumes
        when the handler returns). A close cut short by an exception from a signal handler
        (Ctrl-C) passes the exception on; the next close(), atexit's at the latest, resumes
        it (docs/OPERATIONS.md, "Signals while closing or flushing").
        """
        if status is None:
            status = "completed"
        elif status not in FINAL_STATUSES:
            # Before anything changes: written to the job table it would make the job item
            # unreadable (JobRegistry.get raises, `metricskit jobs` skips it).
            raise ConfigurationError(
                f"status must be one of {', '.join(FINAL_STATUSES)} (or None for completed), "
                f"got {status!r}"
            )
        if status == "completed" and self._stop_requested:
            status = "interrupted"  # asked to stop (SIGTERM) before it could finish
        me = threading.get_ident()
        claim = (me, object())
        closer = self._close_claim.setdefault(_CLOSER, claim)  # atomic: one call wins
        if closer is not claim:
            if closer[0] == me and not self._close_done.is_set():
                # A signal handler on the thread that is closing, run while that close()
                # waits: waiting here would wait for ourselves. The close under way goes on
                # when the handler returns; here it has not finished.
                return False
            return self._wait_for_close()
        self._closed = True
        run = self._close_run
        if run is None:
            self.final_status = status
            run = self._close_run = _CloseRun(status, time.monotonic() + self.shutdown_timeout)
        elif run.drain is None or not run.drain.launched:
            # Resuming a close cut short before its delivery started: give it the time.
            run.deadline = max(run.deadline, time.monotonic() + self.shutdown_timeout)
        try:
            self._close_result = self._close(run)
        except BaseException:
            # Cut short (Ctrl-C, an application handler's SystemExit) while waiting: what was
            # handed off goes on, and the job stays tracked, so the next close(), atexit's
            # at the latest, resumes this one and waits for it. The caller gets the exception.
            self._close_claim.pop(_CLOSER, None)
            raise
        self._close_done.set()
        return self._close_result

    def _wait_for_close(self) -> bool:
        """Another thread is closing the job: wait for it (at most the shutdown timeout)."""
        if self._close_done.wait(self.shutdown_timeout) or self._close_done.is_set():
            return self._close_result
        return False

    def _close(self, run: _CloseRun) -> bool:
        """The close's steps; each that hands work off remembers it in ``run``, so a resumed
        close waits for it rather than start it again."""
        # The flusher thread is stopped last: it flushes no more (_periodic_flush sees
        # _closed), but where no new thread can start (Python 3.12.0 to 3.12.2 in exit
        # handlers) the bounded work below runs on it. A periodic flush under way finishes
        # first: the final drain waits for the export lock, within the same bound.
        # The registry first, with at most half the time: its reply carries the job-wide count
        # the last metrics publish, and a hung DynamoDB still leaves time for the metrics.
        if run.registered is None:
            if self._registration is None:
                run.registered = True
            else:
                if run.registry is None or not run.registry.launched:
                    now = time.monotonic()
                    run.registry_until = now + max(0.1, (run.deadline - now) / 2)
                    run.registry = Handoff(f"metricskit-close-{self.job_id}")
                    run.registry.launch(
                        self._finish_registry_work(run.status), self._flusher.run_soon
                    )
                run.registered = self._await(
                    run.registry, max(0.0, run.registry_until - time.monotonic())
                )
        if run.delivered is None:
            if isinstance(self.sink, NullSink):
                run.delivered = True
            else:
                if run.drain is None or not run.drain.launched:
                    deadline = run.deadline
                    run.drain = Handoff(f"metricskit-close-{self.job_id}")
                    run.drain.launch(lambda: self._drain(deadline), self._flusher.run_soon)
                delivered = self._await(run.drain, max(0.1, run.deadline - time.monotonic()))
                if not delivered:
                    self._report_undelivered()
                run.delivered = delivered
        self._flusher.stop(timeout=max(0.0, run.deadline - time.monotonic()))
        self._close_progress_bar()
        process_hooks.untrack(self)
        if not run.sink_released:
            run.sink_released = True  # released once, even if cut short inside
            self._shutdown_sink()
        return run.delivered and run.registered

    def _report_undelivered(self) -> None:
        """One ERROR at close for what the last delivery left queued: nothing retries it later.

        The WARNINGs of the failed exports say "kept for retry", true while the job runs; at
        close this is the line that says the data is gone (``with Job(...)`` drops close()'s
        False, so without it a job could lose its last minute with no error anywhere).
        """
        pending = self._delivery.pending()
        if not pending:
            return  # delivered after all (a slow last export), or rejected for good
        series = sum(len(batch) for batch in pending)
        records = sum(
            metric.value or 0.0
            for batch in pending
            for metric in batch.metrics
            if metric.name == catalog.RECORDS_PROCESSED and metric.key.dimensions == self.dimensions
        )
        error = self._delivery.last_error
        logger.error(
            "metricskit: job %s closed with %d period(s) not delivered to %s (%d series, "
            "%g %s; %s); they are DROPPED: nothing retries them after close",
            self.job_id,
            len(pending),
            type(self.sink).__name__,
            series,
            records,
            catalog.RECORDS_PROCESSED,
            f"last error: {error}"
            if error is not None
            else f"not done within the shutdown timeout of {self.shutdown_timeout:g} s",
        )

    def _shutdown_sink(self) -> None:
        # A sink object shared by several jobs is shut down by the last of them to close.
        sink_users.shutdown_if_unused(self.sink)

    def __enter__(self) -> Job:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close("completed")
        elif issubclass(exc_type, KeyboardInterrupt | SystemExit) or self._stop_requested:
            # After SIGTERM an exception is most likely the application's way of stopping
            # (its handler raised it): "failed" would fail the whole job at once.
            self.close("interrupted")
        else:
            self.close("failed")

    @property
    def inherited(self) -> bool:
        """True in a forked child that uses a job its parent created.

        Such a copy delivers its own counts but leaves the job's final status to the parent:
        however it is closed (SIGTERM, an exception, ``close("failed")``), it leaves the job
        table as a worker that finished its share, never as an interrupted or failed one.
        """
        return os.getpid() != self._owner_pid

    def _close_at_exit(self) -> None:
        if self.final_status is not None:
            status = self.final_status
        elif self.inherited:
            # A forked worker leaving normally finished its share; the parent owns the job.
            status = "completed"
        else:
            status = "interrupted"
        self.close(status)

    def _close_interrupted(self) -> None:
        self.close("interrupted")

    def _flush_for_stop(self) -> None:
        """SIGTERM, and the application handles it: deliver now, close as interrupted later."""
        self._stop_requested = True
        self.flush()

    def _after_fork_in_child(self) -> None:
        # Any lock may have been held by a thread that does not exist in the child: replace
        # them before touching what they guard.
        self._stages_lock = threading.Lock()
        self.reset_after_fork()
        for stage in list(self._stages.values()):
            stage.reset_after_fork()
        self._close_done = threading.Event()
        self._flush_lock = threading.Lock()
        self._flush_running = None  # its thread stayed in the parent
        if self._closed:  # a close under way (or cut short) in the parent never finishes here
            self._close_claim.setdefault(_CLOSER, (-1, object()))
            self._close_done.set()
        self._drops.reset_after_fork()
        self._series_budget.reset_after_fork()
        self._delivery.reset_after_fork()
        # The parent reports its own failures and rejections; the child's counts start at 0.
        self._failed_exports_reported = 0
        self._retries_reported = 0
        self._rejected_reported = 0
        self._last_collect = self.clock()
        self._progress_bar = None  # its thread stayed in the parent
        if self._registration is not None:
            self._registration.reset_after_fork(
                self._processed.total(),
                self._failed.total(),
                self._last_collect,
                stages=self._stages_done(),
            )
        after_fork = getattr(self.sink, "after_fork", None)
        if callable(after_fork):
            try:
                after_fork()
            except Exception:
                logger.exception("metricskit: sink after_fork failed")
        publishes = not isinstance(self.sink, NullSink) or self._registration is not None
        if not self._closed and publishes:
            self._flusher.restart_after_fork()
        else:
            self._flusher.forget_thread_after_fork()

    def __repr__(self) -> str:
        return (
            f"Job({self.job_id!r}, namespace={self.namespace!r}, sink={type(self.sink).__name__})"
        )


def _cannot_succeed(error: BaseException | None) -> bool:
    """True when retrying the export that failed with ``error`` cannot help before close ends.

    Only botocore's NoCredentialsError: a botocore client resolves its credentials once, when
    it is built, and one built when none were found signs every later request without any
    (``SigV4Auth.add_auth`` raises it again, with no network call), so retries at close only
    spend the shutdown timeout. Credentials that exist but fail to refresh (an ECS/EC2
    endpoint that is briefly unavailable) raise other errors and keep being retried, and
    during the job nothing changes: a failed period stays queued and retried with backoff.
    """
    return error is not None and any(
        cls.__name__ == "NoCredentialsError" and cls.__module__.startswith("botocore")
        for cls in type(error).__mro__
    )


def _setting_seconds(
    name: str, given: float | None, variable: str, default: float, allowed: config.SecondsRange
) -> float:
    """The argument when given (raising when outside ``allowed``), else the variable's value
    (a warning and ``default`` when outside)."""
    if given is None:
        return config.env_seconds(variable, default, allowed)
    return _seconds(name, given, allowed)


def _check_registry_arguments(
    registry: object, compute_profile: object, hourly_rate: object
) -> None:
    """Checked whether or not there is a job table, so a mistake shows before deployment."""
    if registry is not None and not isinstance(registry, JobRegistry):
        raise ConfigurationError(
            "registry must be a metricskit.registry.JobRegistry (or give the table's name as "
            f"job_table=), got {registry!r}"
        )
    if compute_profile is not None:
        check_compute_profile(compute_profile)
    if hourly_rate is not None:
        check_hourly_rate(hourly_rate)


def _seconds(name: str, given: float, allowed: config.SecondsRange) -> float:
    """``given`` as float seconds when it is a number in ``allowed``; else raise."""
    if isinstance(given, bool) or not isinstance(given, int | float) or given not in allowed:
        raise ConfigurationError(f"{name} must be {allowed}, got {given!r}")
    return float(given)


def _storage_resolution(high_resolution: bool | None) -> int:
    """1 (high resolution) or 60 seconds: the argument, else METRICSKIT_HIGH_RESOLUTION."""
    wanted = _optional_bool("high_resolution", high_resolution)
    if wanted is None:
        wanted = bool(config.env_bool(config.ENV_HIGH_RESOLUTION, False))
    return 1 if wanted else 60


def _optional_bool(name: str, given: bool | None) -> bool | None:
    if given is not None and not isinstance(given, bool):
        raise ConfigurationError(f"{name} must be True, False or None, got {given!r}")
    return given


_CLOCK_ALLOWED: Final = "a callable returning monotonic seconds as a float, like time.monotonic"


def _check_clock(clock: Callable[[], float] | None) -> Callable[[], float]:
    if clock is None:
        return time.monotonic
    if not callable(clock):
        raise ConfigurationError(f"clock must be {_CLOCK_ALLOWED}, got {clock!r}")
    return clock


def _check_reading(clock: Callable[[], float], reading: object) -> float:
    """The clock's first reading when it is a finite number; else the clock is refused."""
    if (
        isinstance(reading, bool)
        or not isinstance(reading, int | float)
        or not math.isfinite(reading)
    ):
        raise ConfigurationError(f"clock must be {_CLOCK_ALLOWED}; {clock!r} returned {reading!r}")
    return reading


def _positive_int(name: str, given: int | None, fallback: int) -> int:
    if given is None:
        return fallback
    if isinstance(given, bool) or not isinstance(given, int) or given <= 0:
        raise ConfigurationError(f"{name} must be a positive integer, got {given!r}")
    return given


__all__ = ["Job", "JobStatus", "Stage", "make_sink"]
