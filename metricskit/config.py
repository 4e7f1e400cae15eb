"""Configuration: constructor argument, then a ``METRICSKIT_*`` variable, then a default.

Every variable metricskit reads is a documented constant here. Values are resolved when a
:class:`~metricskit.Job` is built, never at import. An unparsable value warns once and falls
back to the default, so a typo in a task definition never takes a worker down.
AWS endpoints and regions are not configured here: boto3's own ``AWS_ENDPOINT_URL*`` and
``AWS_DEFAULT_REGION`` variables apply, so real AWS, moto and LocalStack need no code change;
where boto3 finds no region, metricskit uses ``AWS_REGION`` (see :mod:`metricskit.aws_clients`).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, TypeVar

from metricskit import catalog, validation
from metricskit.errors import MetricsKitError

logger = logging.getLogger("metricskit")

ENV_SINK: Final = "METRICSKIT_SINK"
"""Sink name: ``cloudwatch`` (default), ``emf``, ``memory`` or ``off``."""
ENV_NAMESPACE: Final = "METRICSKIT_NAMESPACE"
"""CloudWatch namespace (default ``metricskit``)."""
ENV_FLUSH_INTERVAL: Final = "METRICSKIT_FLUSH_INTERVAL"
"""Seconds between background flushes (default 60)."""
ENV_HIGH_RESOLUTION: Final = "METRICSKIT_HIGH_RESOLUTION"
"""``true`` publishes with StorageResolution=1 (billed as high-resolution metrics)."""
ENV_SHUTDOWN_TIMEOUT: Final = "METRICSKIT_SHUTDOWN_TIMEOUT"
"""Seconds close(), exit and SIGTERM may spend delivering what is pending (default 10)."""
ENV_JOB_TABLE: Final = "METRICSKIT_JOB_TABLE"
"""DynamoDB job table name; unset means no job registry."""
ENV_WORKER_ID: Final = "METRICSKIT_WORKER_ID"
"""Adds a ``WorkerId`` dimension to every series (opt-in: each series is billed)."""
ENV_EMF_AGENT_ENDPOINT: Final = "METRICSKIT_EMF_AGENT_ENDPOINT"
"""``tcp://host:port`` or ``udp://host:port`` of a CloudWatch agent for the EMF sink."""
ENV_EMF_LOG_GROUP: Final = "METRICSKIT_EMF_LOG_GROUP"
"""Log group the CloudWatch agent writes EMF documents to (``_aws.LogGroupName``)."""
ENV_EMF_LOG_STREAM: Final = "METRICSKIT_EMF_LOG_STREAM"
"""Log stream the CloudWatch agent writes EMF documents to (``_aws.LogStreamName``)."""
ENV_EMF_SERVICE_NAME: Final = "METRICSKIT_EMF_SERVICE_NAME"
"""A ``ServiceName`` property on every EMF document (a log field, not a dimension)."""
ENV_PROGRESS_BAR: Final = "METRICSKIT_PROGRESS_BAR"
"""``true``/``false``: show a terminal progress bar (default: only on a terminal)."""
ENV_DIMENSIONS: Final = "METRICSKIT_DIMENSIONS"
"""A JSON object of your own dimensions (``{"Env": "prod"}``) for jobs created without
``dimensions=``; the Terraform module's ``worker_environment`` output sets it."""
ENV_MAX_QUEUED_PERIODS: Final = "METRICSKIT_MAX_QUEUED_PERIODS"
"""Periods kept for delivery during an outage before older ones merge (default 60)."""
ENV_FINISHED_JOB_RETENTION_DAYS: Final = "METRICSKIT_FINISHED_JOB_RETENTION_DAYS"
"""Days a finished job's item (and a completed shard's checkpoint) stays in the job table
before its TTL deletes it (the ``expires_at`` attribute); 0 or unset keeps it forever. The
Terraform module's ``worker_environment`` output sets it (default 90)."""

ENV_MAX_SERIES: Final = "METRICSKIT_MAX_SERIES"
"""Series one job may publish besides its standard ones before new metrics and stages are
dropped (default 1000)."""

