"""The scheduled Lambda: estimated and actual cost of every current job, published as metrics.

Entry point ``cost_tracker.handler.handler``. Each run:

1. takes "now" from the scheduled event's ``time`` (ISO 8601), else the clock, so a day of
   runs can be replayed (an event time ahead of the clock is not believed: the clock is used);
2. reads the job table: *current* jobs (active in the last day, see
   :mod:`cost_tracker.job_source`) and *settling* jobs (ended one to three days ago, while
   Cost Explorer's figures for their run keep arriving); bad items, items naming another
   namespace than the tracker's, and jobs past :data:`MAX_JOBS_PER_RUN` are skipped and
   reported;
3. estimates each current job's cost: ``worker_seconds / 3600 x hourly rate`` (rate from the
   item's ``hourly_rate``, else its ``compute_profile`` priced by :mod:`cost_tracker.pricing`);
4. takes actual costs from the Cost Explorer cache, refreshing it when due
   (:mod:`cost_tracker.cost_explorer`) and while the day's request budget lasts; one failed
   refresh, or one stopped by the budget, keeps the previous figures;
5. publishes, per JobId, EstimatedCost (current jobs), ActualCost, ActualCostAvailable and
   CostPerMillionRecords (current and settling jobs, so the last figure is the settled one),
   MonthlyCost per CostCategory, and job-wide progress (no ETA: see :func:`progress_metrics`)
   for running jobs whose workers stopped sending heartbeats, through a metricskit sink (EMF
   by default), all into the tracker's own namespace (``METRICSKIT_NAMESPACE``): the job
   items are worker-writable, so the namespace one names is never followed. That progress
   carries the workers' own dimensions (``METRICSKIT_DIMENSIONS``,
   which the Terraform module sets from its ``dimensions`` input) beside JobId, so it lands
   in the series the workers published and the dashboard reads; the cost metrics carry JobId
   only.

CostPerMillionRecords divides by the job's records done; see :func:`cost_basis` for which cost.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from cost_tracker import cost_explorer as cex
from cost_tracker.job_source import COST_SETTLE_SECONDS, is_current, last_active, load_jobs
from cost_tracker.pricing import PriceTable, UnknownProfileError
from metricskit import catalog
from metricskit import config as mk_config
from metricskit.batch import Metric, MetricBatch, SeriesKey
from metricskit.errors import ConfigurationError, MetricsKitError
from metricskit.job_record import JobRecord, Rejected
from metricskit.sinks.base import Sink
from metricskit.validation import check_dimension_value

if TYPE_CHECKING:
    from mypy_boto3_ce.client import CostExplorerClient
    from mypy_boto3_dynamodb.client import DynamoDBClient

logger = logging.getLogger("cost_tracker")

ENV_STALE_SECONDS: Final = "COST_TRACKER_STALE_SECONDS"
"""A running job whose last heartbeat is older than this has lost its workers (default 600)."""
DEFAULT_STALE_SECONDS: Final = 600.0
DEFAULT_TRACKER_SINK: Final = "emf"
"""Inside Lambda, EMF on stdout is free of PutMetricData fees."""
PERIOD_SECONDS: Final = 60.0
MAX_JOBS_PER_RUN: Final = 1000
"""Jobs one run reports on. The job items are worker-writable, so their number is not the
tracker's to trust: each job costs a DynamoDB write per refresh, a few series and room in the
400 KB cost-cache item, and a run has the function's timeout (120 s by default). The most
recently active are kept (current jobs before settling ones); the rest are skipped and
reported."""


@dataclass
class RunReport:
    """What one run did; returned by the handler (and so visible in the Lambda console)."""

    now: str
    jobs: int = 0
    published_jobs: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)
    unpriced: list[dict[str, str]] = field(default_factory=list)
    stale_jobs: list[str] = field(default_factory=list)
    lookback_clamped_jobs: list[str] = field(default_factory=list)
    """Started more than COST_TRACKER_CE_LOOKBACK_DAYS (default 31) days ago: the Cost Explorer
    query does not reach back to their start, so their ActualCost covers only those days."""
    settling_jobs: list[str] = field(default_factory=list)
    """Ended one to three days ago: only their actual cost (ActualCost, ActualCostAvailable,
    CostPerMillionRecords) is refreshed and published."""
    ce_refreshed: bool = False
    ce_requests: int = 0
    """GetCostAndUsage requests (pages) this run sent."""
    ce_requests_today: int | None = None
    """Requests counted against today's (UTC) budget, after this run's refresh (None: none)."""
    ce_request_budget: int = 0
    """The daily request budget (COST_TRACKER_CE_MAX_REQUESTS_PER_DAY)."""
    ce_status: str = "none"
    ce_error: str = ""
    """The error code of this run's refresh when it failed or was not started: a Cost
    Explorer error, ``RequestBudgetExhausted`` (the day's budget stopped it),
    ``RequestBudgetTooSmall`` or ``TooManyPages`` (no refresh can finish the answer),
    ``RequestBudgetUnreadable`` (today's count in the cache item is garbage: nothing sent)."""
    metrics: int = 0
    export_ok: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {
            "now": self.now,
            "jobs": self.jobs,
            "published_jobs": self.published_jobs,
            "skipped": self.skipped,
            "unpriced": self.unpriced,
            "stale_jobs": self.stale_jobs,
            "lookback_clamped_jobs": self.lookback_clamped_jobs,
            "settling_jobs": self.settling_jobs,
            "ce_refreshed": self.ce_refreshed,
            "ce_requests": self.ce_requests,
            "ce_requests_today": self.ce_requests_today,
            "ce_request_budget": self.ce_request_budget,
            "ce_status": self.ce_status,
            "ce_error": self.ce_error,
            "metrics": self.metrics,
            "export_ok": self.export_ok,
        }


def event_time(event: Mapping[str, Any] | None, clock: Callable[[], float] = time.time) -> float:
    """Epoch seconds of a scheduled event's ``time`` field, else ``clock()``.

    >>> event_time({"time": "2026-11-23T12:00:00Z"})
    1795435200.0
    """
    raw = event.get("time") if isinstance(event, Mapping) else None
    if isinstance(raw, str) and raw:
        try:
            parsed = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            logger.warning("cost_tracker: event time %r is not ISO 8601; using the clock", raw)
        else:
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=dt.UTC)
            return parsed.timestamp()
    return clock()


def _believable(at: float, real_now: float) -> float:
    """The event's time ``at``, or the clock when ``at`` lies ahead of it by more than
    :data:`~cost_tracker.cost_explorer.CLOCK_SLACK_SECONDS` (a typo in a console test event,
    a hand-made replay): runs report on the past or the present, never on the future.

    >>> _believable(2_000_000_000.0, real_now=1_800_000_000.0)
    1800000000.0
    """
    if at > real_now + cex.CLOCK_SLACK_SECONDS:
        logger.warning(
            "cost_tracker: the event's time %s is ahead of the clock (%s); using the clock",
            dt.datetime.fromtimestamp(at, tz=dt.UTC).isoformat(),
            dt.datetime.fromtimestamp(real_now, tz=dt.UTC).isoformat(),
        )
        return real_now
    return at


def estimated_cost(
    job: JobRecord, rate: float, now: float, stale_after: float = DEFAULT_STALE_SECONDS
) -> float:
    """USD so far: worker-seconds x rate, else wall time x workers x rate.

    The wall time ends now for a running job, at its end for a finished one, and at its last
    heartbeat for a running job whose workers have sent none for ``stale_after`` seconds
    (they died without closing, so they no longer cost anything).

    >>> job = JobRecord("j", "running", started_at=0.0, worker_seconds=7200.0)
    >>> estimated_cost(job, 0.5, now=10_000.0)
    1.0
    """
    if job.worker_seconds is not None:
        return job.worker_seconds / 3600.0 * rate
    if not job.running:
        end = job.ended_at or now
    elif job.heartbeat_at is not None and now - job.heartbeat_at > stale_after:
        end = job.heartbeat_at
    else:
        end = now
    elapsed = max(0.0, end - job.started_at)
    workers = job.workers if job.workers > 0 else 1
    return elapsed / 3600.0 * workers * rate


def cost_basis(*, estimate: float | None, actual: float | None, settling: bool) -> float | None:
    """The cost CostPerMillionRecords divides by the records done, or None for none.

    Cost Explorer's actual cost lags a day or more behind, while the records done are counted
    up to now: dividing the two would bias a running job's figure low. So a *current* job
    (running, or ended less than a day ago) uses its estimate, and a *settling* job (ended a
    day or more ago, so Cost Explorer covers its whole run) uses the actual cost. A current
    job with no estimate (unpriced) falls back to the lagging actual cost rather than nothing.

    >>> cost_basis(estimate=2.0, actual=0.5, settling=False)
    2.0
    >>> cost_basis(estimate=2.0, actual=2.4, settling=True)
    2.4
    >>> cost_basis(estimate=None, actual=0.5, settling=False)
    0.5
    >>> cost_basis(estimate=2.0, actual=None, settling=True) is None
    True
    """
    if settling:
        return actual
    return estimate if estimate is not None else actual


def progress_metrics(job: JobRecord) -> dict[str, float]:
    """Job-wide RecordsDone, and RecordsTotal and ProgressPercentage when the total is known,
    from the item of a job whose workers are gone.

    No ETASeconds: nothing is running, so the job will not finish at any pace. A time "if it
    were resumed" would land in the series the workers publish their live ETA to, and show a
    near finish for a job that is dead (the library, too, publishes no ETA for a stalled job).

    >>> progress_metrics(JobRecord("j", "running", started_at=0.0, done=25.0, total=100.0))
    {'RecordsDone': 25.0, 'RecordsTotal': 100.0, 'ProgressPercentage': 25.0}
    """
    values = {catalog.RECORDS_DONE: job.done}
    if job.total is not None and job.total > 0:
        values[catalog.RECORDS_TOTAL] = job.total
        values[catalog.PROGRESS_PERCENTAGE] = min(100.0, job.done / job.total * 100.0)
    return values


class _Publisher:
    """Collects gauges and exports them as one batch, into the tracker's own namespace only
    (never one a job item names: see :func:`_read_jobs`)."""

    def __init__(self, namespace: str, now: float) -> None:
        self.namespace = namespace
        self.now = now
        self.metrics: list[Metric] = []

    def gauge(self, name: str, value: float, *dimensions: tuple[str, str]) -> None:
        if not math.isfinite(value):
            logger.warning("cost_tracker: dropping %s=%r (%s)", name, value, dimensions)
            return
        entry = catalog.entry(name)
        key = SeriesKey(name, entry.unit, dimensions)
        self.metrics.append(Metric(key, entry.kind, value=value))

    def export(self, sink: Sink) -> tuple[int, bool]:
        if not self.metrics:
            return 0, True
        batch = MetricBatch(
            namespace=self.namespace,
            timestamp=self.now,
            metrics=tuple(self.metrics),
            period_seconds=PERIOD_SECONDS,
            extra={"Source": "cost_tracker"},
        )
        if sink.export(batch).success:
            return len(self.metrics), True
        logger.error(
            "cost_tracker: the sink did not accept %d metrics for %s",
            len(self.metrics),
            self.namespace,
        )
        return len(self.metrics), False


def _snapshot(
    dynamodb: DynamoDBClient,
    table: str,
    *,
    ce: CostExplorerClient | None,
    jobs: list[JobRecord],
    now: float,
    clock: Callable[[], float],
    refresh_hours: float,
    max_requests: int,
    lookback_days: int,
    report: RunReport,
) -> cex.CostSnapshot | None:
    """The Cost Explorer snapshot to use this run, refreshing it when due and while the day's
    request budget lasts.

    ``now`` (the event's time) decides whether a refresh is due and what it asks for;
    ``clock`` (the real time) decides which day's budget a request is counted against, so a
    late retry of yesterday's event cannot spend yesterday's unused budget today.
    """
    cache = cex.CostCache(dynamodb, table, refresh_hours)
    from botocore.exceptions import BotoCoreError, ClientError

    starts = [job.started_at for job in jobs]
    since = cex.query_period(now, starts, lookback_days)[0]
    try:
        snapshot, claimed_at = cache.load()
        if not cache.due(claimed_at, now, clock()):
            return snapshot
        if _refresh_blocked(cache.budget(clock(), since), max_requests, since, snapshot, report):
            return snapshot
        if not cache.claim(now, clock()):
            return snapshot
    except (BotoCoreError, ClientError) as error:
        logger.warning("cost_tracker: cost cache unreadable (%s); estimates only", error)
        return None
    if ce is None:
        ce = cex.ce_client()

    def take_request() -> bool:
        try:
            return cache.take_request(clock(), max_requests)
        except (BotoCoreError, ClientError) as error:
            # An uncounted request could break the cap: not sent.
            logger.warning("cost_tracker: could not count a Cost Explorer request: %s", error)
            return False

    fetched = cex.fetch_costs(ce, now, starts, take_request, lookback_days)
    report.ce_refreshed = True
    report.ce_requests = fetched.pages
    try:
        report.ce_requests_today = cache.requests_today(clock())
        if pages := cex.pages_learned(fetched):
            cache.note_pages(since, pages)
    except (BotoCoreError, ClientError) as error:
        logger.warning("cost_tracker: could not read or update the request budget: %s", error)
    if fetched.error_code == cex.BUDGET_EXHAUSTED:
        # Nothing new was learned (a partial answer is no answer): the cache, the job items
        # and the figures published stay as they were, whatever their age.
        report.ce_error = fetched.error_code
        logger.warning(
            "cost_tracker: %s; keeping the previous actual costs (%s)",
            fetched.error_message,
            _fetched_when(snapshot),
        )
        return snapshot
    if not fetched.ok:
        report.ce_error = fetched.error_code
    if not fetched.ok and snapshot is not None and cache.worth_keeping(snapshot, now):
        # One failed refresh (throttled, say) keeps the last figures rather than blanking
        # them for a whole interval; a second failure in a row reports them unavailable.
        logger.warning(
            "cost_tracker: keeping the actual costs fetched at %s until the next refresh",
            dt.datetime.fromtimestamp(snapshot.fetched_at, tz=dt.UTC).isoformat(),
        )
        return snapshot
    if fetched.ok:
        _explain_missing(fetched, jobs)
    kept = fetched.for_jobs({job.job_id for job in jobs})
    _store(cache, kept, jobs)
    return kept


def _refresh_blocked(
    budget: cex.RequestBudget,
    max_requests: int,
    since: str,
    snapshot: cex.CostSnapshot | None,
    report: RunReport,
) -> bool:
    """Whether the request budget stops a due refresh before any request (reported)."""
    if budget.unreadable:
        report.ce_error = cex.BUDGET_UNREADABLE
        logger.error(
            "cost_tracker: today's Cost Explorer request count cannot be read (%s), so no "
            "request is sent until 00:00 UTC starts a new count; keeping the previous actual "
            "costs (%s)",
            budget.unreadable,
            _fetched_when(snapshot),
        )
        return True
    if budget.pages_needed > cex.MAX_PAGES:
        _report_too_many_pages(budget, since, snapshot, report)
        return True
    # From here pages_needed <= MAX_PAGES: any budget advice stays within what one refresh
    # can read.
    if budget.pages_needed > max_requests - budget.used_today:
        _report_unaffordable(budget, max_requests, since, snapshot, report)
        return True
    return False


def _store(cache: cex.CostCache, snapshot: cex.CostSnapshot, jobs: list[JobRecord]) -> None:
    """Keep a refresh's result in the cache item and on every job's item.

    Each write stands alone: a cache item that cannot be written still leaves the fresh
    figures on the job items, and one job item that cannot be written the others.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        cache.store(snapshot)
    except (BotoCoreError, ClientError) as error:
        logger.error(
            "cost_tracker: could not store the cost cache (%s); this run publishes the fresh "
            "figures and writes them on the job items, but the runs until the next refresh "
            "read the previous ones",
            error,
        )
    for job in jobs:
        try:
            cache.record_job(job.job_id, snapshot)
        except (BotoCoreError, ClientError) as error:
            logger.warning(
                "cost_tracker: could not record the actual cost of %s: %s", job.job_id, error
            )


def _fetched_when(snapshot: cex.CostSnapshot | None) -> str:
    if snapshot is None:
        return "none"
    return "fetched at " + dt.datetime.fromtimestamp(snapshot.fetched_at, tz=dt.UTC).isoformat()


def _report_too_many_pages(
    budget: cex.RequestBudget,
    since: str,
    snapshot: cex.CostSnapshot | None,
    report: RunReport,
) -> None:
    """A refresh not started because the answer needs more pages than one refresh reads."""
    report.ce_requests_today = budget.used_today
    report.ce_error = cex.TRUNCATED
    logger.error(
        "cost_tracker: %s (the answer needs at least %d pages)",
        cex.too_many_pages_advice({"TimePeriod": {"Start": since}}),
        budget.pages_needed,
    )
    logger.warning("cost_tracker: keeping the previous actual costs (%s)", _fetched_when(snapshot))


def _report_unaffordable(
    budget: cex.RequestBudget,
    max_requests: int,
    since: str,
    snapshot: cex.CostSnapshot | None,
    report: RunReport,
) -> None:
    """A refresh not started because it could not finish within the budget left."""
    report.ce_requests_today = budget.used_today
    if budget.pages_needed > max_requests:
        report.ce_error = cex.BUDGET_TOO_SMALL
        logger.error(
            "cost_tracker: Cost Explorer's answer for the period since %s needs at least %d "
            "requests (pages), more than the daily budget of %d, so no refresh can finish; "
            "raise %s (the module's cost_tracker_ce_max_requests_per_day) to at least %d",
            since,
            budget.pages_needed,
            max_requests,
            cex.ENV_MAX_REQUESTS_PER_DAY,
            budget.pages_needed,
        )
    else:
        report.ce_error = cex.BUDGET_EXHAUSTED
        logger.warning(
            "cost_tracker: a refresh needs %d requests and %d of today's %d are left; "
            "trying again after 00:00 UTC",
            budget.pages_needed,
            max_requests - budget.used_today,
            max_requests,
        )
    logger.warning("cost_tracker: keeping the previous actual costs (%s)", _fetched_when(snapshot))


def _explain_missing(snapshot: cex.CostSnapshot, jobs: list[JobRecord]) -> None:
    missing = [job.job_id for job in jobs if job.job_id not in snapshot.job_costs]
    if not missing:
        return
    if not snapshot.job_costs:
        logger.warning(
            "cost_tracker: Cost Explorer returned no cost for any JobId tag. Activate 'JobId' "
            "(and 'CostCategory') as cost allocation tags in Billing > Cost allocation tags; "
            "activation takes up to 24 hours and only costs incurred after it are tagged. "
            "Jobs without actual cost: %s",
            ", ".join(missing),
        )
    else:
        logger.info(
            "cost_tracker: no Cost Explorer data yet for %s (Cost Explorer lags by up to a "
            "day; a job must run tagged JobId=<its id>)",
            ", ".join(missing),
        )


def _read_jobs(
    dynamodb: DynamoDBClient, table: str, now: float, namespace: str, report: RunReport
) -> list[JobRecord]:
    """Valid jobs of ``namespace`` active within the cost-settling window; bad items, and
    items naming another namespace, go to the report."""
    jobs, rejected = load_jobs(dynamodb, table, now, within=COST_SETTLE_SECONDS)
    valid: list[JobRecord] = []
    for job in jobs:
        try:
            check_dimension_value(catalog.JOB_ID, job.job_id)
        except MetricsKitError as error:
            rejected.append(Rejected(job.job_id, str(error)))
            continue
        if job.namespace is not None and job.namespace != namespace:
            # The item is worker-writable; the tracker's role may publish anywhere. Publishing
            # into the namespace an item names would let a worker held to its own namespace by
            # IAM write (any) cost figures into another team's.
            rejected.append(
                Rejected(
                    job.job_id,
                    f"namespace {job.namespace!r} is not the tracker's "
                    f"({mk_config.ENV_NAMESPACE}={namespace!r}); the tracker publishes into "
                    "its own namespace only",
                )
            )
            continue
        valid.append(job)
    for item in rejected:
        logger.warning("cost_tracker: skipped job item %r: %s", item.job_id, item.reason)
        report.skipped.append({"job_id": item.job_id, "reason": item.reason})
    return valid


def _within_cap(
    current: list[JobRecord], settling: list[JobRecord], report: RunReport
) -> tuple[list[JobRecord], list[JobRecord]]:
    """At most :data:`MAX_JOBS_PER_RUN` jobs, the most recently active first (current jobs
    before settling ones); the others are skipped and reported (one warning for them all)."""

    def recent_first(jobs: list[JobRecord]) -> list[JobRecord]:
        return sorted(jobs, key=lambda job: (-(last_active(job) or 0.0), job.job_id))

    ranked = recent_first(current) + recent_first(settling)
    if len(ranked) <= MAX_JOBS_PER_RUN:
        return current, settling
    kept = {job.job_id for job in ranked[:MAX_JOBS_PER_RUN]}
    reason = (
        f"more than MAX_JOBS_PER_RUN ({MAX_JOBS_PER_RUN}) jobs in the table are active within "
        "three days; this run reports on the most recently active ones"
    )
    for job in ranked[MAX_JOBS_PER_RUN:]:
        report.skipped.append({"job_id": job.job_id, "reason": reason})
    logger.warning("cost_tracker: %d jobs skipped: %s", len(ranked) - MAX_JOBS_PER_RUN, reason)
    return (
        [job for job in current if job.job_id in kept],
        [job for job in settling if job.job_id in kept],
    )


def _lookback_days(env: Mapping[str, str]) -> int:
    """COST_TRACKER_CE_LOOKBACK_DAYS, 1 to 365; anything else warns and keeps the default."""
    days = mk_config.env_positive_int(cex.ENV_LOOKBACK_DAYS, cex.MAX_LOOKBACK_DAYS, env)
    if days > cex.LONGEST_LOOKBACK_DAYS:
        logger.warning(
            "cost_tracker: %s=%d is more than Cost Explorer's %d days of history; using %d",
            cex.ENV_LOOKBACK_DAYS,
            days,
            cex.LONGEST_LOOKBACK_DAYS,
            cex.MAX_LOOKBACK_DAYS,
        )
        return cex.MAX_LOOKBACK_DAYS
    return days


def _note_lookback(
    jobs: list[JobRecord], now: float, lookback_days: int, report: RunReport
) -> None:
    """Report the jobs that started before the Cost Explorer query can reach."""
    clamped = [
        job.job_id for job in jobs if cex.before_lookback(now, job.started_at, lookback_days)
    ]
    if clamped:
        report.lookback_clamped_jobs = clamped
        logger.warning(
            "cost_tracker: %s started more than %d days ago (or say so in their started_at); "
            "the Cost Explorer query reaches back to %s only (%s), so their ActualCost covers "
            "the days since then",
            ", ".join(clamped),
            lookback_days,
            cex.earliest_start(now, lookback_days).isoformat(),
            cex.ENV_LOOKBACK_DAYS,
        )


def run(
    event: Mapping[str, Any] | None,
    *,
    now: float | None = None,
    table: str | None = None,
    dynamodb: DynamoDBClient | None = None,
    ce_client: CostExplorerClient | None = None,
    sink: Sink | None = None,
    prices: PriceTable | None = None,
    environ: Mapping[str, str] | None = None,
    clock: Callable[[], float] = time.time,
) -> dict[str, Any]:
    """One tracker run; every dependency can be injected (tests, replays).

    ``now`` (default: the event's ``time``, or ``clock()`` when that lies in the future) is
    the moment the run reports on; ``clock`` is the real time, against whose UTC day Cost
    Explorer requests are counted. A ``ce_client`` passed in is used as given: build it with
    :func:`cost_tracker.cost_explorer.ce_client`, so that botocore sends each counted request
    once.

    >>> run({"time": "2026-11-23T12:00:00Z"}, table="jobs", sink=MemorySink())  # doctest: +SKIP
    {'now': '2026-11-23T12:00:00+00:00', 'jobs': 3, ...}
    """
    env = os.environ if environ is None else environ
    at = now if now is not None else _believable(event_time(event, clock), clock())
    report = RunReport(now=dt.datetime.fromtimestamp(at, tz=dt.UTC).isoformat())
    table_name = table or mk_config.env_job_table(env)
    if not table_name:
        raise ConfigurationError(f"set {mk_config.ENV_JOB_TABLE} to the job table's name")
    namespace = mk_config.env_namespace(env)
    # The workers' own dimensions: the progress published for a job whose workers are gone
    # must land in their series (JobId, then these), or the dashboard never shows it.
    own_dimensions = tuple((mk_config.env_dimensions(extra_count=1, environ=env) or {}).items())
    stale_after = mk_config.env_positive_float(ENV_STALE_SECONDS, DEFAULT_STALE_SECONDS, env)
    refresh_hours = mk_config.env_positive_float(
        cex.ENV_REFRESH_HOURS, cex.DEFAULT_REFRESH_HOURS, env
    )
    report.ce_request_budget = mk_config.env_positive_int(
        cex.ENV_MAX_REQUESTS_PER_DAY, cex.DEFAULT_MAX_REQUESTS_PER_DAY, env
    )
    lookback_days = _lookback_days(env)
    price_table = prices or PriceTable.load(env)
    if dynamodb is None:
        import boto3

        dynamodb = boto3.client("dynamodb")
    own_sink = sink is None
    if sink is None:
        from metricskit.job import SINK_NAMES, make_sink

        sink = make_sink(
            mk_config.env_choice(mk_config.ENV_SINK, SINK_NAMES, DEFAULT_TRACKER_SINK, env)
        )

    valid = _read_jobs(dynamodb, table_name, at, namespace, report)
    current = [job for job in valid if is_current(job, at)]
    settling = [job for job in valid if not is_current(job, at)]
    current, settling = _within_cap(current, settling, report)
    valid = sorted(current + settling, key=lambda job: job.job_id)
    _note_lookback(valid, at, lookback_days, report)
    report.settling_jobs = [job.job_id for job in settling]
    report.jobs = len(current)

    snapshot = _snapshot(
        dynamodb,
        table_name,
        ce=ce_client,
        jobs=valid,
        now=at,
        clock=clock,
        refresh_hours=refresh_hours,
        max_requests=report.ce_request_budget,
        lookback_days=lookback_days,
        report=report,
    )
    report.ce_status = "none" if snapshot is None else snapshot.status
    publisher = _Publisher(namespace, at)
    _publish_jobs(
        current,
        settling,
        now=at,
        stale_after=stale_after,
        snapshot=snapshot,
        prices=price_table,
        publisher=publisher,
        report=report,
        own_dimensions=own_dimensions,
    )
    current_month = dt.datetime.fromtimestamp(at, tz=dt.UTC).strftime("%Y-%m")
    if snapshot is not None and snapshot.ok and snapshot.month == current_month:
        for category, amount in sorted(snapshot.monthly.items()):
            try:
                check_dimension_value(catalog.COST_CATEGORY, category)
            except MetricsKitError as error:
                logger.warning("cost_tracker: skipping cost category: %s", error)
                continue
            publisher.gauge(catalog.MONTHLY_COST, amount, (catalog.COST_CATEGORY, category))
    report.metrics, report.export_ok = publisher.export(sink)
    if own_sink:
        sink.shutdown()
    logger.info(
        "cost_tracker: %d jobs, %d skipped, %d metrics, Cost Explorer %s (%d requests)",
        report.jobs,
        len(report.skipped),
        report.metrics,
        "refreshed" if report.ce_refreshed else "cached",
        report.ce_requests,
    )
    return report.as_dict()


def _publish_jobs(
    current: list[JobRecord],
    settling: list[JobRecord],
    *,
    now: float,
    stale_after: float,
    snapshot: cex.CostSnapshot | None,
    prices: PriceTable,
    publisher: _Publisher,
    report: RunReport,
    own_dimensions: tuple[tuple[str, str], ...] = (),
) -> None:
    """Every job's metrics: all of them for current jobs, the actual cost for settling ones."""
    for job, is_settling in [(job, False) for job in current] + [(job, True) for job in settling]:
        try:
            if is_settling:
                _publish_settling_job(job, snapshot=snapshot, publisher=publisher, report=report)
            else:
                _publish_job(
                    job,
                    now=now,
                    stale_after=stale_after,
                    snapshot=snapshot,
                    prices=prices,
                    publisher=publisher,
                    report=report,
                    own_dimensions=own_dimensions,
                )
        except Exception as error:  # one bad job never stops the run
            logger.exception("cost_tracker: job %s failed", job.job_id)
            report.skipped.append({"job_id": job.job_id, "reason": f"internal error: {error}"})


def _publish_job(
    job: JobRecord,
    *,
    now: float,
    stale_after: float,
    snapshot: cex.CostSnapshot | None,
    prices: PriceTable,
    publisher: _Publisher,
    report: RunReport,
    own_dimensions: tuple[tuple[str, str], ...] = (),
) -> None:
    dim = (catalog.JOB_ID, job.job_id)
    estimate: float | None = None
    rate = job.hourly_rate
    if rate is None and job.compute_profile:
        try:
            rate = prices.hourly_rate(job.compute_profile)
        except UnknownProfileError as error:
            logger.warning("cost_tracker: job %s has no price: %s", job.job_id, error)
            report.unpriced.append({"job_id": job.job_id, "reason": str(error)})
    elif rate is None:
        reason = "no compute_profile and no hourly_rate on the job item"
        logger.warning("cost_tracker: job %s has no price: %s", job.job_id, reason)
        report.unpriced.append({"job_id": job.job_id, "reason": reason})
    if rate is not None:
        estimate = estimated_cost(job, rate, now, stale_after)
        publisher.gauge(catalog.ESTIMATED_COST, estimate, dim)

    actual = _publish_actual(job, snapshot, publisher)
    _publish_cost_per_million(
        job, cost_basis(estimate=estimate, actual=actual, settling=False), publisher
    )

    if job.is_stale(now, stale_after):
        report.stale_jobs.append(job.job_id)
        # The library's series, so with the workers' own dimensions (the cost metrics above
        # are the tracker's own: JobId only).
        for name, value in progress_metrics(job).items():
            publisher.gauge(name, value, dim, *own_dimensions)
    report.published_jobs += 1


def _publish_settling_job(
    job: JobRecord,
    *,
    snapshot: cex.CostSnapshot | None,
    publisher: _Publisher,
    report: RunReport,
) -> None:
    """A job that ended one to three days ago: its actual cost only, which is still settling
    (its estimate and progress were final when it ended)."""
    actual = _publish_actual(job, snapshot, publisher)
    _publish_cost_per_million(
        job, cost_basis(estimate=None, actual=actual, settling=True), publisher
    )
    report.published_jobs += 1


def _publish_actual(
    job: JobRecord, snapshot: cex.CostSnapshot | None, publisher: _Publisher
) -> float | None:
    """ActualCost (when Cost Explorer has the job) and ActualCostAvailable; the actual cost.

    ActualCostAvailable says whether this run holds a good Cost Explorer answer (fresh or
    cached), not whether the job is in it: Cost Explorer lags by up to a day, so a healthy
    job has no figure for about its first day, and a 0 then would send operators after a
    fault that is not there. 1 with no ActualCost: Cost Explorer answered and has no figure
    for the job yet (or its JobId tag is not active); 0: no answer to use (throttled,
    denied, the request budget spent, a refresh failed with no earlier figures to keep).
    """
    dim = (catalog.JOB_ID, job.job_id)
    answered = snapshot is not None and snapshot.ok
    actual: float | None = None
    if snapshot is not None and answered and job.job_id in snapshot.job_costs:
        actual = snapshot.job_costs[job.job_id]
        publisher.gauge(catalog.ACTUAL_COST, actual, dim)
    publisher.gauge(catalog.ACTUAL_COST_AVAILABLE, 1.0 if answered else 0.0, dim)
    return actual


def _publish_cost_per_million(job: JobRecord, cost: float | None, publisher: _Publisher) -> None:
    if cost is not None and job.done > 0:
        publisher.gauge(
            catalog.COST_PER_MILLION_RECORDS,
            cost / job.done * 1_000_000.0,
            (catalog.JOB_ID, job.job_id),
        )


def handler(event: Mapping[str, Any] | None, context: object) -> dict[str, Any]:
    """AWS Lambda entry point (``cost_tracker.handler.handler``), run on a schedule."""
    logging.getLogger("cost_tracker").setLevel(logging.INFO)
    return run(event)
