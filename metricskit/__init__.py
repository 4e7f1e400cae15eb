"""metricskit: throughput, progress, latency, ETA and cost for long-running AWS batch jobs.

>>> import metricskit
>>> with metricskit.Job("csv-1", namespace="CSVToKafka", total=1_000) as job:  # doctest: +SKIP
...     job.processed()
"""

from metricskit._version import __version__
from metricskit.aggregation import Timer
from metricskit.batch import Metric, MetricBatch, MetricKind, SeriesKey
from metricskit.errors import (
    ConfigurationError,
    InvalidDimensionError,
    InvalidMetricError,
    JobClosedError,
    MetricsKitError,
    UnreadableInputError,
)
from metricskit.job import Job, Stage
from metricskit.lines import count_csv_records, count_lines
from metricskit.recorder import JobStatus

__all__ = [
    "ConfigurationError",
    "InvalidDimensionError",
    "InvalidMetricError",
    "Job",
    "JobClosedError",
    "JobStatus",
    "Metric",
    "MetricBatch",
    "MetricKind",
    "MetricsKitError",
    "SeriesKey",
    "Stage",
    "Timer",
    "UnreadableInputError",
    "__version__",
    "count_csv_records",
    "count_lines",
]
