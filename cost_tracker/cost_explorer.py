"""Actual costs from Cost Explorer, fetched at most once per refresh interval and cached.

Cost Explorer bills $0.01 per ``GetCostAndUsage`` request (every page counts) and updates
its data only a few times a day, so polling it on every run buys nothing. One query
answers everything the tracker needs:

* ``GroupBy`` the ``JobId`` tag *and* the ``CostCategory`` tag (two groupings are the
  API's maximum), ``Granularity=MONTHLY``, metric ``UnblendedCost``, from the first day of
  the month (or the earliest current job's start, if earlier, but at most
  :data:`MAX_LOOKBACK_DAYS` back) to tomorrow;
* a job's actual cost is the sum of its ``JobId$<id>`` groups over every month;
* ``MonthlyCost`` of a category is the sum of its ``CostCategory$<name>`` groups in the
  current month, whatever the JobId (``JobId$`` groups are costs without that tag).

The result is stored in the job table as one cost-cache item (``costcache#cost-explorer``,
``payload`` JSON with the costs of the jobs in the table only, ``fetched_at`` = when the
refresh was claimed). A refresh is claimed with a
conditional write on ``fetched_at``, so two overlapping invocations never both pay for one,
and a failed request is not retried before the next interval: at most
``ceil(24 / refresh_hours)`` refreshes a day (4 with the default 6 hours) whatever the
schedule and whatever Cost Explorer answers.

A refresh may take several requests (one per page of the answer), so refreshes alone do not
bound the bill. Every request is also counted against a budget per UTC day of the real clock
(``COST_TRACKER_CE_MAX_REQUESTS_PER_DAY``, default 4), kept in the same cache item
(``requests_day``, ``requests_used``) and taken with a conditional write before the request is
sent, so overlapping runs never overspend it; the client sends each request once (botocore's
retries are off, :func:`ce_client`), so every request sent was counted. A refresh that would
exceed it stops before that request (:data:`BUDGET_EXHAUSTED`) and the previous figures are
kept.

A partial answer buys nothing, so the item also remembers how many pages the answer needs
(``refresh_pages``: exact after a complete refresh, a lower bound after one cut short) for
the query period it was learned on (``refresh_pages_since``, the period's start). A refresh
that cannot finish within what is left of the day's budget is not started
(:data:`BUDGET_EXHAUSTED`, nothing sent), one that cannot finish within a whole day's
budget is not started while the period starts on the same day (:data:`BUDGET_TOO_SMALL`), nor
one whose answer needs more than :data:`MAX_PAGES` pages, the most a refresh reads
(:data:`TRUNCATED`): such an answer is asked for once, not 20 paid pages at every refresh.
The answer only grows while the start stays (the end moves on each day); a later start (a
new month, the earliest job settled) forgets what was learned, and the next refresh tries.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import math
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from metricskit import job_table as jt

if TYPE_CHECKING:
    from mypy_boto3_ce.client import CostExplorerClient
    from mypy_boto3_dynamodb.client import DynamoDBClient

logger = logging.getLogger("cost_tracker")

ENV_REFRESH_HOURS: Final = "COST_TRACKER_CE_REFRESH_HOURS"
"""Hours between Cost Explorer refreshes (default 6: at most 4 requests a day)."""
DEFAULT_REFRESH_HOURS: Final = 6.0
ENV_MAX_REQUESTS_PER_DAY: Final = "COST_TRACKER_CE_MAX_REQUESTS_PER_DAY"
"""GetCostAndUsage requests (pages) allowed per UTC day, a hard cap (default 4, $0.04 a day)."""
DEFAULT_MAX_REQUESTS_PER_DAY: Final = 4

CACHE_NAME: Final = "cost-explorer"
JOB_TAG: Final = "JobId"
CATEGORY_TAG: Final = "CostCategory"
METRIC: Final = "UnblendedCost"
UNTAGGED: Final = "Untagged"
"""The MonthlyCost category of costs that carry no CostCategory tag."""
MAX_PAGES: Final = 20
"""Pages followed per refresh; each costs $0.01, so a runaway loop is cut short."""
CLOCK_SLACK_SECONDS: Final = 300.0
"""How far ahead of the real clock an event's time, or a stored refresh claim, may lie and
still be believed (clock skew, a schedule firing early). Beyond it the event's time is
replaced by the clock, and a claim is treated as due: one event from the future (a console
test event with a typo, a hand-made replay) would otherwise block every refresh until then."""
MAX_LOOKBACK_DAYS: Final = 31
"""How far before today a job's start may take the query period, by default
(``COST_TRACKER_CE_LOOKBACK_DAYS``). Job items are written by the workers, so one item's
``started_at`` (0, say) must not stretch every refresh to a year of JobId x CostCategory
groups, past the page limit and the day's budget, for every job: an older start is clamped to
this bound (the job's ActualCost then covers its last 31 days), which keeps the answer within
two monthly periods, the most an honest job started late last month gives too. Accounts
whose jobs run longer raise it, paying in answer pages."""
ENV_LOOKBACK_DAYS: Final = "COST_TRACKER_CE_LOOKBACK_DAYS"
LONGEST_LOOKBACK_DAYS: Final = 365
"""Cost Explorer keeps 12 months (13 with multi-year data enabled) of history."""

STATUS_OK: Final = "ok"
STATUS_NO_DATA: Final = "no_data"
STATUS_PENDING: Final = "pending"
STATUS_ERROR: Final = "error"

TRUNCATED: Final = "TooManyPages"
"""The error code of an answer cut short at MAX_PAGES, and of a refresh not started because
the answer is known to need more pages than that: no refresh could ever finish it."""
BUDGET_EXHAUSTED: Final = "RequestBudgetExhausted"
"""The error code of a refresh stopped because the day's request budget is spent."""
BUDGET_UNREADABLE: Final = "RequestBudgetUnreadable"
"""The error code of a refresh not started because today's request count in the cache item
is not a non-negative integer: an unknown count could be over the cap, so nothing is spent
until the next UTC day starts a new count."""
BUDGET_TOO_SMALL: Final = "RequestBudgetTooSmall"
"""The error code of a refresh not started because the answer needs more pages than a whole
day's request budget: no refresh could ever finish until the budget is raised."""

CE_MAX_ATTEMPTS: Final = 1
"""botocore's attempts per Cost Explorer request: every request is sent once. botocore would
otherwise send a request again (up to 3 attempts) after a read timeout, a 5xx or
LimitExceededException, each a paid request the budget never counted (a read timeout means
Cost Explorer may already have billed it); a failed refresh waits for the next one instead."""

UNAVAILABLE_CODES: Final = frozenset(
    {"LimitExceededException", "AccessDeniedException", "DataUnavailableException"}
)
"""Errors that are expected in operation; any other error is treated the same way."""


@dataclass(frozen=True, slots=True)
class CostSnapshot:
    """What one refresh learned (or why it learned nothing)."""

    status: str  # STATUS_OK or STATUS_ERROR
    fetched_at: float
    month: str = ""  # "YYYY-MM" of the MonthlyCost figures
    job_costs: Mapping[str, float] = field(default_factory=dict)
    monthly: Mapping[str, float] = field(default_factory=dict)
    error_code: str = ""
    error_message: str = ""
    pages: int = 0

    @property
    def ok(self) -> bool:
        return self.status == STATUS_OK

    def to_json(self) -> str:
        return json.dumps(
            {
                "status": self.status,
                "fetched_at": self.fetched_at,
                "month": self.month,
                "job_costs": dict(self.job_costs),
                "monthly": dict(self.monthly),
                "error_code": self.error_code,
                "error_message": self.error_message,
                "pages": self.pages,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> CostSnapshot:
        """The snapshot :meth:`to_json` wrote; ValueError for anything else.

        The cache item lives in a table others can write, so every member is checked for
        the shape it must have, rather than trusted to it.

        >>> CostSnapshot.from_json('{"status": "ok", "fetched_at": 1, "job_costs": []}')
        Traceback (most recent call last):
        ValueError: job_costs must be an object of finite numbers, got []
        """
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError(f"the payload must be a JSON object, got {type(data).__name__}")
        status = data.get("status")
        if status not in (STATUS_OK, STATUS_ERROR):
            raise ValueError(f"status must be {STATUS_OK!r} or {STATUS_ERROR!r}, got {status!r}")
        pages = data.get("pages", 0)
        if isinstance(pages, bool) or not isinstance(pages, int) or pages < 0:
            raise ValueError(f"pages must be a non-negative integer, got {pages!r}")
        return cls(
            status=status,
            fetched_at=_finite(data.get("fetched_at"), "fetched_at"),
            month=_text(data, "month"),
            job_costs=_amounts(data.get("job_costs", {}), "job_costs"),
            monthly=_amounts(data.get("monthly", {}), "monthly"),
            error_code=_text(data, "error_code"),
            error_message=_text(data, "error_message"),
            pages=pages,
        )

    def for_jobs(self, job_ids: Collection[str]) -> CostSnapshot:
        """This snapshot with the actual costs of ``job_ids`` only (MonthlyCost unchanged).

        Cost Explorer answers for every JobId tag in the period, other teams' and long-gone
        jobs' included (thousands in a large account); the cache item keeps only the jobs in
        the table, so it stays far below DynamoDB's 400 KB item limit.

        >>> snap = CostSnapshot(STATUS_OK, 0.0, job_costs={"a": 1.0, "other": 2.0})
        >>> dict(snap.for_jobs({"a", "b"}).job_costs)
        {'a': 1.0}
        """
        kept = {job_id: cost for job_id, cost in self.job_costs.items() if job_id in job_ids}
        return dataclasses.replace(self, job_costs=kept)

    def job_status(self, job_id: str) -> str:
        """How the actual cost of ``job_id`` stands in this snapshot."""
        if not self.ok:
            return f"{STATUS_ERROR}:{self.error_code}"
        return STATUS_OK if job_id in self.job_costs else STATUS_NO_DATA


def _finite(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _text(data: Mapping[str, Any], name: str) -> str:
    value = data.get(name, "")
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, got {value!r}")
    return value


def _amounts(value: object, name: str) -> dict[str, float]:
    if not isinstance(value, dict):
        raise ValueError(f"{name} must be an object of finite numbers, got {value!r}")
    return {str(key): _finite(amount, f"{name}[{key!r}]") for key, amount in value.items()}


def ce_client() -> CostExplorerClient:
    """The tracker's Cost Explorer client: boto3's region and endpoint (``AWS_ENDPOINT_URL*``
    included), and no retries inside botocore (:data:`CE_MAX_ATTEMPTS`), so each request
    counted against the day's budget is sent exactly once.

    >>> ce_client().meta.config.retries["total_max_attempts"]   # doctest: +SKIP
    1
    """
    import boto3
    from botocore.config import Config

    config = Config(retries={"mode": "standard", "total_max_attempts": CE_MAX_ATTEMPTS})
    return boto3.client("ce", config=config)


def _utc(now: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(now, tz=dt.UTC)


def query_period(
    now: float, job_starts: Iterable[float], lookback_days: int = MAX_LOOKBACK_DAYS
) -> tuple[str, str]:
    """The ``TimePeriod`` (start inclusive, end exclusive) of one refresh.

    >>> query_period(1_700_000_000.0, [])   # 2023-11-14
    ('2023-11-01', '2023-11-15')
    """
    today = _utc(now).date()
    start = today.replace(day=1)
    earliest = min(job_starts, default=None)
    if earliest is not None:
        start = min(start, _utc(earliest).date())
    start = max(start, earliest_start(now, lookback_days))
    return start.isoformat(), (today + dt.timedelta(days=1)).isoformat()


def earliest_start(now: float, lookback_days: int = MAX_LOOKBACK_DAYS) -> dt.date:
    """The earliest day a job's start may take the query period back to
    (``lookback_days`` before ``now``'s day).

    >>> earliest_start(1_700_000_000.0)   # 2023-11-14
    datetime.date(2023, 10, 14)
    """
    return _utc(now).date() - dt.timedelta(days=lookback_days)


def before_lookback(now: float, started_at: float, lookback_days: int = MAX_LOOKBACK_DAYS) -> bool:
    """Whether a job started before the query period can reach (its ActualCost is partial).

    >>> before_lookback(1_700_000_000.0, 0.0), before_lookback(1_700_000_000.0, 1_699_000_000.0)
    (True, False)
    """
    return _utc(started_at).date() < earliest_start(now, lookback_days)


def build_request(
    now: float, job_starts: Iterable[float], lookback_days: int = MAX_LOOKBACK_DAYS
) -> dict[str, Any]:
    """The GetCostAndUsage arguments of one refresh (without the page token)."""
    start, end = query_period(now, job_starts, lookback_days)
    return {
        "TimePeriod": {"Start": start, "End": end},
        "Granularity": "MONTHLY",
        "Metrics": [METRIC],
        "GroupBy": [
            {"Type": "TAG", "Key": JOB_TAG},
            {"Type": "TAG", "Key": CATEGORY_TAG},
        ],
    }


def _tag_value(key: str, tag: str) -> str | None:
    prefix = f"{tag}$"
    return key[len(prefix) :] if key.startswith(prefix) else None


def _amount(group: Mapping[str, Any]) -> float:
    amount = float(group.get("Metrics", {}).get(METRIC, {}).get("Amount", "0"))
    if not math.isfinite(amount):
        raise ValueError(f"amount {amount!r} is not finite")
    return amount


def fetch_costs(
    ce: CostExplorerClient,
    now: float,
    job_starts: Iterable[float],
    take_request: Callable[[], bool] | None = None,
    lookback_days: int = MAX_LOOKBACK_DAYS,
) -> CostSnapshot:
    """Ask Cost Explorer once (following NextPageToken) and summarize the answer.

    ``take_request`` is called before every request (page); when it returns False the request
    is not sent and the refresh fails with :data:`BUDGET_EXHAUSTED` (a partial answer is no
    answer). Never raises: an AWS error comes back as a snapshot with ``status="error"``.

    >>> snap = fetch_costs(boto3.client("ce"), time.time(), [])   # doctest: +SKIP
    >>> snap.monthly                                               # doctest: +SKIP
    {'Training': 812.4, 'Inference': 120.0}
    """
    from botocore.exceptions import BotoCoreError, ClientError

    request = build_request(now, job_starts, lookback_days)
    month_start = _utc(now).date().replace(day=1).isoformat()
    job_costs: dict[str, float] = {}
    monthly: dict[str, float] = {}
    pages = 0
    token: str | None = None
    try:
        while True:
            kwargs = dict(request)
            if token:
                kwargs["NextPageToken"] = token
            if take_request is not None and not take_request():
                return _failed(
                    now,
                    BUDGET_EXHAUSTED,
                    f"the day's Cost Explorer request budget ({ENV_MAX_REQUESTS_PER_DAY}) is "
                    f"spent; {pages} request(s) of this refresh were sent",
                    pages,
                )
            pages += 1
            response = ce.get_cost_and_usage(**kwargs)
            for period in response.get("ResultsByTime", []):
                in_month = period.get("TimePeriod", {}).get("Start", "") >= month_start
                for group in period.get("Groups", []):
                    _add_group(group, in_month, job_costs, monthly)
            token = response.get("NextPageToken")
            if not token:
                break
            if pages >= MAX_PAGES:
                # A job's groups may lie on the pages not read: partial sums would look
                # like real costs, so the whole answer counts as failed.
                return _failed(now, TRUNCATED, too_many_pages_advice(request), pages)
    except ClientError as error:
        info = error.response.get("Error", {})
        code = str(info.get("Code", "Unknown"))
        return _failed(now, code, str(info.get("Message", "")), pages)
    except (BotoCoreError, ValueError, TypeError) as error:
        return _failed(now, type(error).__name__, str(error), pages)
    return CostSnapshot(
        status=STATUS_OK,
        fetched_at=now,
        month=month_start[:7],
        job_costs=job_costs,
        monthly=monthly,
        pages=pages,
    )


def too_many_pages_advice(request: Mapping[str, Any]) -> str:
    """What to do about an answer longer than :data:`MAX_PAGES` for ``request``'s period.

    >>> too_many_pages_advice({"TimePeriod": {"Start": "2026-11-01"}})[:60]
    "Cost Explorer's answer for the period since 2026-11-01 needs"
    """
    since = request.get("TimePeriod", {}).get("Start", "?")
    return (
        f"Cost Explorer's answer for the period since {since} needs more than MAX_PAGES "
        f"({MAX_PAGES}) requests (pages), the most one refresh reads, so no refresh can finish "
        "and none is started again while the period starts on that day (each page costs "
        "$0.01). Make the answer smaller: fewer distinct JobId tag values in the period (one "
        "per job, not one per task or attempt), or a shorter period (it reaches back to the "
        "earliest start of a job in the table active in the last three days)"
    )


def _add_group(
    group: Mapping[str, Any],
    in_month: bool,
    job_costs: dict[str, float],
    monthly: dict[str, float],
) -> None:
    job_id: str | None = None
    category: str | None = None
    for key in group.get("Keys", []):
        job_id = _tag_value(key, JOB_TAG) if job_id is None else job_id
        category = _tag_value(key, CATEGORY_TAG) if category is None else category
    amount = _amount(group)
    if job_id:
        job_costs[job_id] = job_costs.get(job_id, 0.0) + amount
    if in_month:
        name = category or UNTAGGED
        monthly[name] = monthly.get(name, 0.0) + amount


def _failed(now: float, code: str, message: str, pages: int) -> CostSnapshot:
    hint = {
        "LimitExceededException": "Cost Explorer throttled the request",
        "AccessDeniedException": "the Lambda role lacks ce:GetCostAndUsage",
        "DataUnavailableException": "Cost Explorer has no data yet for this account/period",
        TRUNCATED: f"Cost Explorer's answer has more than MAX_PAGES ({MAX_PAGES}) pages",
        BUDGET_EXHAUSTED: "the day's Cost Explorer request budget is spent",
        BUDGET_TOO_SMALL: "the answer needs more pages than a day's Cost Explorer budget",
    }.get(code, "Cost Explorer request failed")
    logger.warning(
        "cost_tracker: %s (%s: %s); keeping the estimates and publishing "
        "ActualCostAvailable=0 until the next refresh",
        hint,
        code,
        message,
    )
    return CostSnapshot(
        status=STATUS_ERROR, fetched_at=now, error_code=code, error_message=message, pages=pages
    )


@dataclass(frozen=True, slots=True)
class RequestBudget:
    """The state of the daily request budget at one moment."""

    used_today: int
    """Requests counted against the day so far."""
    pages_needed: int
    """Pages the answer is known to need (0: not known for this query period)."""
    unreadable: str = ""
    """Why today's count cannot be read (empty when it can): then no request is sent today."""


def pages_learned(snapshot: CostSnapshot) -> int:
    """Pages the answer is known to need after ``snapshot``'s refresh (0: nothing learned).

    >>> pages_learned(CostSnapshot(status=STATUS_OK, fetched_at=0.0, pages=3))
    3
    >>> pages_learned(CostSnapshot(STATUS_ERROR, 0.0, error_code=BUDGET_EXHAUSTED, pages=4))
    5
    """
    if snapshot.ok:
        return snapshot.pages
    if snapshot.error_code in (BUDGET_EXHAUSTED, TRUNCATED) and snapshot.pages:
        return snapshot.pages + 1  # a next page was announced and not read
    return 0


class CostCache:
    """The cost-cache item in the job table, and the refresh claim on it."""

    def __init__(self, client: DynamoDBClient, table: str, refresh_hours: float) -> None:
        self.client = client
        self.table = table
        self.refresh_seconds = refresh_hours * 3600.0
        self.key = {jt.HASH_KEY: {"S": jt.cost_cache_key(CACHE_NAME)}}

    def load(self) -> tuple[CostSnapshot | None, float | None]:
        """The cached snapshot (None if none or unreadable) and the last claim time."""
        item = self.client.get_item(TableName=self.table, Key=self.key, ConsistentRead=True).get(
            "Item"
        )
        if not item:
            return None, None
        fetched_at = _stored_number(item, jt.FETCHED_AT)
        payload = item.get(jt.PAYLOAD, {}).get("S")
        if not payload:
            return None, fetched_at
        try:
            return CostSnapshot.from_json(payload), fetched_at
        except (ValueError, RecursionError) as error:
            # Anyone who can write the table can write this item: a payload of another shape
            # is no cache (the next due refresh replaces it), never a failed run.
            logger.warning("cost_tracker: ignoring an unreadable cost cache payload: %s", error)
            return None, fetched_at

    def worth_keeping(self, snapshot: CostSnapshot, now: float) -> bool:
        """Whether ``snapshot`` may stand in for a failed refresh at ``now``: a good one from
        the previous refresh (less than two intervals old), not an older one."""
        return snapshot.ok and now - snapshot.fetched_at < 2 * self.refresh_seconds

    def due(self, fetched_at: float | None, now: float, real_now: float | None = None) -> bool:
        """Whether a refresh is due at ``now`` (never for a ``now`` before the last claim),
        or because the last claim lies ahead of the real clock ``real_now`` by more than
        :data:`CLOCK_SLACK_SECONDS` (it was taken for an event time from the future).

        >>> cache = CostCache(client=None, table="jobs", refresh_hours=6)
        >>> cache.due(2_000_000_000.0, now=1_800_000_000.0, real_now=1_800_000_000.0)
        True
        """
        if fetched_at is None or now - fetched_at >= self.refresh_seconds:
            return True
        if real_now is not None and fetched_at > real_now + CLOCK_SLACK_SECONDS:
            logger.warning(
                "cost_tracker: the last refresh was claimed for %s, ahead of the clock (%s): "
                "an event time from the future; refreshing now",
                _utc(fetched_at).isoformat(),
                _utc(real_now).isoformat(),
            )
            return True
        return False

    def claim(self, now: float, real_now: float | None = None) -> bool:
        """Atomically take the refresh at ``now``; False when another run already has it.

        With ``real_now``, a claim stored ahead of that clock (see :meth:`due`) may be taken
        over too, by one run only: the winner's claim is no longer ahead of it.
        """
        from botocore.exceptions import ClientError

        # A claim that is not a number (load read it as none: due) is taken over; the type
        # test comes first, before a comparison of a string with a number.
        condition = "attribute_not_exists(#f) OR NOT attribute_type(#f, :n) OR #f <= :due"
        values: dict[str, Any] = {
            ":now": {"N": _num(now)},
            ":due": {"N": _num(now - self.refresh_seconds)},
            ":type": {"S": jt.TYPE_COST_CACHE},
            ":n": {"S": "N"},
        }
        if real_now is not None:
            condition += " OR #f > :future"
            values[":future"] = {"N": _num(real_now + CLOCK_SLACK_SECONDS)}
        try:
            self.client.update_item(
                TableName=self.table,
                Key=self.key,
                UpdateExpression="SET #f = :now, #t = :type",
                ConditionExpression=condition,
                ExpressionAttributeNames={"#f": jt.FETCHED_AT, "#t": jt.ITEM_TYPE},
                ExpressionAttributeValues=values,
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def take_request(self, now: float, limit: int) -> bool:
        """Count one Cost Explorer request against the budget of ``now``'s UTC day; False
        (nothing counted) when ``limit`` requests were already counted that day.

        Conditional writes, as :meth:`claim`: the count of the day goes up only while below
        ``limit``, and a new day starts at 1 only over an earlier day, so two overlapping runs
        never take the last request twice and a replayed past event cannot reset today.
        """
        from botocore.exceptions import ClientError

        day = _utc(now).date()
        names = {"#d": jt.REQUESTS_DAY, "#n": jt.REQUESTS_USED, "#t": jt.ITEM_TYPE}
        attempts = (
            # Same day: one more, while below the limit (and not below zero: a count written
            # negative by hand would otherwise buy requests beyond the cap).
            (
                "SET #n = #n + :one, #t = :type",
                "#d = :day AND attribute_type(#n, :ntype) AND #n >= :zero AND #n < :limit",
                {
                    ":one": {"N": "1"},
                    ":zero": {"N": "0"},
                    ":ntype": {"S": "N"},
                    ":day": {"S": day.isoformat()},
                    ":limit": {"N": str(limit)},
                },
            ),
            # First request of a later day: start again at 1. A day that is not a string, or
            # lies more than a day ahead of the clock (no clock skew writes that), is no day
            # and starts one too, rather than stopping every request for good.
            (
                "SET #d = :day, #n = :one, #t = :type",
                "attribute_not_exists(#d) OR NOT attribute_type(#d, :stype) OR #d < :day "
                "OR #d > :tomorrow",
                {
                    ":one": {"N": "1"},
                    ":stype": {"S": "S"},
                    ":day": {"S": day.isoformat()},
                    ":tomorrow": {"S": (day + dt.timedelta(days=1)).isoformat()},
                },
            ),
        )
        if limit < 1:
            return False
        for _ in range(2):  # a concurrent run may start the day between the two attempts
            for expression, condition, values in attempts:
                try:
                    self.client.update_item(
                        TableName=self.table,
                        Key=self.key,
                        UpdateExpression=expression,
                        ConditionExpression=condition,
                        ExpressionAttributeNames=names,
                        ExpressionAttributeValues={
                            **values,
                            ":type": {"S": jt.TYPE_COST_CACHE},
                        },
                    )
                except ClientError as error:
                    code = error.response.get("Error", {}).get("Code")
                    if code != "ConditionalCheckFailedException":
                        raise
                    continue
                return True
            if self.requests_today(now) >= limit:
                return False
        return False

    def requests_today(self, now: float) -> int:
        """Requests counted against ``now``'s UTC day (0 for another day or none)."""
        return self.budget(now).used_today

    def budget(self, now: float, since: str = "") -> RequestBudget:
        """The budget as it stands at ``now``: requests counted on its UTC day, and the pages
        the answer for a query period starting ``since`` needs (each 0 when the item holds
        another day or period)."""
        item = self.client.get_item(TableName=self.table, Key=self.key, ConsistentRead=True).get(
            "Item", {}
        )
        used, unreadable = 0, ""
        if item.get(jt.REQUESTS_DAY, {}).get("S") == _utc(now).date().isoformat():
            raw = item.get(jt.REQUESTS_USED, {}).get("N", "0")
            if _COUNT.fullmatch(raw):
                used = int(raw)
            else:
                unreadable = f"{jt.REQUESTS_USED} {raw!r} is not a non-negative integer"
        pages = 0
        if since and item.get(jt.REFRESH_PAGES_SINCE, {}).get("S") == since:
            raw = item.get(jt.REFRESH_PAGES, {}).get("N", "0")
            if _COUNT.fullmatch(raw):
                pages = int(raw)
            else:
                # Only advice: unknown pages start a refresh that the day's count still caps.
                logger.warning(
                    "cost_tracker: ignoring %s %r in the cost cache item (not a non-negative "
                    "integer)",
                    jt.REFRESH_PAGES,
                    raw,
                )
        return RequestBudget(used_today=used, pages_needed=pages, unreadable=unreadable)

    def note_pages(self, since: str, pages: int) -> None:
        """Remember that the answer for a query period starting ``since`` needs ``pages``."""
        self.client.update_item(
            TableName=self.table,
            Key=self.key,
            UpdateExpression="SET #p = :p, #s = :s",
            ExpressionAttributeNames={"#p": jt.REFRESH_PAGES, "#s": jt.REFRESH_PAGES_SINCE},
            ExpressionAttributeValues={":p": {"N": str(pages)}, ":s": {"S": since}},
        )

    def store(self, snapshot: CostSnapshot) -> None:
        self.client.update_item(
            TableName=self.table,
            Key=self.key,
            UpdateExpression="SET #p = :p",
            ExpressionAttributeNames={"#p": jt.PAYLOAD},
            ExpressionAttributeValues={":p": {"S": snapshot.to_json()}},
        )

    def record_job(self, job_id: str, snapshot: CostSnapshot) -> None:
        """Copy this job's result onto its job item (actual_cost, fetched_at, status)."""
        names = {"#s": jt.ACTUAL_COST_STATUS, "#f": jt.ACTUAL_COST_FETCHED_AT}
        values: dict[str, Any] = {
            ":s": {"S": snapshot.job_status(job_id)},
            ":f": {"N": _num(snapshot.fetched_at)},
        }
        expression = "SET #s = :s, #f = :f"
        if snapshot.ok and job_id in snapshot.job_costs:
            names["#c"] = jt.ACTUAL_COST
            values[":c"] = {"N": _num(snapshot.job_costs[job_id])}
            expression += ", #c = :c"
        self.client.update_item(
            TableName=self.table,
            Key={jt.HASH_KEY: {"S": job_id}},
            UpdateExpression=expression,
            ConditionExpression=f"attribute_exists({jt.HASH_KEY})",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )


_COUNT: Final = re.compile(r"[0-9]+")
"""A stored count as it must read (DynamoDB keeps numbers as decimal text)."""


def _stored_number(item: Mapping[str, Any], name: str) -> float | None:
    """The number attribute ``name`` of a low-level item; None (with a warning) when absent
    or not a finite number."""
    raw = item.get(name)
    if raw is None:
        return None
    try:
        value = float(raw["N"])
    except (KeyError, TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value):
        logger.warning("cost_tracker: ignoring %s %r in the cost cache item", name, raw)
        return None
    return value


def _num(value: float) -> str:
    return repr(round(value, 10))
