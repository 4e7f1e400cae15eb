"""The EMF sink: documents that follow the specification, split at its limits, losing no counts.

Every document any test here makes is checked by ``emf_spec.validate_output`` (the JSON Schema
in tests/schemas plus the reference checks a schema cannot express).
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import math
import random
from collections import Counter
from typing import Any

import numpy as np
import pytest

import metricskit
from metricskit import catalog, limits
from metricskit.batch import Metric, MetricBatch, MetricKind, SeriesKey, distribution, publishable
from metricskit.errors import ConfigurationError, InvalidMetricError
from metricskit.job import make_sink
from metricskit.sinks import EMFSink
from metricskit.sinks.base import ExportResult
from metricskit.sinks.cloudwatch import CloudWatchSink, pack_requests, to_datum
from metricskit.sinks.emf import expand_distribution, parse_agent_endpoint, serialize
from tests.emf_spec import SeriesId, definitions, metric_values, series, validate_output
from tests.helpers import CapturingCloudWatch

JOB = (("JobId", "job-1"),)
TS = 1_700_000_000.25


def counter(name: str, value: float, dims: tuple[tuple[str, str], ...] = JOB) -> Metric:
    return Metric(SeriesKey(name, "Count", dims), MetricKind.COUNTER, value=value)


def batch(
    *metrics: Metric, resolution: int = 60, extra: dict[str, str] | None = None
) -> MetricBatch:
    return MetricBatch(
        "Test/EMF", TS, tuple(metrics), storage_resolution=resolution, extra=extra or {}
    )


def export(batch_: MetricBatch, **options: int) -> tuple[list[dict[str, object]], EMFSink]:
    buf = io.StringIO()
    sink = EMFSink(stream=buf, **options)
    assert sink.export(batch_).success
    max_bytes = options.get("max_document_bytes", limits.EMF_PORTABLE_EVENT_BYTES)
    return validate_output(buf.getvalue(), max_bytes), sink


def summaries_of(docs: list[dict[str, Any]], name: str) -> list[dict[str, float]]:
    return [d["MetricskitDistributions"][name] for d in docs if "MetricskitDistributions" in d]


def totals(found: list[dict[str, float]]) -> tuple[float, float, float, float]:
    """SampleCount, Sum, Minimum, Maximum of a period from its documents' summaries."""
    return (
        sum(s["SampleCount"] for s in found),
        sum(s["Sum"] for s in found),
        min(s["Minimum"] for s in found),
        max(s["Maximum"] for s in found),
    )


def observed(metric: Metric) -> float:
    return sum(metric.counts)


def test_counters_and_gauges_are_single_numbers_with_timestamp_in_ms() -> None:
    gauge = Metric(SeriesKey("Loss", "None", JOB), MetricKind.GAUGE, value=0.125)
    docs, _ = export(batch(counter("RecordsProcessed", 42), gauge))
    assert len(docs) == 1
    doc = docs[0]
    assert doc["_aws"]["Timestamp"] == 1_700_000_000_250  # type: ignore[index]
    directive = doc["_aws"]["CloudWatchMetrics"][0]  # type: ignore[index]
    assert directive["Namespace"] == "Test/EMF"
    assert directive["Dimensions"] == [["JobId"]]
    assert directive["Metrics"] == [
        {"Name": "RecordsProcessed", "Unit": "Count"},
        {"Name": "Loss", "Unit": "None"},
    ]
    assert doc["JobId"] == "job-1"
    assert doc["RecordsProcessed"] == 42
    assert doc["Loss"] == 0.125


def test_more_than_100_metrics_split_into_directives_of_at_most_100_each_once() -> None:
    metrics = [counter(f"M{i:03d}", i) for i in range(250)]
    docs, _ = export(batch(*metrics))
    assert len(docs) == 3
    assert [len(d["_aws"]["CloudWatchMetrics"][0]["Metrics"]) for d in docs] == [100, 100, 50]  # type: ignore[index]
    for i in range(250):
        assert metric_values(docs, f"M{i:03d}") == [i]


def test_distribution_with_more_than_100_values_spans_documents_of_100() -> None:
    key = SeriesKey("Latency", "Milliseconds", JOB)
    counts = {float(v): float(1 + v % 3) for v in range(1, 181)}  # 180 values, 360 samples
    docs, _ = export(batch(counter("RecordsProcessed", 7), distribution(key, counts)))
    arrays = [d["Latency"] for d in docs]
    assert all(isinstance(a, list) and len(a) <= 100 for a in arrays)
    assert len(docs) == 4  # 360 observations in arrays of 100
    assert Counter(metric_values(docs, "Latency")) == Counter(
        {v: int(c) for v, c in counts.items()}
    )
    assert metric_values(docs, "RecordsProcessed") == [7]  # a counter is written once


