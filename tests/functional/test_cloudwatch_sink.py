"""The CloudWatch sink against a moto server on loopback: sums read back exactly."""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse, HTTPHeaders
from botocore.stub import Stubber

import metricskit
from metricskit import catalog
from metricskit.batch import Metric, MetricBatch, MetricKind, SeriesKey
from metricskit.sinks.cloudwatch import CloudWatchSink, wire_protocol
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


class _Body:
    """The raw body of a synthetic HTTP answer (botocore reads it through ``stream``)."""

    def __init__(self, content: bytes = b"") -> None:
        self._content = content

    def stream(self, **_: object) -> Any:
        yield self._content


def test_throttling_is_retried_by_the_sinks_own_client_and_totals_stay_exact(
    aws: str, namespace: str
) -> None:
    """The client the sink builds retries a throttled PutMetricData inside botocore (its
    standard mode, with backoff), so the job sees no failed export. The answers come from a
    before-send hook: what CloudWatch would send, parsed and retried by botocore itself."""
    sink = CloudWatchSink()  # its own client, with its own retry settings
    # CloudWatch answers throttling in the wire protocol the client speaks: JSON here, with
    # the query-compatible error code in a header (botocore >= 1.40 sends JSON).
    assert wire_protocol(sink.client) == "json"
    throttled = {"left": 2}

    def throttle(request: Any, **_: object) -> AWSResponse | None:
        if throttled["left"] <= 0:
            return None  # sent to moto
        throttled["left"] -= 1
        headers = HTTPHeaders()
        headers["Content-Type"] = "application/x-amz-json-1.0"
        headers["x-amzn-query-error"] = "Throttling;Sender"
        body = json.dumps({"__type": "Throttling", "message": "Rate exceeded"}).encode()
        return AWSResponse(request.url, 400, headers, _Body(body))

    sink.client.meta.events.register("before-send.cloudwatch.PutMetricData", throttle)
    job = metricskit.Job("throttled", namespace=namespace, sink=sink, shutdown_timeout=60)
    with job:
        job.processed(42)
        job.failed(3)
    assert throttled["left"] == 0
    assert sink.retries == 2  # both throttled answers retried inside one call
    assert sink.failed_requests == 0
    assert job._delivery.failed_exports == 0
    client = boto3.client("cloudwatch")
    assert read_sum(client, namespace, catalog.RECORDS_PROCESSED, "throttled") == 42
    assert read_sum(client, namespace, catalog.ERROR_COUNT, "throttled") == 3


def test_no_region_is_a_clear_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    with pytest.raises(metricskit.ConfigurationError, match="AWS_REGION"):
        CloudWatchSink()


def answer_413_when(client: Any, too_large: Callable[[bytes], bool]) -> list[int]:
    """Make ``client`` see HTTP 413 for every PutMetricData body ``too_large`` picks; the
    others go to moto. Returns the sizes of the bodies that were refused."""
    refused: list[int] = []

    def entity_too_large(request: Any, **_: object) -> AWSResponse | None:
        body = bytes(request.body or b"")
        if not too_large(body):
            return None
        refused.append(len(body))
        return AWSResponse(request.url, 413, HTTPHeaders(), _Body())

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


