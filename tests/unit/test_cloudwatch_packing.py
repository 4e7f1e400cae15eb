"""PutMetricData batching and splitting at the service limits."""

from __future__ import annotations

import math
from typing import Any

import pytest

from metricskit import limits
from metricskit.batch import (
    Metric,
    MetricBatch,
    MetricKind,
    SeriesKey,
    distribution,
    publishable,
)
from metricskit.sinks.cloudwatch import (
    CloudWatchSink,
    estimate_datum_bytes,
    pack_requests,
    split_metric,
    to_datum,
)
from tests.helpers import CapturingCloudWatch

DIMS = (("JobId", "job-1"),)


def counters(n: int) -> tuple[Metric, ...]:
    return tuple(
        Metric(SeriesKey(f"M{i}", "Count", DIMS), MetricKind.COUNTER, value=float(i))
        for i in range(n)
    )


def test_requests_hold_at_most_1000_datums() -> None:
    batch = MetricBatch("ns", 1_700_000_000.0, counters(2500))
    requests = pack_requests(batch)
    assert [len(r) for r in requests] == [1000, 1000, 500]
    assert sum(len(r) for r in requests) == 2500


def test_a_distribution_with_many_buckets_is_split_into_datums_of_150_values() -> None:
    key = SeriesKey("Latency", "Milliseconds", DIMS)
    metric = distribution(key, {float(i): float(i % 7 + 1) for i in range(1, 401)})
    pieces = list(split_metric(metric))
    assert [len(p.values) for p in pieces] == [150, 150, 100]
    assert sum(sum(p.counts) for p in pieces) == sum(metric.counts)
    assert all(len(p.values) == len(p.counts) for p in pieces)


@pytest.mark.parametrize("protocol", ["query", "json", "smithy-rpc-v2-cbor"])
def test_requests_stay_under_one_megabyte(protocol: str) -> None:
    metrics = tuple(
        distribution(
            SeriesKey(f"Latency{j}", "Milliseconds", DIMS),
            {1.0 + i * 0.123456789: float(i + 1) for i in range(150)},
        )
        for j in range(900)  # under the 1000-datum limit, over 1 MB in every protocol
    )
    batch = MetricBatch("ns", 1_700_000_000.0, metrics)
    requests = pack_requests(batch, protocol)
    assert len(requests) > 1
    for request in requests:
        size = sum(
            estimate_datum_bytes(to_datum(m, batch.timestamp, 60), protocol) for m in request
        )
        assert size <= limits.PUT_METRIC_DATA_MAX_BYTES
        assert len(request) <= limits.PUT_METRIC_DATA_MAX_DATUMS


def test_datum_carries_values_and_counts_or_a_single_value() -> None:
    key = SeriesKey("Latency", "Milliseconds", DIMS)
    dist: dict[str, Any] = dict(to_datum(distribution(key, {2.0: 3.0}), 1_700_000_000.0, 1))
    assert dist["Values"] == [2.0]
    assert dist["Counts"] == [3.0]
    assert dist["StorageResolution"] == 1
    assert "Value" not in dist
    single: dict[str, Any] = dict(to_datum(counters(1)[0], 1_700_000_000.0, 60))
    assert single["Value"] == 0.0
    assert single["Dimensions"] == [{"Name": "JobId", "Value": "job-1"}]


def test_query_estimate_is_larger_than_json_for_value_arrays() -> None:
    key = SeriesKey("Latency", "Milliseconds", DIMS)
    datum = to_datum(distribution(key, {float(i): 1.0 for i in range(150)}), 0.0, 60)
    assert estimate_datum_bytes(datum, "query") > 2 * estimate_datum_bytes(datum, "json")


def test_only_values_cloudwatch_accepts_are_published() -> None:
    key = SeriesKey("Latency", "Milliseconds", DIMS)
    tiny = limits.MIN_ABS_VALUE / 4
    dist = Metric(
        key,
        MetricKind.DISTRIBUTION,
        values=(0.0, tiny, 2.0, math.nan, 2.0**361),
        counts=(1.0, 2.0, 3.0, 1.0, 1.0),
    )
    clean, dropped = publishable(dist)
    assert clean is not None
    assert (clean.values, clean.counts, dropped) == ((0.0, 2.0), (3.0, 3.0), 2)  # tiny -> 0
    for bad in (math.nan, math.inf, -math.inf, 2.0**361, -(2.0**361)):
        assert publishable(Metric(key, MetricKind.GAUGE, value=bad)) == (None, 1)
    assert publishable(Metric(key, MetricKind.GAUGE, value=-tiny))[0] == Metric(
        key, MetricKind.GAUGE, value=0.0
    )
    fine = Metric(key, MetricKind.COUNTER, value=5.0)
    assert publishable(fine) == (fine, 0)
    assert publishable(distribution(key, {1.0: 2.0}))[0] == distribution(key, {1.0: 2.0})


def test_one_bad_value_never_costs_the_rest_of_the_request() -> None:
    """CloudWatch refuses a whole request for one NaN: the sink leaves such values out."""
    client = CapturingCloudWatch()
    sink = CloudWatchSink(client=client)  # type: ignore[arg-type]
    good = counters(3)
    nan = Metric(SeriesKey("Loss", "None", DIMS), MetricKind.GAUGE, value=math.nan)
    assert sink.export(MetricBatch("ns", 1_700_000_000.0, (*good, nan))).success
    (request,) = client.requests
    assert [d["MetricName"] for d in request["MetricData"]] == ["M0", "M1", "M2"]
    assert all(math.isfinite(d["Value"]) for d in request["MetricData"])
    assert sink.dropped_values == 1
