"""Where metrics go: CloudWatch PutMetricData, Embedded Metric Format, memory, or nowhere."""

from metricskit.sinks.base import BaseSink, Exporter, ExportResult, NullSink, Sink
from metricskit.sinks.cloudwatch import CloudWatchSink
from metricskit.sinks.emf import EMFSink
from metricskit.sinks.memory import MemorySink

__all__ = [
    "BaseSink",
    "CloudWatchSink",
    "EMFSink",
    "ExportResult",
    "Exporter",
    "MemorySink",
    "NullSink",
    "Sink",
]
