"""PutMetricData batching and splitting at the service limits."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

import botocore.session
import pytest
from botocore.awsrequest import AWSRequest
from botocore.serialize import create_serializer

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


def real_body_bytes(protocol: str, namespace: str, data: list[Any]) -> int:
    """The body botocore sends for PutMetricData under ``protocol`` (form-encoded for query)."""
    operation = botocore.session.get_session().get_service_model("cloudwatch")
    request = create_serializer(protocol, include_validation=False).serialize_to_request(
        {"Namespace": namespace, "MetricData": data},
        operation.operation_model("PutMetricData"),
    )
    prepared = AWSRequest(
        method="POST", url="https://monitoring.invalid/", data=request["body"]
    ).prepare()
    assert prepared.body is not None
    return len(prepared.body)


def _encoded_dimensions() -> MetricBatch:
    """Dimension values validation accepts that the query protocol percent-encodes (3 bytes)."""
    rng = random.Random(0)
    dims = tuple(
        (f"Dim{i}", "".join(rng.choice("a/b:c d=e&f,g(h)i") for _ in range(1024))) for i in range(3)
    )
    metrics = tuple(
        Metric(SeriesKey(f"M{i}", "Count/Second", (*DIMS, *dims)), MetricKind.COUNTER, value=0.5)
        for i in range(1000)
    )
    return MetricBatch("My/Namespace", 1_700_000_000.0, metrics)


def _distributions(counts: dict[float, float]) -> MetricBatch:
    metrics = tuple(
        distribution(SeriesKey(f"Latency{j}", "Milliseconds", DIMS), counts) for j in range(900)
    )
    return MetricBatch("ns", 1_700_000_000.0, metrics)


BATCHES: dict[str, Callable[[], MetricBatch]] = {
    "percent-encoded dimension values": _encoded_dimensions,
    # Whole numbers: "1.0" is 3 bytes of JSON, 9 of CBOR (every float is a double).
    "whole-number values": lambda: _distributions({float(i): 1.0 for i in range(1, 151)}),
    "fractional values": lambda: _distributions(
        {1.0 + i * 0.123456789: float(i + 1) for i in range(150)}
    ),
}


@pytest.mark.parametrize("protocol", ["query", "json", "smithy-rpc-v2-cbor"])
@pytest.mark.parametrize("shape", BATCHES)
def test_the_bodies_botocore_builds_stay_under_one_megabyte(protocol: str, shape: str) -> None:
    """Measured on the real serialized body, not on the estimate: query bodies percent-encode
    dimension values, JSON has spaces after separators, CBOR writes 9 bytes per float."""
    batch = BATCHES[shape]()
    requests = pack_requests(batch, protocol)
    assert len(requests) > 1
    for index, request in enumerate(requests[:2]):
        data = [to_datum(m, batch.timestamp, 60) for m in request]
        real = real_body_bytes(protocol, batch.namespace, data)
        assert real <= limits.PUT_METRIC_DATA_MAX_BYTES
        assert real <= sum(estimate_datum_bytes(d, protocol) for d in data) + 4096
        if index == 0:  # the estimate is not so loose that requests go out half empty
            assert real > limits.PUT_METRIC_DATA_MAX_BYTES * 0.85


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
