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
MAX_ABS_VALUE: Final = 2.0**360
"""CloudWatch rejects values outside [-2^360, 2^360] (and NaN/inf)."""
MIN_ABS_VALUE: Final = 2.0**-360
"""CloudWatch rejects non-zero values closer to zero than 2^-360; metricskit rounds them to 0."""

# https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html
EMF_MAX_METRICS_PER_DIRECTIVE: Final = 100
EMF_MAX_VALUES_PER_METRIC: Final = 100
EMF_MAX_DIMENSIONS_PER_SET: Final = 30
# https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/cloudwatch_limits_cwl.html
EMF_MAX_EVENT_BYTES: Final = 256_000
"""CloudWatch Logs event size limit (256 KB, including 26 bytes of overhead per event)."""

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