ALL_VARIABLES: Final = (
    ENV_SINK,
    ENV_NAMESPACE,
    ENV_FLUSH_INTERVAL,
    ENV_HIGH_RESOLUTION,
    ENV_SHUTDOWN_TIMEOUT,
    ENV_JOB_TABLE,
    ENV_WORKER_ID,
    ENV_EMF_AGENT_ENDPOINT,
    ENV_EMF_LOG_GROUP,
    ENV_EMF_LOG_STREAM,
    ENV_EMF_SERVICE_NAME,
    ENV_PROGRESS_BAR,
    ENV_MAX_QUEUED_PERIODS,
    ENV_DIMENSIONS,
    ENV_MAX_SERIES,
    ENV_FINISHED_JOB_RETENTION_DAYS,
)

DEFAULT_NAMESPACE: Final = "metricskit"
DEFAULT_SINK: Final = "cloudwatch"
DEFAULT_FLUSH_INTERVAL: Final = 60.0
DEFAULT_SHUTDOWN_TIMEOUT: Final = 10.0
"""Well under ECS's default 30 s between SIGTERM and SIGKILL."""

MIN_FLUSH_INTERVAL: float = 1.0
"""The shortest flush interval: CloudWatch's finest resolution (high-resolution metrics) is
1 s, and every flush of a job with a job table costs one DynamoDB UpdateItem. Read when a
Job is built, not at import, so a test that needs faster flushing lowers it with
``monkeypatch.setattr(metricskit.config, "MIN_FLUSH_INTERVAL", 0.01)``; the argument and the
variable never go below it."""
MAX_FLUSH_INTERVAL: Final = 86_400.0
"""The longest flush interval, one day (the dashboard's longest period). A job flushing less
often shows nothing for that long, and its job item looks stale long before."""
MAX_SHUTDOWN_TIMEOUT: Final = 3_600.0
"""The longest shutdown timeout, and ``flush(timeout=)``: one hour, far above any stop
timeout (ECS allows at most 120 s, a Spot notice gives 2 minutes) and well inside what a
thread wait accepts (``threading.TIMEOUT_MAX``); a longer one would only hide a hung exit."""


@dataclass(frozen=True, slots=True)
class SecondsRange:
    """The numbers of seconds a setting accepts: ``low`` (or just above it) to ``high``.

    >>> str(SecondsRange(0.0, 3600.0, low_excluded=True))
    'a number of seconds above 0 and at most 3600'
    """

    low: float
    high: float
    low_excluded: bool = False

    def __contains__(self, value: float) -> bool:
        above_low = self.low < value if self.low_excluded else self.low <= value
        return above_low and value <= self.high  # NaN fails both

    def __str__(self) -> str:
        if self.low_excluded:
            return f"a number of seconds above {self.low:g} and at most {self.high:g}"
        return f"a number of seconds from {self.low:g} to {self.high:g}"


def flush_interval_range() -> SecondsRange:
    """What ``flush_interval`` and ``METRICSKIT_FLUSH_INTERVAL`` accept (read at each call)."""
    return SecondsRange(MIN_FLUSH_INTERVAL, MAX_FLUSH_INTERVAL)


SHUTDOWN_TIMEOUT_RANGE: Final = SecondsRange(0.0, MAX_SHUTDOWN_TIMEOUT, low_excluded=True)
"""What ``shutdown_timeout``, ``METRICSKIT_SHUTDOWN_TIMEOUT`` and ``flush(timeout=)`` accept."""
DEFAULT_MAX_QUEUED_PERIODS: Final = 60
DEFAULT_MAX_SERIES: Final = 1000
"""One PutMetricData request holds 1000 datums, so a flush of the capped series takes about
one request (per 150 distribution values); and every series is a custom metric CloudWatch
bills by the month (USD 0.30 each for the first 10,000): 1000 is already about USD 300 a
month for a job that runs all month. A name built from data (a user id, a file name) passes
it within minutes; a dashboard-sized job stays far below. Raise it for a job that needs
more."""
MAX_RETENTION_DAYS: Final = 36_500.0
"""The longest retention, a hundred years: an expiry further out guards nothing."""

