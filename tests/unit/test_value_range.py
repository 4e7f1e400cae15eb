"""No number metricskit sends lies outside the range PutMetricData documents.

API_PutMetricData.html: "Values must be in the range of 8.515920e-109 to 1.174271e+108".
One value outside fails its whole request (up to 1000 datums), so each test here records
values at and beyond both edges, the way a worker would, and checks every number in what
each sink would send: gauges, counters, distribution bucket representatives (after the
log-bucket rounding), periods merged during an outage, and EMF documents.
"""

from __future__ import annotations

import io
import json
import math
from typing import Any

import pytest

import metricskit
from metricskit import catalog, limits
from metricskit.aggregation import DistributionCell
from metricskit.batch import Metric, MetricKind, SeriesKey, publishable
from metricskit.sinks.cloudwatch import CloudWatchSink
from metricskit.sinks.emf import EMFSink
from tests.conftest import FakeClock
from tests.helpers import CapturingCloudWatch

DOCUMENTED_MAX = 1.174271e108
DOCUMENTED_MIN = 8.515920e-109

EDGES = (
    2.0**-360,  # below the range: sent as 0
    5e-109,  # below: 0
    8.5159e-109,  # just below: 0
    DOCUMENTED_MIN,
    8.52e-109,
    8.6e-109,
    1e-3,
    12.5,
    1.17e108,
    1.174e108,
    DOCUMENTED_MAX,
    1.1743e108,  # above the range: dropped
    2.0**359,  # 1.1742713e108, just above: dropped
    1.2e108,  # dropped
    2.0**360 * 0.99999,  # dropped
    -DOCUMENTED_MAX,
    -1.2e108,  # dropped
    -5e-109,  # 0
    -8.6e-109,
)
DROPPED = 5  # the values in EDGES beyond DOCUMENTED_MAX
ZEROS = 4  # the values in EDGES closer to zero than DOCUMENTED_MIN


def accepted(number: object) -> bool:
    """True for a number PutMetricData takes: 0 or a magnitude in the documented range."""
    return isinstance(number, int | float) and (
        number == 0 or DOCUMENTED_MIN <= abs(number) <= DOCUMENTED_MAX
    )


def record_edges(job: metricskit.Job) -> None:
    for value in EDGES:
        job.observe("Edge", value, unit="None")
    job.gauge("Big", 1.2e108)  # dropped at record time
    job.gauge("Top", DOCUMENTED_MAX)
    job.gauge("Tiny", 5e-109)  # sent as 0


def cloudwatch_numbers(client: CapturingCloudWatch) -> dict[str, list[float]]:
    """Every Value, Values member and Counts member sent, by metric name."""
    found: dict[str, list[float]] = {}
    for request in client.requests:
        for datum in request["MetricData"]:
            numbers = found.setdefault(datum["MetricName"], [])
            numbers.extend([datum["Value"]] if "Value" in datum else datum["Values"])
            numbers.extend(datum.get("Counts", []))
    return found


def test_metricskit_keeps_to_the_range_putmetricdata_documents() -> None:
    assert DOCUMENTED_MIN <= limits.MIN_ABS_VALUE <= 8.6e-109
    assert 1.17e108 <= limits.MAX_ABS_VALUE <= DOCUMENTED_MAX


def test_cloudwatch_requests_hold_only_accepted_numbers(clock: FakeClock) -> None:
    client = CapturingCloudWatch()
    sink = CloudWatchSink(client=client)  # type: ignore[arg-type]
    job = metricskit.Job("edges", namespace="Test", sink=sink, clock=clock, flush_interval=3600)
    record_edges(job)
    clock.advance(60)
    assert job.flush()
    numbers = cloudwatch_numbers(client)
    bad = {name: [n for n in found if not accepted(n)] for name, found in numbers.items()}
    assert {name: found for name, found in bad.items() if found} == {}
    assert "Big" not in numbers
    assert numbers["Top"] == [DOCUMENTED_MAX]
    assert numbers["Tiny"] == [0.0]
    (edge,) = [d for r in client.requests for d in r["MetricData"] if d["MetricName"] == "Edge"]
    assert sum(edge["Counts"]) == len(EDGES) - DROPPED
    assert dict(zip(edge["Values"], edge["Counts"], strict=True))[0.0] == ZEROS
    # The edge buckets' representatives: in the range, within 0.5% of what they stand for.
    assert 1.17e108 * 0.995 <= max(edge["Values"]) <= DOCUMENTED_MAX
    assert DOCUMENTED_MIN <= min(v for v in edge["Values"] if v > 0) <= 8.52e-109 * 1.005
    dropped = [d for r in client.requests for d in r["MetricData"]
               if d["MetricName"] == catalog.DROPPED_VALUES]  # fmt: skip
    assert [d["Value"] for d in dropped] == [DROPPED + 1]  # and the gauge "Big"
    job.close()


