"""The CloudWatch sink against a moto server on loopback: sums read back exactly."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse, HTTPHeaders

import metricskit
from metricskit import catalog
from metricskit.batch import Metric, MetricBatch, MetricKind, SeriesKey
from metricskit.sinks.cloudwatch import CloudWatchSink
from tests.helpers import read_sum


def weighted_rank(pairs: list[tuple[float, float]], rank: float) -> float:
    """The value at ``rank`` in ascending (value, count) pairs."""
    seen = 0.0
    for value, count in pairs:
        seen += count
        if seen >= rank:
            return value
    return pairs[-1][0]


def capture_requests(client: Any) -> list[dict[str, Any]]:
    captured: list[dict[str, Any]] = []
    client.meta.events.register(
        "provide-client-params.cloudwatch.PutMetricData",
        lambda params, **_: captured.append(params),
    )
    return captured


def test_job_publishes_exact_sums_to_cloudwatch(aws: str, namespace: str) -> None:
    client = boto3.client("cloudwatch")
    with metricskit.Job("cw-job", namespace=namespace, total=5000, sink="cloudwatch") as job:
        for i in range(5000):
            job.processed()
            if i % 100 == 0:
                job.failed()
            job.observe("KafkaLatency", 1.0 + (i % 250))
        job.retried(7)
    assert read_sum(client, namespace, catalog.RECORDS_PROCESSED, "cw-job") == 5000
    assert read_sum(client, namespace, catalog.ERROR_COUNT, "cw-job") == 50
    assert read_sum(client, namespace, catalog.RETRY_COUNT, "cw-job") == 7
    listed = client.list_metrics(Namespace=namespace)["Metrics"]
    names = {m["MetricName"] for m in listed}
    assert {catalog.RECORDS_DONE, catalog.PROGRESS_PERCENTAGE, "KafkaLatency"} <= names


def test_p99_from_published_values_and_counts_is_within_one_percent(
    aws: str, namespace: str
) -> None:
    client = boto3.client("cloudwatch")
    captured = capture_requests(client)
    rng = random.Random(3)
    raw = [rng.lognormvariate(2.5, 0.9) for _ in range(50_000)]
    with metricskit.Job("p99-job", namespace=namespace, sink=CloudWatchSink(client=client)) as job:
        for value in raw:
            job.observe("KafkaLatency", value)
    # moto computes no percentiles: compute them from the exact request we sent, the way
    # CloudWatch does from Values/Counts (nearest rank over the weighted values).
    pairs: list[tuple[float, float]] = []
    for request in captured:
        for datum in request["MetricData"]:
            if datum["MetricName"] == "KafkaLatency":
                assert len(datum["Values"]) <= 150
                pairs.extend(zip(datum["Values"], datum["Counts"], strict=True))
    pairs.sort()
    assert sum(c for _, c in pairs) == len(raw)
    exact = sorted(raw)
    for q in (0.5, 0.9, 0.99):
        rank = q * len(raw)
        want = exact[int(rank) - 1]
        got = weighted_rank(pairs, rank)
        assert abs(got - want) / want <= 0.01


def test_one_request_per_flush_for_a_job_with_few_series(aws: str, namespace: str) -> None:
    client = boto3.client("cloudwatch")
    captured = capture_requests(client)
    sink = CloudWatchSink(client=client)
    with metricskit.Job("calls-job", namespace=namespace, sink=sink, flush_interval=3600) as job:
        for _ in range(100_000):
            job.processed()
        job.flush()
        for _ in range(100_000):
            job.processed()
    assert len(captured) == 2  # one explicit flush + the final one at close
    assert sink.requests_sent == 2


def test_throttling_is_retried_by_botocore_and_totals_stay_exact(aws: str, namespace: str) -> None:
    client = boto3.client("cloudwatch")
    failures = {"left": 2}

    def throttle(**_: object) -> None:
        if failures["left"] > 0:
            failures["left"] -= 1
            from botocore.exceptions import ClientError

            raise ClientError(
                {"Error": {"Code": "Throttling", "Message": "Rate exceeded"}}, "PutMetricData"
            )

    client.meta.events.register("before-call.cloudwatch.PutMetricData", throttle)
    sink = CloudWatchSink(client=client)
    with metricskit.Job("throttled", namespace=namespace, sink=sink) as job:
        job.processed(42)
    assert read_sum(client, namespace, catalog.RECORDS_PROCESSED, "throttled") == 42
    assert sink.failed_requests == 2


def test_no_region_is_a_clear_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    with pytest.raises(metricskit.ConfigurationError, match="AWS_REGION"):
        CloudWatchSink()


class _EmptyBody:
    """The raw body of a synthetic HTTP answer (botocore reads it through ``stream``)."""

    def stream(self, **_: object) -> Any:
        yield b""


def answer_413_when(client: Any, too_large: Callable[[bytes], bool]) -> list[int]:
    """Make ``client`` see HTTP 413 for every PutMetricData body ``too_large`` picks; the
    others go to moto. Returns the sizes of the bodies that were refused."""
    refused: list[int] = []

    def entity_too_large(request: Any, **_: object) -> AWSResponse | None:
        body = bytes(request.body or b"")
        if not too_large(body):
            return None
        refused.append(len(body))
        return AWSResponse(request.url, 413, HTTPHeaders(), _EmptyBody())

    client.meta.events.register("before-send.cloudwatch.PutMetricData", entity_too_large)
    return refused


def test_a_request_answered_413_is_resent_in_halves_and_nothing_is_lost(
    aws: str, namespace: str
) -> None:
    client = boto3.client("cloudwatch")
    refused = answer_413_when(client, lambda body: len(body) > 8_000)
    metrics = tuple(
        Metric(SeriesKey(f"M{i:03d}", "Count", (("JobId", "big"),)), MetricKind.COUNTER, value=i)
        for i in range(200)
    )
    sink = CloudWatchSink(client=client)
    result = sink.export(MetricBatch(namespace, time.time(), metrics))
    assert result.success
    assert result.rejected == 0
    assert len(refused) >= 3  # the whole request, then halves still over the stand-in limit
    names = {
        m["MetricName"]
        for page in client.get_paginator("list_metrics").paginate(Namespace=namespace)
        for m in page["Metrics"]
    }
    assert names == {f"M{i:03d}" for i in range(200)}
    assert read_sum(client, namespace, "M199", "big") == 199


def test_a_datum_always_answered_413_is_dropped_and_counted_not_kept_at_the_queue_head(
    aws: str, namespace: str
) -> None:
    """Before, a 413 was kept for retry: the same request failed at every flush, merged with
    every later period, and nothing of the job arrived again."""
    client = boto3.client("cloudwatch")
    refused = answer_413_when(client, lambda body: b"Poison" in body)
    sink = CloudWatchSink(client=client)
    job = metricskit.Job("poisoned", namespace=namespace, sink=sink, flush_interval=3600)
    try:
        job.gauge("Poison", 1.0)
        job.processed(5)
        assert job.flush()  # delivered: nothing left queued
        job.processed(7)
        assert job.flush()
    finally:
        job.close()
    assert refused
    assert sink.rejected_datums == 1
    assert job._delivery.queued == 0
    assert read_sum(client, namespace, catalog.RECORDS_PROCESSED, "poisoned") == 12
    assert read_sum(client, namespace, catalog.DROPPED_VALUES, "poisoned") == 1