T = TypeVar("T")

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def _from_env(
    variable: str,
    parse: Callable[[str], T],
    default: T,
    allowed: str,
    environ: Mapping[str, str] | None,
    *,
    instead: str | None = None,
) -> T:
    raw = (os.environ if environ is None else environ).get(variable)
    if raw is None or raw.strip() == "":
        return default
    try:
        return parse(raw.strip())
    except ValueError:
        # A variable is set once for a whole fleet: one bad value must not stop every worker.
        logger.warning(
            "metricskit: ignoring %s=%r (allowed: %s); using %s instead",
            variable,
            raw,
            allowed,
            f"the default {default!r}" if instead is None else instead,
        )
        return default


def _checked(check: Callable[[str], object]) -> Callable[[str], str]:
    """A parser that keeps the text when ``check`` accepts it (a MetricsKitError refuses it)."""

    def parse(raw: str) -> str:
        try:
            check(raw)
        except MetricsKitError as exc:
            raise ValueError(raw) from exc
        return raw

    return parse


def _positive_float(raw: str) -> float:
    value = float(raw)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(raw)
    return value


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError(raw)
    return value


def _boolean(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(raw)


def _choice(choices: frozenset[str]) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw.lower() not in choices:
            raise ValueError(raw)
        return raw.lower()

    return parse


def env_str(variable: str, default: str, environ: Mapping[str, str] | None = None) -> str:
    """A string variable, or ``default`` when unset or blank."""
    return _from_env(variable, str, default, "any text", environ)


def env_namespace(environ: Mapping[str, str] | None = None) -> str:
    """``METRICSKIT_NAMESPACE`` when CloudWatch accepts it, else the default (warning)."""
    return _from_env(
        ENV_NAMESPACE,
        _checked(validation.check_namespace),
        DEFAULT_NAMESPACE,
        validation.NAMESPACE_ALLOWED,
        environ,
    )


def env_worker_id(environ: Mapping[str, str] | None = None) -> str | None:
    """``METRICSKIT_WORKER_ID`` when it is a valid dimension value, else None (warning)."""
    return _from_env(
        ENV_WORKER_ID,
        _checked(lambda raw: validation.check_dimension_value(catalog.WORKER_ID, raw)),
        None,
        validation.DIMENSION_VALUE_ALLOWED,
        environ,
        instead="no WorkerId dimension",
    )


def env_job_table(environ: Mapping[str, str] | None = None) -> str | None:
    """``METRICSKIT_JOB_TABLE`` when it is a DynamoDB table name, else None (warning)."""
    return _from_env(
        ENV_JOB_TABLE,
        _checked(validation.check_table_name),
        None,
        validation.TABLE_NAME_ALLOWED,
        environ,
        instead="no job table",
    )


def env_log_group(environ: Mapping[str, str] | None = None) -> str | None:
    """``METRICSKIT_EMF_LOG_GROUP`` when it is a log group name, else None (warning): the
    CloudWatch agent then writes to its own default group."""
    return _from_env(
        ENV_EMF_LOG_GROUP,
        _checked(validation.check_log_group),
        None,
        validation.LOG_GROUP_ALLOWED,
        environ,
        instead="the agent's default log group",
    )


def env_log_stream(environ: Mapping[str, str] | None = None) -> str | None:
    """``METRICSKIT_EMF_LOG_STREAM`` when it is a log stream name, else None (warning)."""
    return _from_env(
        ENV_EMF_LOG_STREAM,
        _checked(validation.check_log_stream),
        None,
        validation.LOG_STREAM_ALLOWED,
        environ,
        instead="the agent's default log stream",
    )


def env_dimensions(
    *, extra_count: int = 0, environ: Mapping[str, str] | None = None
) -> dict[str, str] | None:
    """``METRICSKIT_DIMENSIONS`` (a JSON object of dimension names to values) when every
    dimension is one ``Job(dimensions=...)`` accepts beside ``extra_count`` of metricskit's
    own, else None (warning): a job then has no dimensions of its own.

    >>> env_dimensions(environ={"METRICSKIT_DIMENSIONS": '{"Env": "prod"}'})
    {'Env': 'prod'}
    """

    def parse(raw: str) -> dict[str, str]:
        decoded = json.loads(raw)  # a JSONDecodeError is a ValueError
        if not isinstance(decoded, dict):
            raise ValueError(raw)
        try:
            validation.check_dimensions(
                decoded, reserved=catalog.reserved_dimension_names(), extra_count=extra_count
            )
        except MetricsKitError as exc:
            raise ValueError(raw) from exc
        return decoded

    return _from_env(
        ENV_DIMENSIONS,
        parse,
        None,
        'a JSON object of dimension names to values, such as {"Env": "prod"}, that '
        "Job(dimensions=...) accepts",
        environ,
        instead="no dimensions of your own",
    )


def env_optional_str(variable: str, environ: Mapping[str, str] | None = None) -> str | None:
    """A string variable, or None when unset or blank."""
    raw = (os.environ if environ is None else environ).get(variable, "").strip()
    return raw or None


def env_positive_float(
    variable: str, default: float, environ: Mapping[str, str] | None = None
) -> float:
    """A positive finite number of seconds, or ``default`` (warning when unparsable)."""
    return _from_env(variable, _positive_float, default, "a positive number", environ)


def env_seconds(
    variable: str,
    default: float,
    allowed: SecondsRange,
    environ: Mapping[str, str] | None = None,
) -> float:
    """A number of seconds in ``allowed``, or ``default`` (warning when unparsable or outside).

    >>> env_seconds("METRICSKIT_FLUSH_INTERVAL", 60.0, flush_interval_range(), {})
    60.0
    """

    def parse(raw: str) -> float:
        value = float(raw)
        if value not in allowed:
            raise ValueError(raw)
        return value

    return _from_env(variable, parse, default, str(allowed), environ)


def env_positive_int(variable: str, default: int, environ: Mapping[str, str] | None = None) -> int:
    """A positive integer, or ``default`` (warning when unparsable)."""
    return _from_env(variable, _positive_int, default, "a positive integer", environ)


def env_bool(
    variable: str, default: bool | None, environ: Mapping[str, str] | None = None
) -> bool | None:
    """``true``/``false`` (also 1/0, yes/no, on/off), or ``default`` (warning when unparsable)."""
    allowed = "one of true/false, 1/0, yes/no, on/off"
    return _from_env(variable, _boolean, default, allowed, environ)


def env_choice(
    variable: str, choices: frozenset[str], default: str, environ: Mapping[str, str] | None = None
) -> str:
    """One of ``choices`` (case-insensitive), or ``default`` (warning when it is not one)."""
    allowed = "one of " + ", ".join(sorted(choices))
    return _from_env(variable, _choice(choices), default, allowed, environ)


def env_retention_days(environ: Mapping[str, str] | None = None) -> float | None:
    """``METRICSKIT_FINISHED_JOB_RETENTION_DAYS`` as days, or None to keep finished jobs
    forever: when unset, 0, or not a number of days from 0 to 36500 (warning; keeping an
    item too long is the safe side of a typo).

    >>> env_retention_days({"METRICSKIT_FINISHED_JOB_RETENTION_DAYS": "90"})
    90.0
    """

    def parse(raw: str) -> float | None:
        value = float(raw)
        if not 0.0 <= value <= MAX_RETENTION_DAYS:  # NaN fails too
            raise ValueError(raw)
        return value or None

    return _from_env(
        ENV_FINISHED_JOB_RETENTION_DAYS,
        parse,
        None,
        f"a number of days from 0 (keep forever) to {MAX_RETENTION_DAYS:g}",
        environ,
        instead="keeping finished jobs forever",
    )
