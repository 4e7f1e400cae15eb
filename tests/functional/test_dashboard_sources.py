"""The renderer's two data sources agree on what a local moto server stored: GetMetricData
(the path for real AWS) and the demo's direct read of moto's store (which adds percentiles)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import numpy as np
import pytest

from examples.dashboard_render import CloudWatchSource, MetricQuery, render_dashboard
from examples.local_aws import MotoStoreSource, statistic

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch.type_defs import DimensionTypeDef


@pytest.fixture
def published(aws: str, namespace: str) -> tuple[str, dt.datetime, dt.datetime]:
    client = boto3.client("cloudwatch")
    start = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0) - dt.timedelta(minutes=5)
    for minute, (count, latencies) in enumerate([(100, [1.0, 2.0]), (250, [3.0, 40.0])]):
        stamp = start + dt.timedelta(minutes=minute, seconds=10)
        dims: list[DimensionTypeDef] = [{"Name": "JobId", "Value": namespace}]
        client.put_metric_data(
            Namespace=namespace,
            MetricData=[
                {
                    "MetricName": "RecordsProcessed",
                    "Dimensions": dims,
                    "Timestamp": stamp,
                    "Value": count,
                    "Unit": "Count",
                },
                {
                    "MetricName": "KafkaLatency",
                    "Dimensions": dims,
                    "Timestamp": stamp,
                    "Values": latencies,
                    "Counts": [99.0, 1.0],
                    "Unit": "Milliseconds",
                },
            ],
        )
    return namespace, start, start + dt.timedelta(minutes=5)


def test_both_sources_return_the_same_sums_per_period(
    published: tuple[str, dt.datetime, dt.datetime],
) -> None:
    namespace, start, end = published
    query = MetricQuery(namespace, "RecordsProcessed", (("JobId", namespace),), "Sum", 60)
    via_api = CloudWatchSource(boto3.client("cloudwatch")).fetch(query, start, end)
    via_store = MotoStoreSource().fetch(query, start, end)
    assert sorted(zip(*via_api, strict=True)) == sorted(zip(*via_store, strict=True))
    assert sorted(via_store[1]) == [100.0, 250.0]


def test_the_store_serves_percentiles_from_the_published_values_and_counts(
    published: tuple[str, dt.datetime, dt.datetime],
) -> None:
    namespace, start, end = published
    store = MotoStoreSource()
    raw = store.raw_values(namespace, "KafkaLatency", [("JobId", namespace)])
    assert raw.size == 200  # two datums of 99 + 1 values
    assert statistic(raw, "p99") == 3.0
    assert statistic(raw, "Maximum") == 40.0
    assert statistic(raw, "p50") == pytest.approx(np.percentile(raw, 50, method="inverted_cdf"))
    query = MetricQuery(namespace, "KafkaLatency", (("JobId", namespace),), "p99", 60)
    assert sorted(store.fetch(query, start, end)[1]) == [1.0, 3.0]  # 99 of each 100 values
    peak = MetricQuery(namespace, "KafkaLatency", (("JobId", namespace),), "Maximum", 60)
    assert sorted(store.fetch(peak, start, end)[1]) == [2.0, 40.0]


def test_a_dashboard_renders_from_getmetricdata(
    published: tuple[str, dt.datetime, dt.datetime], tmp_path: Path
) -> None:
    namespace, start, end = published
    body = {
        "widgets": [
            {
                "type": "metric",
                "x": 0,
                "y": 0,
                "width": 12,
                "height": 6,
                "properties": {
                    "title": "rate",
                    "period": 60,
                    "stat": "Sum",
                    "metrics": [
                        [namespace, "RecordsProcessed", "JobId", namespace, {"id": "m1"}],
                        [{"expression": "m1/PERIOD(m1)", "id": "e1", "label": "per second"}],
                    ],
                },
            },
        ]
    }
    report = render_dashboard(
        body,
        CloudWatchSource(boto3.client("cloudwatch")),
        tmp_path / "cw.png",
        start=start,
        end=end,
    )
    widget = report.widgets[0]
    assert widget.problem is None
    assert widget.series_drawn == 2
    assert widget.values["per second"] == pytest.approx(250 / 60)