def test_emf_documents_hold_only_accepted_numbers(clock: FakeClock) -> None:
    stream = io.StringIO()
    job = metricskit.Job(
        "edges", namespace="Test", sink=EMFSink(stream=stream), clock=clock, flush_interval=3600
    )
    record_edges(job)
    clock.advance(60)
    assert job.flush()
    written: dict[str, list[float]] = {}
    for line in stream.getvalue().splitlines():
        document: dict[str, Any] = json.loads(line)
        for directive in document["_aws"]["CloudWatchMetrics"]:
            for definition in directive["Metrics"]:
                value = document[definition["Name"]]
                numbers = written.setdefault(definition["Name"], [])
                numbers.extend(value if isinstance(value, list) else [value])
    bad = {name: [n for n in found if not accepted(n)] for name, found in written.items()}
    assert {name: found for name, found in bad.items() if found} == {}
    assert written["Top"] == [DOCUMENTED_MAX]
    assert written["Tiny"] == [0]
    assert len(written["Edge"]) == len(EDGES) - DROPPED
    assert written["Edge"].count(0) == ZEROS
    job.close()


class DownThenUp(CapturingCloudWatch):
    """CloudWatch unreachable for the first ``failures`` requests, then answering."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def put_metric_data(self, **request: Any) -> dict[str, Any]:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("CloudWatch unreachable")
        return super().put_metric_data(**request)


def test_periods_merged_during_an_outage_send_only_accepted_numbers(clock: FakeClock) -> None:
    """Each period's count is in the range; their sum, after a merge, is not."""
    client = DownThenUp(failures=1)
    job = metricskit.Job(
        "edges",
        namespace="Test",
        sink=CloudWatchSink(client=client),  # type: ignore[arg-type]
        clock=clock,
        flush_interval=3600,
        max_queued_periods=1,
    )
    for _ in range(2):
        job.processed(6e107)
        for value in EDGES:
            job.observe("Edge", value, unit="None")
        clock.advance(60)
        job.flush()
    numbers = cloudwatch_numbers(client)
    bad = {name: [n for n in found if not accepted(n)] for name, found in numbers.items()}
    assert {name: found for name, found in bad.items() if found} == {}
    assert catalog.RECORDS_PROCESSED not in numbers  # 1.2e108 merged: left out, not refused
    (edge,) = [d for r in client.requests for d in r["MetricData"] if d["MetricName"] == "Edge"]
    assert sum(edge["Counts"]) == 2 * (len(EDGES) - DROPPED)
    job.close()


def test_values_at_the_edges_of_the_range_stay_and_beyond_them_go() -> None:
    key = SeriesKey("Edge", "None", (("JobId", "j"),))
    for kept in (DOCUMENTED_MAX, -DOCUMENTED_MAX, DOCUMENTED_MIN, -DOCUMENTED_MIN):
        metric = Metric(key, MetricKind.GAUGE, value=kept)
        assert publishable(metric) == (metric, 0)
    for beyond in (math.nextafter(DOCUMENTED_MAX, math.inf), 2.0**359, -(2.0**359)):
        assert publishable(Metric(key, MetricKind.COUNTER, value=beyond)) == (None, 1)
    tiny = math.nextafter(DOCUMENTED_MIN, 0.0)
    assert publishable(Metric(key, MetricKind.GAUGE, value=tiny))[0] == Metric(
        key, MetricKind.GAUGE, value=0.0
    )
    # A count CloudWatch would refuse drops its value with it.
    dist = Metric(
        key,
        MetricKind.DISTRIBUTION,
        values=(1.0, 2.0, 3.0, 4.0),
        counts=(2.0, 1.2e108, 5e-109, 1.0),
    )
    clean, dropped = publishable(dist)
    assert clean is not None
    assert (clean.values, clean.counts, dropped) == ((1.0, 4.0), (2.0, 1.0), 2)


@pytest.mark.parametrize(
    "values",
    [
        (DOCUMENTED_MAX, 1.1741e108, 1.1739e108, 1.1685e108),
        (DOCUMENTED_MIN, 8.5165e-109, 8.517e-109, 8.558e-109),
        (-DOCUMENTED_MAX, -1.1741e108, -DOCUMENTED_MIN, -8.517e-109),
    ],
    ids=["top", "bottom", "negative"],
)
def test_a_distributions_edge_buckets_publish_values_in_the_range_and_keep_their_counts(
    values: tuple[float, ...],
) -> None:
    cell = DistributionCell("Edge", lambda name, value: None, "None")
    for value in values:
        cell.record(value)
    taken = cell.take()
    assert all(accepted(value) for value in taken)
    assert sum(taken.values()) == len(values)
    # Each representative stays within 0.5% of every value it stands for.
    for value in values:
        nearest = min(taken, key=lambda r: abs(r - value))
        assert abs(nearest - value) <= 0.005 * abs(value)
