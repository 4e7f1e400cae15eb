"""Service limits that shape how metricskit batches and validates, each with its source.

The sinks split their output to fit these; validation rejects definitions that exceed them.
"""

from __future__ import annotations

from typing import Final

# https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/cloudwatch_limits.html
# https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_PutMetricData.html
PUT_METRIC_DATA_MAX_DATUMS: Final = 1000
"""MetricData items per PutMetricData request."""
PUT_METRIC_DATA_MAX_BYTES: Final = 1_000_000
"""Payload size of one PutMetricData request (1 MB)."""
PUT_METRIC_DATA_MAX_VALUES_PER_DATUM: Final = 150
"""Distinct values in one datum's Values/Counts arrays."""
MAX_DIMENSIONS_PER_METRIC: Final = 30
"""Dimensions on one metric (PutMetricData and EMF DimensionSet alike)."""

# https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_MetricDatum.html
# https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_Dimension.html
MAX_METRIC_NAME_LENGTH: Final = 255
MAX_NAMESPACE_LENGTH: Final = 255
MAX_DIMENSION_NAME_LENGTH: Final = 255
MAX_DIMENSION_VALUE_LENGTH: Final = 1024
# API_PutMetricData.html: "Values must be in the range of 8.515920e-109 to 1.174271e+108
# (Base 10) or 2e-360 to 2e360 (Base 2)"; later revisions say only "-2^360 to 2^360". The two
# disagree by a factor of 2 at each end: the decimal bounds are 2^-359 and 2^359 (to 7
# digits). One value outside what CloudWatch takes fails a whole request (up to 1000 datums),
# so metricskit keeps to the narrower, decimal range as written (just inside 2^+/-359).
MAX_ABS_VALUE: Final = 1.174271e108
"""The largest magnitude CloudWatch accepts (just below 2^359); beyond it a value is dropped."""
MIN_ABS_VALUE: Final = 8.515920e-109
"""The smallest non-zero magnitude CloudWatch accepts (just above 2^-359); metricskit sends a
value closer to zero as 0."""

# https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html
EMF_MAX_METRICS_PER_DIRECTIVE: Final = 100
EMF_MAX_VALUES_PER_METRIC: Final = 100
EMF_MAX_DIMENSIONS_PER_SET: Final = 30
# The specification: "subject to the same limits as standard CloudWatch Logs events and
# limited to a maximum size of 1MB" (raised from 256 KB in April 2025:
# https://aws.amazon.com/about-aws/whats-new/2025/04/amazon-cloudwatch-logs-increases-log-event-size-1-mb/).
# https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_PutLogEvents.html:
# "Each log event can be no larger than 1 MB"; a batch is 1,048,576 bytes counting each
# event's UTF-8 message plus 26 bytes, so one event's message fits in 1,048,550 bytes.
EMF_MAX_EVENT_BYTES: Final = 1_048_576 - 26
"""Largest EMF document (one CloudWatch Logs event) the service accepts, in bytes."""
EMF_PORTABLE_EVENT_BYTES: Final = 262_144 - 26
"""Largest document every shipper still passes whole: the ECS awslogs shim logger and older
CloudWatch agents cut events at 256 KiB minus 26 bytes
(https://github.com/aws/shim-loggers-for-containerd/issues/239), and a cut JSON document is
not EMF any more. The EMF sink's default document size."""

STANDARD_UNITS: Final = frozenset(
    {
        "Seconds", "Microseconds", "Milliseconds",
        "Bytes", "Kilobytes", "Megabytes", "Gigabytes", "Terabytes",
        "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits",
        "Percent", "Count",
        "Bytes/Second", "Kilobytes/Second", "Megabytes/Second", "Gigabytes/Second",
        "Terabytes/Second", "Bits/Second", "Kilobits/Second", "Megabits/Second",
        "Gigabits/Second", "Terabits/Second", "Count/Second",
        "None",
    }
)  # fmt: skip
"""CloudWatch's StandardUnit enumeration (API_MetricDatum.html)."""