def test_thirty_dimensions_are_one_dimension_set_of_root_members() -> None:
    dims = tuple((f"D{i:02d}", f"value-{i}") for i in range(limits.EMF_MAX_DIMENSIONS_PER_SET))
    docs, _ = export(batch(counter("RecordsProcessed", 1, dims)))
    assert docs[0]["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [[n for n, _ in dims]]  # type: ignore[index]
    assert all(docs[0][name] == value for name, value in dims)


def test_a_series_over_thirty_dimensions_is_dropped_not_truncated() -> None:
    dims = tuple((f"D{i:02d}", "v") for i in range(limits.EMF_MAX_DIMENSIONS_PER_SET + 1))
    docs, sink = export(batch(counter("Wide", 1, dims), counter("RecordsProcessed", 2)))
    assert metric_values(docs, "Wide") == []
    assert metric_values(docs, "RecordsProcessed") == [2]
    assert sink.rejected_metrics == 1


LONG_DIMS = tuple((f"D{i:02d}", f"{i}-" + "x" * 1000) for i in range(28))
"""Accepted by validation (and by PutMetricData), too large for an 8192-byte document."""


def test_a_series_too_large_for_a_document_is_reported_rejected_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    key = SeriesKey("Latency", "Milliseconds", LONG_DIMS)
    original = batch(
        counter("RecordsProcessed", 2, LONG_DIMS),
        distribution(key, {float(v): 1.0 for v in range(300)}),  # 3 pieces: counted once
        counter("Kept", 1),
    )
    buf = io.StringIO()
    sink = EMFSink(stream=buf, max_document_bytes=8192)
    for _ in range(2):
        result = sink.export(original)
        assert result.success
        assert result.rejected == 2  # both long series, every export
    assert sink.rejected_metrics == 4
    docs = validate_output(buf.getvalue(), 8192)
    assert metric_values(docs, "Kept") == [1, 1]
    assert metric_values(docs, "Latency") == []
    errors = [r.getMessage() for r in caplog.records if "EMF cannot write" in r.getMessage()]
    assert len(errors) == 2  # once per series, not once per export or per piece
    assert "exceed 8192 bytes" in errors[0]


def test_series_the_emf_sink_cannot_write_are_counted_in_the_jobs_dropped_values() -> None:
    """The rejection reaches a self-metric (from the next flush), not just a sink attribute."""
    buf = io.StringIO()
    sink = EMFSink(stream=buf, max_document_bytes=8192)
    job = metricskit.Job("long", namespace="Test/EMF", sink=sink, dimensions=dict(LONG_DIMS))
    try:
        job.processed(5)
        job.flush()
        first = sink.rejected_metrics
        assert first > 0
        assert metric_values(validate_output(buf.getvalue(), 8192), "RecordsProcessed") == []
        job.flush()
    finally:
        job.close()
    docs = validate_output(buf.getvalue(), 8192)
    dropped = metric_values(docs, catalog.DROPPED_VALUES, JobId="long")
    assert dropped[0] == first
    assert sum(dropped) <= sink.rejected_metrics  # the final flush's count has no later flush


def test_documents_stay_within_the_event_size_and_lose_nothing() -> None:
    dims = tuple((f"D{i:02d}", f"{i}-" + "x" * 250) for i in range(30))
    rng = random.Random(7)
    metrics = [
        distribution(
            SeriesKey(f"Dist{i:02d}", "Milliseconds", dims),
            {rng.uniform(0.001, 1e6): 1.0 for _ in range(150)},
        )
        for i in range(40)
    ] + [counter(f"C{i}", i, dims) for i in range(60)]
    docs, _ = export(batch(*metrics), max_document_bytes=20_000)
    assert len(docs) > 4  # the size, not the count limits, made the split
    for metric in metrics:
        if metric.kind is MetricKind.DISTRIBUTION:
            assert sorted(metric_values(docs, metric.name)) == sorted(metric.values)
        else:
            assert metric_values(docs, metric.name) == [metric.value]


def test_default_document_size_is_the_portable_event_size() -> None:
    dims = tuple((f"D{i:02d}", "y" * 1000) for i in range(30))
    rng = random.Random(3)
    metrics = [
        distribution(
            SeriesKey(f"Dist{i:03d}", "Milliseconds", dims),
            {-rng.uniform(1e-6, 1e-5): 1.0 for _ in range(100)},  # ~22 characters each
        )
        for i in range(100)
    ]
    docs, _ = export(batch(*metrics))  # validated against EMF_PORTABLE_EVENT_BYTES
    assert len(docs) > 1
    for metric in metrics:
        assert sorted(metric_values(docs, metric.name)) == sorted(metric.values)
    assert limits.EMF_PORTABLE_EVENT_BYTES < limits.EMF_MAX_EVENT_BYTES == 1_048_550


def test_each_dimension_set_gets_its_own_documents() -> None:
    stage = (*JOB, ("Stage", "denoise"))
    docs, _ = export(batch(counter("RecordsProcessed", 5), counter("RecordsProcessed", 3, stage)))
    assert len(docs) == 2
    assert sorted(d["_aws"]["CloudWatchMetrics"][0]["Dimensions"] for d in docs) == [  # type: ignore[index]
        [["JobId"]],
        [["JobId", "Stage"]],
    ]
    assert metric_values(docs, "RecordsProcessed", Stage="denoise") == [3]
    assert sum(metric_values(docs, "RecordsProcessed", JobId="job-1")) == 8


def test_log_normal_percentiles_survive_within_one_percent() -> None:
    rng = np.random.default_rng(2024)
    raw = rng.lognormal(mean=3.0, sigma=1.0, size=100_000)
    buf = io.StringIO()
    with metricskit.Job("pct", namespace="Test/EMF", sink=EMFSink(stream=buf)) as job:
        for value in raw:
            job.observe("KafkaLatency", float(value))
    docs = validate_output(buf.getvalue(), limits.EMF_PORTABLE_EVENT_BYTES)
    emitted = np.array(metric_values(docs, "KafkaLatency"))
    assert len(emitted) == 1000  # down-sampled to max_distribution_samples
    for p in (50, 90, 99):
        exact = np.percentile(raw, p)
        assert abs(np.percentile(emitted, p) - exact) / exact < 0.01, p
    summaries = summaries_of(docs, "KafkaLatency")
    assert len(summaries) == 10  # one per document: the exact statistics of its share
    count, total, low, high = totals(summaries)
    assert count == 100_000
    assert low == pytest.approx(raw.min(), rel=0.01)
    assert high == pytest.approx(raw.max(), rel=0.01)
    assert total == pytest.approx(raw.sum(), rel=0.01)


def test_small_distribution_is_written_observation_for_observation() -> None:
    rng = np.random.default_rng(5)
    raw = rng.lognormal(mean=1.0, sigma=0.5, size=700)
    buf = io.StringIO()
    with metricskit.Job("small", namespace="Test/EMF", sink=EMFSink(stream=buf)) as job:
        for value in raw:
            job.observe("KafkaLatency", float(value))
    docs = validate_output(buf.getvalue())
    emitted = metric_values(docs, "KafkaLatency")
    assert len(emitted) == 700  # SampleCount exact
    assert sum(emitted) == pytest.approx(raw.sum(), rel=0.005)
    assert not any("MetricskitDistributions" in d for d in docs)


def test_expand_distribution_takes_rank_quantiles_and_fixes_the_mean_with_the_last() -> None:
    pairs = [(1.0, 500.0), (2.0, 400.0), (3.0, 99.0), (100.0, 1.0)]
    samples, summary = expand_distribution(pairs, 100)
    assert len(samples) == 100
    # Sample k < 100 is the nearest-rank quantile k/100: the 10k-th smallest observation.
    assert samples[:99] == [1.0] * 50 + [2.0] * 40 + [3.0] * 9
    # The last share (the top 10 observations: nine 3.0 and the 100.0) is written as the value
    # that makes the samples' mean the exact one, not as the maximum (which would weigh 10x).
    assert sum(samples) / 100 == pytest.approx((500 + 800 + 297 + 100) / 1000)
    assert samples[-1] == pytest.approx(12.7)
    assert summary == {
        "SampleCount": 1000,
        "Sum": 1.0 * 500 + 800 + 297 + 100,
        "Minimum": 1,
        "Maximum": 100,
    }
    exact, none = expand_distribution([(2.5, 3.0), (1.5, 2.0)], 100)
    assert exact == [1.5, 1.5, 2.5, 2.5, 2.5]
    assert none is None


def _nearest_rank(values: list[float], p: str) -> float:
    """The nearest-rank percentile (the ceil(p/100 x n)-th smallest), in exact arithmetic:
    with floats, 99.9/100 x 1000 is a hair above 999 and picks the 1000th."""
    from fractions import Fraction

    ordered = sorted(values)
    return ordered[math.ceil(Fraction(p) / 100 * len(ordered)) - 1]


_SAMPLED_DISTRIBUTIONS = {
    "lognormal(2,1)": lambda rng: rng.lognormal(2.0, 1.0, 100_000),
    "exponential": lambda rng: rng.exponential(10.0, 100_000),
    "pareto(1.5)": lambda rng: rng.pareto(1.5, 100_000) + 1.0,
    "bimodal": lambda rng: np.concatenate(
        [rng.normal(10.0, 1.0, 90_000).clip(0.1), rng.normal(500.0, 20.0, 10_000)]
    ),
}


@pytest.mark.parametrize("name", sorted(_SAMPLED_DISTRIBUTIONS))
def test_sampled_distributions_keep_percentiles_within_1pct_and_average_within_half(
    name: str,
) -> None:
    """The bounds docs/OPERATIONS.md states for > 1000 observations, measured as CloudWatch
    would compute them from the written values (nearest rank). Before the samples were rank
    quantiles with the mean fixed by the last, the maximum weighed 1/1000: Average +3.7%
    (log-normal), +26% (Pareto); and bimodal p90 was off by -5.2%."""
    from metricskit.aggregation import DistributionCell

    raw = _SAMPLED_DISTRIBUTIONS[name](np.random.default_rng(1))
    cell = DistributionCell("Latency", lambda _name, _value: None)
    for value in raw.tolist():
        cell.record(value)
    key = SeriesKey("Latency", "Milliseconds", JOB)
    docs, _ = export(batch(distribution(key, cell.take())))
    written = [float(v) for v in metric_values(docs, "Latency")]
    assert len(written) == 1000
    exact = raw.tolist()
    for p in ("50", "90", "99", "99.9"):
        error = _nearest_rank(written, p) / _nearest_rank(exact, p) - 1
        assert abs(error) < 0.01, (p, error)
    assert abs(sum(written) / len(written) / raw.mean() - 1) < 0.005


def test_high_resolution_sets_storage_resolution_1_and_standard_omits_it() -> None:
    high, _ = export(batch(counter("RecordsProcessed", 1), resolution=1))
    standard, _ = export(batch(counter("RecordsProcessed", 1), resolution=60))
    assert definitions(high) == [
        {"Name": "RecordsProcessed", "Unit": "Count", "StorageResolution": 1}
    ]
    assert definitions(standard) == [{"Name": "RecordsProcessed", "Unit": "Count"}]


def test_nan_and_infinity_are_never_written() -> None:
    key = SeriesKey("Latency", "Milliseconds", JOB)
    bad = Metric(
        key, MetricKind.DISTRIBUTION, values=(1.0, math.nan, math.inf), counts=(2.0, 1.0, 1.0)
    )
    gauge = Metric(SeriesKey("Loss", "None", JOB), MetricKind.GAUGE, value=math.nan)
    docs, sink = export(
        batch(counter("RecordsProcessed", 3), counter("ErrorCount", math.inf), bad, gauge)
    )
    assert metric_values(docs, "Latency") == [1.0, 1.0]
    assert metric_values(docs, "Loss") == []
    assert metric_values(docs, "ErrorCount") == []
    assert sink.dropped_values == 4


def test_metric_named_like_a_dimension_is_rejected_not_written() -> None:
    docs, sink = export(batch(counter("JobId", 1), counter("RecordsProcessed", 2)))
    assert metric_values(docs, "RecordsProcessed") == [2]
    assert docs[0]["JobId"] == "job-1"
    assert sink.rejected_metrics == 1


@pytest.mark.parametrize("name", ["_aws", "MetricskitDistributions"])
def test_a_hand_built_series_with_a_dimension_named_like_an_emf_member_is_rejected(
    name: str,
) -> None:
    """Job refuses such names; a batch built by hand is still never written invalid."""
    dims = (*JOB, (name, "x"))
    dist = distribution(SeriesKey("Latency", "Milliseconds", dims), {1.0: 3000.0})  # sampled
    docs, sink = export(batch(counter("RecordsProcessed", 2, dims), dist, counter("Kept", 1)))
    assert [d["_aws"]["CloudWatchMetrics"][0]["Dimensions"] for d in docs] == [[["JobId"]]]  # type: ignore[index]
    assert metric_values(docs, "Kept") == [1]
    assert sink.rejected_metrics == 2


def test_a_dimension_named_service_name_takes_the_place_of_the_service_name_field() -> None:
    dims = (*JOB, ("ServiceName", "api"))
    docs, _ = export_with(batch(counter("RecordsProcessed", 2, dims)), service_name="loader")
    assert docs[0]["ServiceName"] == "api"
    assert docs[0]["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["JobId", "ServiceName"]]  # type: ignore[index]


def export_with(batch_: MetricBatch, **options: Any) -> tuple[list[dict[str, Any]], EMFSink]:
    buf = io.StringIO()
    sink = EMFSink(stream=buf, **options)
    assert sink.export(batch_).success
    return validate_output(buf.getvalue()), sink


def test_extra_properties_and_service_name_are_root_members() -> None:
    buf = io.StringIO()
    sink = EMFSink(stream=buf, service_name="loader")
    sink.export(batch(counter("RecordsProcessed", 1), extra={"Status": "running", "JobId": "no"}))
    (doc,) = validate_output(buf.getvalue())
    assert doc["Status"] == "running"
    assert doc["ServiceName"] == "loader"
    assert doc["JobId"] == "job-1"  # a dimension wins over an extra of the same name
    assert "LogGroupName" not in doc["_aws"]  # routing members only go to an agent


class FailingStream(io.StringIO):
    """Accepts ``good`` writes, then fails like a closed pipe."""

    def __init__(self, good: int) -> None:
        super().__init__()
        self.good = good

    def write(self, text: str) -> int:
        if self.good <= 0:
            raise BrokenPipeError("reader went away")
        self.good -= 1
        return super().write(text)


def test_a_failed_write_returns_only_the_documents_not_yet_written() -> None:
    key = SeriesKey("Latency", "Milliseconds", JOB)
    dist = distribution(key, {float(v): 2.0 for v in range(1, 151)})  # 300 obs -> 3 documents
    counters = [counter(f"M{i:03d}", i + 1) for i in range(150)]
    original = batch(*counters, dist)
    stream = FailingStream(good=1)
    result = EMFSink(stream=stream).export(original)
    assert not result.success
    assert result.retryable
    assert result.remainder is not None
    first = validate_output(stream.getvalue())
    rest_buf = io.StringIO()
    assert EMFSink(stream=rest_buf).export(result.remainder).success
    rest = validate_output(rest_buf.getvalue())
    both = first + rest
    for i in range(150):
        assert metric_values(both, f"M{i:03d}") == [i + 1]
    assert Counter(metric_values(both, "Latency")) == Counter({float(v): 2 for v in range(1, 151)})


def test_make_sink_emf_builds_an_emf_sink_on_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    sink = make_sink("emf")
    assert isinstance(sink, EMFSink)
    assert sink.endpoint is None
    sink.export(batch(counter("RecordsProcessed", 9)))
    docs = validate_output(capsys.readouterr().out)
    assert metric_values(docs, "RecordsProcessed") == [9]


def test_agent_endpoint_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METRICSKIT_EMF_AGENT_ENDPOINT", "udp://127.0.0.1:25888")
    monkeypatch.setenv("METRICSKIT_EMF_LOG_GROUP", "/metricskit/jobs")
    sink = EMFSink()
    assert sink.endpoint == ("udp", "127.0.0.1", 25888)
    assert sink.log_group == "/metricskit/jobs"
    assert sink.max_document_bytes == 65_507  # one datagram


@pytest.mark.parametrize(
    ("variable", "raw", "allowed"),
    [
        ("METRICSKIT_EMF_LOG_GROUP", "my jobs", "letters, digits and . - _ / #"),
        ("METRICSKIT_EMF_LOG_GROUP", "g" * 513, "1 to 512"),
        ("METRICSKIT_EMF_LOG_STREAM", "worker:1", "other than : and *"),
    ],
)
def test_a_log_group_or_stream_the_agent_would_refuse_warns_and_is_left_out(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    variable: str,
    raw: str,
    allowed: str,
) -> None:
    """The agent cannot create such a group or stream, so every document would be lost: the
    agent's default is better than that."""
    monkeypatch.setenv("METRICSKIT_EMF_AGENT_ENDPOINT", "udp://127.0.0.1:25888")
    monkeypatch.setenv(variable, raw)
    with caplog.at_level(logging.WARNING, logger="metricskit"):
        sink = EMFSink()
    assert (sink.log_group, sink.log_stream) == (None, None)
    assert allowed in caplog.text
    assert "the agent's default" in caplog.text


@pytest.mark.parametrize(
    "kwargs",
    [{"log_group": "my jobs"}, {"log_group": ""}, {"log_stream": "a*b"}, {"log_stream": ""}],
)
def test_a_bad_log_group_or_stream_argument_raises(kwargs: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError, match=r"EMF log (group|stream) must be"):
        EMFSink(agent_endpoint="udp://127.0.0.1:25888", **kwargs)


def test_unparsable_endpoint_variable_warns_and_falls_back_to_stdout(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("METRICSKIT_EMF_AGENT_ENDPOINT", "http://agent")
    with caplog.at_level(logging.WARNING, logger="metricskit"):
        sink = EMFSink()
    assert sink.endpoint is None
    assert "tcp://host:port" in caplog.text


@pytest.mark.parametrize(
    "endpoint", ["agent:25888", "tcp://agent", "ftp://agent:21", "tcp://:25888", "tcp://a:99999"]
)
def test_bad_agent_endpoint_argument_raises_and_says_what_is_allowed(endpoint: str) -> None:
    with pytest.raises(ConfigurationError, match=r"tcp://host:port or udp://host:port"):
        EMFSink(agent_endpoint=endpoint)


_ENDPOINTS_WITH_EXTRAS = [
    "tcp://host:0",
    "tcp://host:25888/path?x=1",
    "tcp://host:25888/",
    "udp://host:25888?x=1",
    "tcp://host:25888#frag",
    "tcp://u:p@host:1",
    "tcp://user@host:25888",
]


@pytest.mark.parametrize("endpoint", _ENDPOINTS_WITH_EXTRAS)
def test_an_endpoint_with_port_0_a_user_path_or_query_is_refused(endpoint: str) -> None:
    with pytest.raises(ConfigurationError, match=r"port from 1 to 65535 and nothing else"):
        parse_agent_endpoint(endpoint)


@pytest.mark.parametrize("endpoint", _ENDPOINTS_WITH_EXTRAS)
def test_such_an_endpoint_variable_warns_and_falls_back_to_stdout(
    endpoint: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("METRICSKIT_EMF_AGENT_ENDPOINT", endpoint)
    with caplog.at_level(logging.WARNING, logger="metricskit"):
        sink = EMFSink()
    assert sink.endpoint is None
    assert f"ignoring METRICSKIT_EMF_AGENT_ENDPOINT={endpoint!r}" in caplog.text


@pytest.mark.parametrize(
    ("endpoint", "parsed"),
    [
        ("tcp://[::1]:25888", ("tcp", "::1", 25888)),
        ("TCP://h:1", ("tcp", "h", 1)),
        ("udp://agent:65535", ("udp", "agent", 65535)),
    ],
)
def test_plain_endpoints_still_parse(endpoint: str, parsed: tuple[str, str, int]) -> None:
    assert parse_agent_endpoint(endpoint) == parsed


@pytest.mark.parametrize("name", ["ServiceName", "_aws", "MetricskitDistributions"])
def test_a_metric_named_like_an_emf_member_is_refused_at_definition_for_every_sink(
    name: str,
) -> None:
    """Accepted, ``ServiceName`` was dropped by the EMF sink at every flush (its member holds
    the service name) and published by the others: refused for all, switching sinks loses
    nothing."""
    job = metricskit.Job("reserved", sink="memory", flush_interval=3600, handle_sigterm=False)
    try:
        for record in (job.gauge, job.observe):
            with pytest.raises(InvalidMetricError, match="ServiceName") as raised:
                record(name, 1.0)
            assert repr(name) in str(raised.value)
    finally:
        job.close()


def test_a_dimension_named_service_name_is_still_allowed() -> None:
    buf = io.StringIO()
    with metricskit.Job(
        "svc", sink=EMFSink(stream=buf), dimensions={"ServiceName": "api"}, handle_sigterm=False
    ) as job:
        job.processed()
    docs = validate_output(buf.getvalue())
    assert {d["ServiceName"] for d in docs} == {"api"}


def test_bad_constructor_arguments_raise_typed_errors() -> None:
    with pytest.raises(ConfigurationError, match="not both"):
        EMFSink(stream=io.StringIO(), agent_endpoint="tcp://127.0.0.1:1")
    with pytest.raises(ConfigurationError, match="1048550"):
        EMFSink(max_document_bytes=2_000_000)
    with pytest.raises(ConfigurationError, match="max_distribution_samples"):
        EMFSink(max_distribution_samples=0)
    assert parse_agent_endpoint(" tcp://10.0.0.1:25888 ") == ("tcp", "10.0.0.1", 25888)


def test_job_writes_emf_end_to_end_to_a_captured_stream() -> None:
    buf = io.StringIO()
    with metricskit.Job(
        "e2e", namespace="Test/EMF", total=2000, sink=EMFSink(stream=buf), high_resolution=True
    ) as job:
        for _ in range(1500):
            job.processed()
        job.failed(2)
        denoise = job.stage("denoise", total=10)
        denoise.processed(4)
        job.flush()
        job.processed(500)
        job.observe("KafkaLatency", 12.5)
    docs = validate_output(buf.getvalue())
    assert sum(metric_values(docs, "RecordsProcessed", JobId="e2e")) == 2004
    assert sum(metric_values(docs, "RecordsProcessed", Stage="denoise")) == 4
    assert sum(metric_values(docs, "ErrorCount")) == 2
    assert metric_values(docs, "KafkaLatency") == [pytest.approx(12.5, rel=0.005)]
    assert max(metric_values(docs, "ProgressPercentage", JobId="e2e")) == 100
    assert all(m.get("StorageResolution") == 1 for m in definitions(docs))
    assert all(json.loads(line) for line in buf.getvalue().splitlines())


def test_a_serializer_failure_is_reported_not_raised_and_not_retried(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr("metricskit.sinks.emf.serialize", broken)
    buf = io.StringIO()
    result = EMFSink(stream=buf).export(batch(counter("RecordsProcessed", 1)))
    assert not result.success
    assert not result.retryable
    assert buf.getvalue() == ""


@pytest.mark.parametrize("written", [0, 1, 4])
def test_a_failed_write_of_a_sampled_distribution_owes_its_exact_counts(
    written: int, caplog: pytest.LogCaptureFixture
) -> None:
    """Each down-sampled piece stands for its share of the counts: the written documents'
    shares plus what a failed write owes are exactly the original distribution."""
    key = SeriesKey("Latency", "Milliseconds", JOB)
    dist = distribution(key, {float(v): 25.0 for v in range(1, 2001)})  # 50,000 observations
    stream = FailingStream(good=written)
    # Small documents: the 1000 samples take several, so the failure falls between them.
    result = EMFSink(stream=stream, max_document_bytes=8192).export(batch(dist))
    assert not result.success
    assert result.remainder is not None
    (owed,) = [m for m in result.remainder if m.name == "Latency"]
    sent = summaries_of(validate_output(stream.getvalue(), 8192), "Latency")
    assert len(sent) == written
    assert f"after {written} of 10 document(s); the unwritten part of 1 series" in caplog.text
    if written == 0:  # nothing went out: the whole distribution is owed, exactly
        assert (owed.values, owed.counts) == (dist.values, dist.counts)
    else:  # the written pieces' exact counts plus what is owed add up to the original
        assert sum(s["SampleCount"] for s in sent) + observed(owed) == 50_000
        assert 0 < observed(owed) < 50_000
        assert set(owed.values) == set(dist.values)  # every share spans the distribution
    retry = io.StringIO()
    assert EMFSink(stream=retry).export(result.remainder).success
    both = validate_output(stream.getvalue(), 8192) + validate_output(retry.getvalue())
    assert totals(summaries_of(both, "Latency")) == (50_000, 25 * 2000 * 2001 // 2, 1, 2000)


def test_fractional_counts_are_shared_in_proportion_and_add_up() -> None:
    dist = distribution(SeriesKey("Latency", "Milliseconds", JOB), {1.0: 0.75, 2.0: 0.5})
    stream = FailingStream(good=1)
    result = EMFSink(stream=stream, max_distribution_samples=300).export(batch(dist))
    assert result.remainder is not None
    (sent,) = summaries_of(validate_output(stream.getvalue()), "Latency")
    (owed,) = result.remainder.metrics
    assert sent["SampleCount"] == pytest.approx(1.25 / 3)  # 100 of the 300 samples
    assert dict(zip(owed.values, owed.counts, strict=True)) == pytest.approx({1.0: 0.5, 2.0: 1 / 3})


@pytest.mark.parametrize("written", [1, 3])
def test_documents_written_before_a_failure_hold_a_stratified_part_of_a_distribution(
    written: int,
) -> None:
    """Pieces take every n-th sample, so the documents that went out have the distribution's
    shape (p50, p90, p99 close, the lowest sample kept), not its lowest values."""
    rng = np.random.default_rng(1)
    raw = np.round(rng.lognormal(3, 1, 50_000), 1)
    values, counts = np.unique(raw, return_counts=True)
    key = SeriesKey("Latency", "Milliseconds", JOB)
    dist = distribution(key, dict(zip(values.tolist(), counts.astype(float).tolist(), strict=True)))
    stream = FailingStream(good=written)
    assert not EMFSink(stream=stream).export(batch(dist)).success
    sent = np.array(metric_values(validate_output(stream.getvalue()), "Latency"))
    assert len(sent) == 100 * written
    # The first document holds the lowest sample: quantile 1/1000 (the 50th observation).
    assert sent.min() == _nearest_rank(raw.tolist(), "0.1")
    # 100 samples a document: p99 rests on the top two of them, hence its wider bound.
    for p, bound in ((50, 0.05), (90, 0.05), (99, 0.25)):
        exact = np.percentile(raw, p)
        assert abs(np.percentile(sent, p) - exact) / exact < bound, p


@pytest.mark.parametrize("written", [1, 4])
def test_a_partial_write_of_a_small_distribution_is_a_stratified_part_and_owes_the_rest(
    written: int,
) -> None:
    """Up to 1000 observations: the written documents are every n-th observation by rank;
    they and the owed remainder are exactly the period's observations."""
    rng = np.random.default_rng(2)
    raw = np.round(rng.lognormal(3, 1, 900), 0) + 1
    values, counts = np.unique(raw, return_counts=True)
    original = dict(zip(values.tolist(), counts.astype(float).tolist(), strict=True))
    dist = distribution(SeriesKey("Latency", "Milliseconds", JOB), original)
    stream = FailingStream(good=written)
    result = EMFSink(stream=stream).export(batch(dist))
    assert result.remainder is not None
    sent = metric_values(validate_output(stream.getvalue()), "Latency")
    assert len(sent) == 100 * written
    ranked = sorted(raw.tolist())  # 9 documents: document j holds the ranks r with r % 9 == j
    assert sorted(sent) == sorted(v for r, v in enumerate(ranked) if r % 9 < written)
    assert abs(np.percentile(sent, 50) - np.percentile(raw, 50)) <= 2
    assert max(sent) > np.percentile(raw, 95)  # not the lowest values
    (owed,) = result.remainder.metrics
    combined = Counter(sent)
    combined.update(dict(zip(owed.values, owed.counts, strict=True)))
    assert combined == Counter(original)


# -- a series and its twin one dimension less: one write, two dimension sets -----------------

WORKER = (*JOB, ("WorkerId", "w-1"))


def twins(*metrics: Metric, drop: str = "WorkerId") -> tuple[Metric, ...]:
    """Each metric, then each again without dimension ``drop`` (as Job._job_wide_copies)."""
    copies = []
    for metric in metrics:
        dims = tuple(d for d in metric.key.dimensions if d[0] != drop)
        copies.append(
            dataclasses.replace(metric, key=dataclasses.replace(metric.key, dimensions=dims))
        )
    return (*metrics, *copies)


def unmerged(batch_: MetricBatch) -> list[str]:
    """The documents as written before twins were merged: every dimension set on its own."""
    groups: dict[tuple[tuple[str, str], ...], list[Metric]] = {}
    for metric in batch_:
        groups.setdefault(metric.key.dimensions, []).append(metric)
    return [
        doc.text
        for metrics in groups.values()
        for doc in serialize(batch_.with_metrics(tuple(metrics)))[0]
    ]


def cloudwatch_series(batch_: MetricBatch) -> dict[SeriesId, Counter[float]]:
    """What the CloudWatch sink sends for ``batch_``, as series -> observations."""
    found: dict[SeriesId, Counter[float]] = {}
    for request in pack_requests(batch_):
        for metric in request:
            clean, _ = publishable(metric)
            if clean is None:
                continue
            datum: dict[str, Any] = dict(to_datum(clean, batch_.timestamp, 60))
            dims = tuple((d["Name"], d["Value"]) for d in datum["Dimensions"])
            key = (batch_.namespace, datum["MetricName"], datum["Unit"], dims)
            observations = found.setdefault(key, Counter())
            if "Value" in datum:
                observations[datum["Value"]] += 1
            else:
                for value, count in zip(datum["Values"], datum["Counts"], strict=True):
                    observations[value] += int(count)
    return found


def as_counters(found: dict[SeriesId, list[float]]) -> dict[SeriesId, Counter[float]]:
    return {key: Counter(values) for key, values in found.items()}


def dimension_sets(docs: list[dict[str, Any]]) -> list[list[list[str]]]:
    return [directive["Dimensions"] for d in docs for directive in d["_aws"]["CloudWatchMetrics"]]


class RecordingEMFSink(EMFSink):
    """An EMF sink that also keeps the batches it was given."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.batches: list[MetricBatch] = []

    def export(self, batch: MetricBatch) -> ExportResult:
        self.batches.append(batch)
        return super().export(batch)


def test_a_worker_job_writes_each_series_once_and_publishes_what_two_documents_did() -> None:
    """Per-worker series and their job-wide twins share documents with two dimension sets;
    expanded as CloudWatch does, they are exactly the series the CloudWatch sink sends."""
    buf = io.StringIO()
    sink = RecordingEMFSink(stream=buf)
    with metricskit.Job(
        "jw", namespace="Test/EMF", total=1000, sink=sink, worker_id="w-1", flush_interval=3600
    ) as job:
        job.processed(300)
        job.failed(2)
        for value in range(40):
            job.observe("KafkaLatency", 1.0 + value)
        job.gauge("Loss", 0.25)
        read = job.stage("read", total=500)
        read.processed(120)
        job.flush()
        job.processed(5)
    docs = validate_output(buf.getvalue())
    assert len(sink.batches) == 2
    expected: dict[SeriesId, Counter[float]] = {}
    for recorded in sink.batches:
        for key, observations in cloudwatch_series(recorded).items():
            expected.setdefault(key, Counter()).update(observations)
    assert as_counters(series(docs)) == expected
    # Nothing is written twice: the job-wide series appear only as second dimension sets,
    # and the documents of the job-wide set alone hold only the self-metrics.
    merged = [
        [["JobId", "WorkerId"], ["JobId"]],
        [["JobId", "Stage", "WorkerId"], ["JobId", "Stage"]],
    ]
    found = dimension_sets(docs)
    assert all(sets in found for sets in merged)
    assert all(sets in [*merged, [["JobId"]]] for sets in found)
    for doc in docs:
        for directive in doc["_aws"]["CloudWatchMetrics"]:
            if directive["Dimensions"] == [["JobId"]]:
                assert {m["Name"] for m in directive["Metrics"]} <= {
                    "DroppedValues", "FailedExports", "QueuedPeriods"
                }  # fmt: skip
    assert (
        sum(metric_values(docs, "RecordsProcessed", Stage="read")) == 120
    )  # one member, two series


def test_merged_documents_are_half_the_bytes_and_expand_to_the_unmerged_series() -> None:
    key = SeriesKey("Latency", "Milliseconds", WORKER)
    worker = [counter(f"Count{i:02d}", i, WORKER) for i in range(15)] + [
        Metric(SeriesKey(f"Gauge{i}", "None", WORKER), MetricKind.GAUGE, value=i / 3)
        for i in range(4)
    ]
    worker.append(distribution(key, {float(v): 1.0 for v in range(1, 151)}))  # 2 documents
    original = batch(*twins(*worker))
    docs, sink = export(original)
    before = unmerged(original)
    before_docs = validate_output("\n".join(before))
    assert as_counters(series(docs)) == as_counters(series(before_docs))
    assert as_counters(series(docs)) == cloudwatch_series(original)
    assert dimension_sets(docs) == [[["JobId", "WorkerId"], ["JobId"]]] * 2
    assert len(before_docs) == 4
    assert sink.bytes_written < 0.55 * sum(len(text) + 1 for text in before)


def test_without_twins_every_directive_has_one_dimension_set_as_before() -> None:
    """A job without worker_id is written as before, though a stage's zero counters equal
    the job's: only a whole dimension set whose every series has a twin is merged."""
    buf = io.StringIO()
    sink = RecordingEMFSink(stream=buf)
    with metricskit.Job(
        "plain", namespace="Test/EMF", total=100, sink=sink, flush_interval=3600
    ) as job:
        job.processed(10)
        job.stage("read").processed(4)  # ErrorCount, RetryCount, ... are 0 in both
        job.observe("KafkaLatency", 3.0)
    docs = validate_output(buf.getvalue())
    assert all(len(sets) == 1 for sets in dimension_sets(docs))
    assert buf.getvalue().splitlines() == [
        text for recorded in sink.batches for text in unmerged(recorded)
    ]


def test_only_an_exact_twin_one_dimension_less_in_the_same_order_is_merged() -> None:
    base = counter("RecordsProcessed", 5, WORKER)
    region = (*JOB, ("Region", "eu"))
    stage = (*WORKER, ("Stage", "s"))
    other_unit = SeriesKey("RecordsProcessed", "None", JOB)
    job_key = SeriesKey("RecordsProcessed", "Count", JOB)
    cases = {
        "different value": (base, counter("RecordsProcessed", 6)),
        "different unit": (base, Metric(other_unit, MetricKind.COUNTER, value=5)),
        "different kind": (base, Metric(job_key, MetricKind.GAUGE, value=5)),
        "another dimension value": (base, counter("RecordsProcessed", 5, (("JobId", "other"),))),
        "two less": (counter("RecordsProcessed", 5, stage), counter("RecordsProcessed", 5)),
        "reordered": (
            counter("RecordsProcessed", 5, stage),
            counter("RecordsProcessed", 5, (("Stage", "s"), ("JobId", "job-1"))),
        ),
        "a series of the set has no twin": (
            base, counter("RecordsProcessed", 5), counter("ErrorCount", 1, WORKER)
        ),
    }  # fmt: skip
    for name, metrics in cases.items():
        docs, _ = export(batch(*metrics))
        assert all(len(sets) == 1 for sets in dimension_sets(docs)), name
        assert as_counters(series(docs)) == cloudwatch_series(batch(*metrics)), name
    # Any one dimension, not only WorkerId: here Region, in the middle of three.
    three = (("JobId", "job-1"), ("Region", "eu"), ("Stage", "s"))
    docs, _ = export(batch(*twins(counter("RecordsProcessed", 5, three), drop="Region")))
    assert dimension_sets(docs) == [[["JobId", "Region", "Stage"], ["JobId", "Stage"]]]
    docs, _ = export(batch(*twins(counter("RecordsProcessed", 5, region), drop="JobId")))
    assert dimension_sets(docs) == [[["JobId", "Region"], ["Region"]]]


def test_series_without_a_twin_keep_their_own_documents_apart_from_the_pairs() -> None:
    """A directive's dimension sets apply to all its metrics: the pairs go in two-set
    documents, a series of the smaller set that twins nothing keeps a one-set document."""
    per_worker = [counter("RecordsProcessed", 5, WORKER), counter("ErrorCount", 1, WORKER)]
    alone = counter("DroppedValues", 3)
    original = batch(*twins(*per_worker), alone)
    docs, _ = export(original)
    assert dimension_sets(docs) == [[["JobId", "WorkerId"], ["JobId"]], [["JobId"]]]
    assert docs[1]["DroppedValues"] == 3
    assert "RecordsProcessed" not in docs[1]
    assert as_counters(series(docs)) == cloudwatch_series(original)


@pytest.mark.parametrize("written", [0, 1])
def test_a_failed_write_owes_a_series_and_its_twin_each_exactly_once(written: int) -> None:
    key = SeriesKey("Latency", "Milliseconds", WORKER)
    per_worker = [counter(f"M{i:03d}", i + 1, WORKER) for i in range(150)]
    per_worker.append(distribution(key, {float(v): 2.0 for v in range(1, 151)}))  # 300 obs
    original = batch(*twins(*per_worker))
    stream = FailingStream(good=written)
    result = EMFSink(stream=stream).export(original)
    assert not result.success
    assert result.retryable
    assert result.remainder is not None
    owed = {m.key.dimensions for m in result.remainder}
    assert owed == {WORKER, JOB}  # both series of every unwritten piece
    if written == 0:
        assert sorted(result.remainder.metrics, key=repr) == sorted(original.metrics, key=repr)
    rest_buf = io.StringIO()
    assert EMFSink(stream=rest_buf).export(result.remainder).success
    both = validate_output(stream.getvalue()) + validate_output(rest_buf.getvalue())
    assert as_counters(series(both)) == cloudwatch_series(original)  # each exactly once


@pytest.mark.parametrize("written", [0, 1])
def test_a_failed_write_of_a_sampled_twin_owes_both_exact_counts_once(written: int) -> None:
    key = SeriesKey("Latency", "Milliseconds", WORKER)
    dist = distribution(key, {float(v): 25.0 for v in range(1, 2001)})  # 50,000 observations
    original = batch(*twins(dist))
    stream = FailingStream(good=written)
    result = EMFSink(stream=stream, max_document_bytes=8192).export(original)
    assert not result.success
    assert result.remainder is not None
    if written == 0:
        assert [(m.key.dimensions, m.values, m.counts) for m in result.remainder] == [
            (WORKER, dist.values, dist.counts),
            (JOB, dist.values, dist.counts),
        ]
    else:  # the first piece went out with its share; both series owe the same rest
        (sent,) = validate_output(stream.getvalue(), 8192)
        assert sent["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [  # type: ignore[index]
            ["JobId", "WorkerId"],
            ["JobId"],
        ]
        share = sent["MetricskitDistributions"]["Latency"]["SampleCount"]  # type: ignore[index]
        worker, job = result.remainder.metrics
        assert (worker.key.dimensions, job.key.dimensions) == (WORKER, JOB)
        assert (worker.values, worker.counts) == (job.values, job.counts)
        assert share + observed(worker) == 50_000


def test_bad_values_of_twins_are_counted_per_series_as_the_cloudwatch_sink_counts() -> None:
    key = SeriesKey("Latency", "Milliseconds", WORKER)
    bad = Metric(key, MetricKind.DISTRIBUTION, values=(1.0, math.inf), counts=(2.0, 1.0))
    loss = SeriesKey("Loss", "None", WORKER)
    nan = Metric(loss, MetricKind.GAUGE, value=float("nan"))
    other_nan = Metric(dataclasses.replace(loss, dimensions=JOB), nan.kind, value=float("nan"))
    original = batch(*twins(counter("RecordsProcessed", 3, WORKER), bad), nan, other_nan)
    docs, sink = export(original)
    client = CapturingCloudWatch()
    cloudwatch = CloudWatchSink(client=client)  # type: ignore[arg-type]
    assert cloudwatch.export(original).success
    assert sink.dropped_values == cloudwatch.dropped_values == 4  # inf and NaN, in both series
    assert sink.rejected_metrics == 0
    assert dimension_sets(docs) == [[["JobId", "WorkerId"], ["JobId"]]]  # NaN matches NaN
    assert as_counters(series(docs)) == cloudwatch_series(original)


def test_a_metric_named_like_the_dropped_dimension_is_rejected_and_its_twin_still_written() -> None:
    original = batch(*twins(counter("WorkerId", 1, WORKER), counter("RecordsProcessed", 2, WORKER)))
    docs, sink = export(original)
    assert sink.rejected_metrics == 1  # only the series that has WorkerId as a dimension
    expected = cloudwatch_series(original)
    del expected[("Test/EMF", "WorkerId", "Count", WORKER)]
    assert as_counters(series(docs)) == expected  # the twin is written, in its own document
    assert dimension_sets(docs) == [[["JobId", "WorkerId"], ["JobId"]], [["JobId"]]]


def test_service_name_extras_and_distribution_summaries_ride_in_merged_documents() -> None:
    key = SeriesKey("Latency", "Milliseconds", WORKER)
    dist = distribution(key, {float(v): 3.0 for v in range(1, 1001)})  # sampled: a summary
    buf = io.StringIO()
    sink = EMFSink(stream=buf, service_name="loader")
    assert sink.export(
        batch(*twins(dist, counter("RecordsProcessed", 1, WORKER)), extra={"Status": "running"})
    ).success
    docs = validate_output(buf.getvalue())
    assert dimension_sets(docs) == [[["JobId", "WorkerId"], ["JobId"]]] * 10
    assert all(d["ServiceName"] == "loader" and d["Status"] == "running" for d in docs)
    assert totals(summaries_of(docs, "Latency")) == (3000, 1501500, 1, 1000)
    assert sum("MetricskitDistributions" in d for d in docs) == 10
    found = series(docs)
    assert len(found[("Test/EMF", "Latency", "Milliseconds", WORKER)]) == 1000
    assert (
        found[("Test/EMF", "Latency", "Milliseconds", JOB)]
        == found[("Test/EMF", "Latency", "Milliseconds", WORKER)]
    )


def test_an_extra_property_named_like_the_dropped_dimension_keeps_the_twin_apart() -> None:
    """The twin's own document would carry the extra's value under that name: not merged."""
    original = batch(*twins(counter("RecordsProcessed", 1, WORKER)), extra={"WorkerId": "x"})
    docs, _ = export(original)
    assert dimension_sets(docs) == [[["JobId", "WorkerId"]], [["JobId"]]]
    assert docs[1]["WorkerId"] == "x"


@pytest.mark.parametrize("max_bytes", [20_000, 40_000])
def test_the_second_dimension_set_is_counted_in_the_document_size(max_bytes: int) -> None:
    """Thirty long dimension names: the second set costs ~6 KB a document. Where it leaves no
    room for a piece, the twins are written apart as before rather than lost."""
    dims = tuple((f"D{i:02d}" + "n" * 200, f"v{i}") for i in range(30))
    rng = random.Random(5)
    metrics = [
        distribution(
            SeriesKey(f"Dist{i}", "Milliseconds", dims),
            {rng.uniform(0.001, 1e6): 1.0 for _ in range(100)},
        )
        for i in range(3)
    ] + [counter(f"C{i}", i, dims) for i in range(20)]
    original = batch(*twins(*metrics, drop=dims[-1][0]))
    docs, sink = export(original, max_document_bytes=max_bytes)  # validated at max_bytes
    assert sink.rejected_metrics == 0
    assert as_counters(series(docs)) == cloudwatch_series(original)
    merged = [len(sets) == 2 for sets in dimension_sets(docs)]
    if max_bytes == 20_000:  # the skeleton is 12.7 KB with one set, 18.6 KB with both
        assert not any(
            len(sets) == 2 and "Dist0" in d
            for sets, d in zip(dimension_sets(docs), docs, strict=True)
        )
        assert any(merged)  # the counters still fit with both sets
    else:
        assert all(merged)


def _serialized_series(batch_: MetricBatch) -> tuple[dict[SeriesId, Counter[float]], int]:
    docs, _, rejected = serialize(batch_)
    found = series(validate_output("\n".join(d.text for d in docs)))
    return as_counters(found), rejected


def test_an_idle_stage_pairs_with_its_own_job_wide_copy_not_the_jobs_series() -> None:
    """Idle stages' zeros equal the job's per-worker zeros; each stage's documents must still
    name the stage in both dimension sets, or Logs Insights sums by Stage count twice."""
    buf = io.StringIO()
    with metricskit.Job(
        "j", namespace="T/S", total=1000, sink=EMFSink(stream=buf), worker_id="w-1"
    ) as job:
        job.stage("load")
        job.stage("write")
    sets = Counter(
        (tuple(map(tuple, d["_aws"]["CloudWatchMetrics"][0]["Dimensions"])), d.get("Stage"))
        for d in validate_output(buf.getvalue())
    )
    stage_pair = (("JobId", "Stage", "WorkerId"), ("JobId", "Stage"))
    assert sets == Counter(
        [
            ((("JobId", "WorkerId"), ("JobId",)), None),
            (stage_pair, "load"),
            (stage_pair, "write"),
        ]
    )


def test_a_chain_of_equal_twins_publishes_every_level_once() -> None:
    job_ = (("JobId", "j"),)
    stage = (*job_, ("Stage", "s"))
    worker = (*stage, ("WorkerId", "w"))
    chain = batch(counter("N", 1, worker), counter("N", 1, stage), counter("N", 1, job_))
    assert _serialized_series(chain)[0] == cloudwatch_series(chain)


def test_two_workers_equal_to_one_job_wide_series_share_it_once() -> None:
    job_ = (("JobId", "j"),)
    workers = batch(
        counter("N", 1, (*job_, ("WorkerId", "a"))),
        counter("N", 1, (*job_, ("WorkerId", "b"))),
        counter("N", 1, job_),
    )
    assert _serialized_series(workers)[0] == cloudwatch_series(workers)


def test_a_series_too_wide_for_emf_is_rejected_and_its_twin_still_published() -> None:
    dims = tuple((f"D{i:02d}", "v") for i in range(31))
    found, rejected = _serialized_series(batch(counter("N", 1, dims), counter("N", 1, dims[:-1])))
    assert rejected == 1
    assert [key[3] for key in found] == [dims[:-1]]
