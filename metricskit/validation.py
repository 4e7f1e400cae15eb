"""Definition-time checks: names, units, namespaces and dimensions CloudWatch accepts.

These run once, when a metric or a job is defined, never on the record path.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping

from metricskit import catalog, job_table, limits
from metricskit.batch import Dimensions
from metricskit.errors import ConfigurationError, InvalidDimensionError, InvalidMetricError

# https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_PutMetricData.html
# https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_Dimension.html: names
# and values are ASCII without control characters and hold at least one non-whitespace one.
_NAMESPACE_PATTERN = re.compile(r"^[A-Za-z0-9.\-_/#:]+$")
_PRINTABLE_ASCII = re.compile(r"^[\x20-\x7e]+$")
# https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/HowItWorks.NamingRulesDataTypes.html
_TABLE_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.\-]{3,255}$")
# https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_CreateLogGroup.html
# and API_CreateLogStream.html: where the CloudWatch agent is told to write EMF documents.
_LOG_GROUP_PATTERN = re.compile(r"^[A-Za-z0-9.\-_/#]{1,512}$")
_LOG_STREAM_PATTERN = re.compile(r"^[^:*]{1,512}$")
# The profiles the cost tracker prices (cost_tracker/pricing.py, parse_profile): the same
# rule, kept here so the library need not import the tracker; a test holds the two together.
COMPUTE_PROFILE_PATTERN = re.compile(
    r"^(?:batch-)?(?:"
    r"fargate(?:-spot)?:(?=[\d.]*[1-9])\d+(?:\.\d+)?vcpu:(?=[\d.]*[1-9])\d+(?:\.\d+)?gb"
    r"|ec2(?:-spot)?:[a-z][a-z0-9\-]*\.[a-z0-9]+(?:-[a-z0-9]+)*"
    r")$"
)

NAMESPACE_ALLOWED = (
    f"1 to {limits.MAX_NAMESPACE_LENGTH} letters, digits and . - _ / # :, "
    "not starting with : or AWS/"
)
DIMENSION_VALUE_ALLOWED = (
    f"1 to {limits.MAX_DIMENSION_VALUE_LENGTH} printable ASCII characters, "
    "at least one of them not a space"
)
EMF_METADATA_MEMBER = "_aws"
"""The member of every Embedded Metric Format document that holds its metadata (the spec's)."""
EMF_DISTRIBUTIONS_MEMBER = "MetricskitDistributions"
"""The member of metricskit's EMF documents with the exact statistics of distributions."""
EMF_RESERVED_NAMES = frozenset({EMF_METADATA_MEMBER, EMF_DISTRIBUTIONS_MEMBER})
"""Names no dimension or metric may have. Dimension values and metric values are top-level
members of an EMF document, next to these: a dimension ``_aws`` would replace the metadata
(no document valid), one named ``MetricskitDistributions`` the statistics (or vice versa).
Refused whatever the sink, so a job does not break when ``METRICSKIT_SINK`` changes."""
EMF_SERVICE_NAME_MEMBER = "ServiceName"
"""The member the EMF sink writes ``service_name`` (or a dimension of that name) into."""
EMF_RESERVED_METRIC_NAMES = EMF_RESERVED_NAMES | {EMF_SERVICE_NAME_MEMBER}
"""Names no metric may have. ``ServiceName`` too: the EMF sink keeps that member for the
service name (a dimension ``ServiceName`` is allowed and takes its place), so a metric named
so could never be written there. Refused at definition whatever the sink, rather than
dropped at every flush by one sink and published by the others."""
TABLE_NAME_ALLOWED = "3 to 255 letters, digits and _ - ."
LOG_GROUP_ALLOWED = "1 to 512 letters, digits and . - _ / #"
LOG_STREAM_ALLOWED = "1 to 512 characters other than : and *"
COMPUTE_PROFILE_FORMS = (
    "fargate[-spot]:<N>vcpu:<M>gb",
    "ec2[-spot]:<instance-type>",
    "batch-fargate[-spot]:<N>vcpu:<M>gb",
    "batch-ec2[-spot]:<instance-type>",
)


def check_namespace(namespace: object) -> str:
    """Return ``namespace`` when CloudWatch accepts it, else raise InvalidMetricError."""
    if not isinstance(namespace, str) or not namespace:
        raise InvalidMetricError(f"namespace must be a non-empty string, got {namespace!r}")
    if len(namespace) > limits.MAX_NAMESPACE_LENGTH:
        raise InvalidMetricError(
            f"namespace {namespace[:40]!r}... is {len(namespace)} characters; "
            f"at most {limits.MAX_NAMESPACE_LENGTH} are allowed"
        )
    if not _NAMESPACE_PATTERN.match(namespace):
        raise InvalidMetricError(
            f"namespace {namespace!r} may contain only letters, digits and . - _ / # :"
        )
    if namespace.startswith(":"):
        # The API's own pattern for Namespace is "[^:].*".
        raise InvalidMetricError(f"namespace {namespace!r} may not start with ':'")
    if namespace.startswith("AWS/"):
        raise InvalidMetricError(f"namespace {namespace!r} may not start with 'AWS/' (reserved)")
    return namespace


def check_table_name(table: object) -> str:
    """Return ``table`` when it is a DynamoDB table name, else raise ConfigurationError."""
    if not isinstance(table, str) or not _TABLE_NAME_PATTERN.match(table):
        raise ConfigurationError(
            f"job table must be a DynamoDB table name ({TABLE_NAME_ALLOWED}), got {table!r}"
        )
    return table


def check_log_group(name: object) -> str:
    """Return ``name`` when it is a CloudWatch Logs log group name, else raise
    ConfigurationError.

    >>> check_log_group("/metricskit/emf")
    '/metricskit/emf'
    """
    return _check_log_name(name, _LOG_GROUP_PATTERN, "group", LOG_GROUP_ALLOWED)


def check_log_stream(name: object) -> str:
    """Return ``name`` when it is a CloudWatch Logs log stream name, else raise
    ConfigurationError."""
    return _check_log_name(name, _LOG_STREAM_PATTERN, "stream", LOG_STREAM_ALLOWED)


def _check_log_name(name: object, pattern: re.Pattern[str], what: str, allowed: str) -> str:
    if not isinstance(name, str) or not pattern.match(name):
        raise ConfigurationError(
            f"EMF log {what} must be a CloudWatch Logs log {what} name ({allowed}), got {name!r}"
        )
    return name


def check_hourly_rate(rate: object) -> float:
    """Return ``rate`` when it is a finite number of USD per hour >= 0, else raise
    ConfigurationError.

    >>> check_hourly_rate(0.5)
    0.5
    """
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate < math.inf:
        raise ConfigurationError(
            f"hourly_rate must be a finite number of USD per hour >= 0, got {rate!r}"
        )
    return rate


def check_compute_profile(profile: object) -> str:
    """Return ``profile`` when the cost tracker can price its form, else raise
    ConfigurationError listing the forms (case and surrounding spaces do not matter).

    >>> check_compute_profile("fargate-spot:2vcpu:4gb")
    'fargate-spot:2vcpu:4gb'
    """
    if not isinstance(profile, str) or not COMPUTE_PROFILE_PATTERN.match(profile.strip().lower()):
        raise ConfigurationError(
            f"compute_profile must be one of {', '.join(COMPUTE_PROFILE_FORMS)} (e.g. "
            f"fargate:4vcpu:8gb or ec2-spot:g5.xlarge), got {profile!r}; for other capacity "
            "give hourly_rate="
        )
    return profile


def check_metric_name(name: object) -> str:
    """Return ``name`` when it is a valid metric name, else raise InvalidMetricError."""
    if not isinstance(name, str) or not name:
        raise InvalidMetricError(f"metric name must be a non-empty string, got {name!r}")
    if len(name) > limits.MAX_METRIC_NAME_LENGTH:
        raise InvalidMetricError(
            f"metric name {name[:40]!r}... is {len(name)} characters; "
            f"at most {limits.MAX_METRIC_NAME_LENGTH} are allowed"
        )
    if not _PRINTABLE_ASCII.match(name):
        raise InvalidMetricError(f"metric name {name!r} must be printable ASCII")
    if name in EMF_RESERVED_METRIC_NAMES:
        raise InvalidMetricError(
            f"metric name {name!r} is reserved (a member of EMF documents); reserved "
            "names: " + ", ".join(sorted(EMF_RESERVED_METRIC_NAMES))
        )
    return name


def check_unit(unit: object) -> str:
    """Return ``unit`` when it is one of CloudWatch's standard units, else raise."""
    if unit not in limits.STANDARD_UNITS:
        allowed = ", ".join(sorted(limits.STANDARD_UNITS))
        raise InvalidMetricError(f"unit {unit!r} is not a CloudWatch unit; allowed: {allowed}")
    assert isinstance(unit, str)
    return unit


def check_dimensions(
    dimensions: Mapping[str, str] | Iterable[tuple[str, str]] | None,
    *,
    reserved: Iterable[str] = (),
    extra_count: int = 0,
) -> Dimensions:
    """Validate user dimensions and return them as an ordered tuple of pairs.

    ``reserved`` names (JobId, Stage, RecordsProcessed, ...) are metricskit's own dimensions
    and metrics (EMF cannot write a metric named like a dimension) and may not be given, nor
    may the members of every EMF document (``EMF_RESERVED_NAMES``). ``extra_count`` is how
    many dimensions metricskit itself adds, so the total stays within CloudWatch's 30.

    >>> check_dimensions({"Env": "prod"}, reserved=["JobId"])
    (('Env', 'prod'),)
    """
    if dimensions is None:
        return ()
    allowed = "a mapping of names to values ({'Env': 'prod'}) or (name, value) pairs"
    if isinstance(dimensions, str | bytes) or not isinstance(dimensions, Mapping | Iterable):
        raise InvalidDimensionError(f"dimensions must be {allowed}, got {dimensions!r}")
    pairs = list(dimensions.items()) if isinstance(dimensions, Mapping) else list(dimensions)
    reserved_names = set(reserved) | EMF_RESERVED_NAMES
    seen: set[str] = set()
    for pair in pairs:
        if not (isinstance(pair, tuple) and len(pair) == 2):
            raise InvalidDimensionError(
                f"dimensions must be {allowed}; {pair!r} in {dimensions!r} is not a pair"
            )
        name, value = pair
        if not isinstance(name, str) or not name or len(name) > limits.MAX_DIMENSION_NAME_LENGTH:
            raise InvalidDimensionError(
                f"dimension name {name!r} must be a string of 1 to "
                f"{limits.MAX_DIMENSION_NAME_LENGTH} characters"
            )
        if not _PRINTABLE_ASCII.match(name) or name.startswith(":") or not name.strip():
            raise InvalidDimensionError(
                f"dimension name {name!r} must be printable ASCII with at least one character "
                "that is not a space, and may not start with ':'"
            )
        if name in reserved_names:
            raise InvalidDimensionError(
                f"dimension {name!r} is reserved (a dimension or metric of metricskit's own, "
                "or a member of every EMF document); reserved names: "
                + ", ".join(sorted(reserved_names))
            )
        if name in seen:
            raise InvalidDimensionError(f"dimension {name!r} is given twice")
        seen.add(name)
        check_dimension_value(name, value)
    total = len(pairs) + extra_count
    if total > limits.MAX_DIMENSIONS_PER_METRIC:
        raise InvalidDimensionError(
            f"{total} dimensions per series ({len(pairs)} given + {extra_count} added by "
            f"metricskit); CloudWatch allows at most {limits.MAX_DIMENSIONS_PER_METRIC}"
        )
    return tuple((str(n), str(v)) for n, v in pairs)


def check_dimension_value(name: str, value: object) -> str:
    """Return ``value`` when it is a valid value for dimension ``name``, else raise."""
    if not isinstance(value, str) or not value or len(value) > limits.MAX_DIMENSION_VALUE_LENGTH:
        raise InvalidDimensionError(
            f"dimension {name!r} value {value!r} must be a string of 1 to "
            f"{limits.MAX_DIMENSION_VALUE_LENGTH} characters"
        )
    if not _PRINTABLE_ASCII.match(value) or not value.strip():
        raise InvalidDimensionError(
            f"dimension {name!r} value {value!r} must be printable ASCII with at least one "
            "character that is not a space"
        )
    return value


JOB_ID_ALLOWED = (
    f"{DIMENSION_VALUE_ALLOWED}, not starting with "
    + ", ".join(repr(prefix) for prefix in job_table.RESERVED_KEY_PREFIXES)
    + " (the job table's other item kinds)"
)


def check_job_id(job_id: object) -> str:
    """Return ``job_id`` when it can be a JobId: a valid dimension value that is not the key
    of another item kind in the job table (:data:`~metricskit.job_table.RESERVED_KEY_PREFIXES`).

    >>> check_job_id("nightly-etl-2026-11-23")
    'nightly-etl-2026-11-23'
    """
    value = check_dimension_value(catalog.JOB_ID, job_id)
    prefix = job_table.reserved_prefix(value)
    if prefix is not None:
        raise InvalidDimensionError(
            f"job id {value!r} starts with {prefix!r}, the key prefix of another item kind in "
            f"the job table; a job id is {JOB_ID_ALLOWED}"
        )
    return value