def test_botocore_retries_are_published_as_a_self_metric(
    aws: str, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 4: retries are visible. Two 503 answers are retried inside botocore (standard
    mode), which the sink reports and the job publishes as MetricskitRetries."""
    client = boto3.client("cloudwatch")
    unavailable = {"left": 2}

    def answer_503(request: Any, **_: object) -> AWSResponse | None:
        if unavailable["left"] <= 0:
            return None
        unavailable["left"] -= 1
        return AWSResponse(request.url, 503, HTTPHeaders(), _Body())

    client.meta.events.register("before-send.cloudwatch.PutMetricData", answer_503)
    sink = CloudWatchSink(client=client)
    with caplog.at_level(logging.DEBUG, logger="metricskit"):
        job = metricskit.Job("retried", namespace=namespace, sink=sink, flush_interval=3600)
        job.processed(3)
        assert job.flush()  # delivered at the third attempt
        job.processed(4)
        assert job.flush()  # carries the retries of the first flush
        job.close()
    assert sink.retries == 2
    assert read_sum(client, namespace, catalog.RECORDS_PROCESSED, "retried") == 7
    assert read_sum(client, namespace, catalog.RETRIES, "retried") == 2
    assert "2 retr(ies) so far" in caplog.text


def test_exports_kept_after_a_failure_count_as_retries(aws: str, namespace: str) -> None:
    client = boto3.client("cloudwatch")
    failures = {"left": 2}

    def refuse(**_: object) -> None:
        if failures["left"] > 0:
            failures["left"] -= 1
            raise ConnectionError("no route to CloudWatch")

    client.meta.events.register("before-call.cloudwatch.PutMetricData", refuse)
    sink = CloudWatchSink(client=client)
    job = metricskit.Job("kept", namespace=namespace, sink=sink, flush_interval=3600)
    job.processed(5)
    assert not job.flush()
    assert not job.flush()  # the kept period, sent again: retry 1
    assert job.flush()  # retry 2, delivered
    job.processed(1)
    assert job.flush()  # self-metrics describe the flushes before theirs
    job.close()
    assert read_sum(client, namespace, catalog.RECORDS_PROCESSED, "kept") == 6
    assert read_sum(client, namespace, catalog.FAILED_EXPORTS, "kept") == 2
    assert read_sum(client, namespace, catalog.RETRIES, "kept") == 2


def test_an_answer_without_response_metadata_is_delivered_once(namespace: str) -> None:
    """botocore's Stubber answers without ResponseMetadata: reading it must not turn a
    delivered request into an exception, and the batch into a duplicate."""
    client = boto3.client("cloudwatch", region_name="us-east-1")
    sink = CloudWatchSink(client=client)
    metrics = (Metric(SeriesKey("Rows", "Count", (("JobId", "j"),)), MetricKind.COUNTER, 10),)
    with Stubber(client) as stubber:
        stubber.add_response("put_metric_data", {})
        result = sink.export(MetricBatch(namespace, time.time(), metrics))
        stubber.assert_no_pending_responses()
    assert result.success
    assert sink.requests_sent == 1


def test_requests_are_sized_for_the_protocol_botocore_really_sends() -> None:
    """botocore 1.40+ lists CBOR first for CloudWatch (``service_model.protocol``) but sends
    JSON: the size estimate must follow the body on the wire (see test_cloudwatch_packing for
    the sizes themselves)."""
    client = boto3.client(
        "cloudwatch",
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="y",
        endpoint_url="http://127.0.0.1:9",
    )
    content_types: list[str] = []

    class SentError(Exception):
        pass

    def capture(request: Any, **_: object) -> None:
        content_types.append(request.headers["Content-Type"].decode())
        raise SentError

    client.meta.events.register("before-send.cloudwatch.PutMetricData", capture)
    with pytest.raises(SentError):
        client.put_metric_data(Namespace="n", MetricData=[{"MetricName": "m", "Value": 1.0}])
    expected = {
        "json": "application/x-amz-json-1.0",
        "query": "application/x-www-form-urlencoded; charset=utf-8",
        "smithy-rpc-v2-cbor": "application/cbor",
    }
    assert content_types == [expected[wire_protocol(client)]]


def test_a_fork_while_a_parent_thread_holds_the_sink_lock_leaves_the_child_a_free_one() -> None:
    """The lock is held after every request; a child forked then must not block on it."""
    sink = CloudWatchSink(client=boto3.client("cloudwatch", region_name="us-east-1"))
    sink._lock.acquire()  # a parent thread's, which does not exist in the child
    sink.after_fork()
    assert sink._lock.acquire(timeout=1)
