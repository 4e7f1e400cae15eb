"""PutMetricData batching and splitting at the service limits."""

from __future__ import annotations

from typing import Any

import pytest

from metricskit import limits
from metricskit.batch import Metric, MetricBatch, MetricKind, SeriesKey, distribution
from metricskit.sinks.cloudwatch import estimate_datum_bytes, pack_requests, split_metric, to_datum

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
