"""The public names of metricskit are pinned: nothing leaks in or disappears by accident."""

import metricskit
import metricskit.sinks
import metricskit.testing


def test_top_level_names_are_pinned() -> None:
    assert metricskit.__all__ == [
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


def test_all_is_sorted_and_resolvable() -> None:
    for module in (metricskit, metricskit.sinks, metricskit.testing):
        assert module.__all__ == sorted(module.__all__)
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name} is listed but missing"


def test_testing_module_exports_memory_sink_and_capture() -> None:
    assert metricskit.testing.__all__ == ["MemorySink", "capture"]
