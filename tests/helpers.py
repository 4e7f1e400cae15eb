"""Small helpers several test modules share."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Any


def read_sum(client: Any, namespace: str, name: str, job_id: str) -> float:
    """Sum of a metric's datapoints for one JobId over the last two hours (moto or AWS)."""
    return read_statistic(client, namespace, name, job_id, "Sum")


def read_statistic(client: Any, namespace: str, name: str, job_id: str, statistic: str) -> float:
    """``statistic`` (Sum, SampleCount) summed over one JobId's last two hours of datapoints."""
    now = dt.datetime.now(dt.UTC)
    response = client.get_metric_statistics(
        Namespace=namespace,
        MetricName=name,
        Dimensions=[{"Name": "JobId", "Value": job_id}],
        StartTime=now - dt.timedelta(hours=2),
        EndTime=now + dt.timedelta(hours=1),
        Period=3600,
        Statistics=[statistic],
    )
    return float(sum(p[statistic] for p in response["Datapoints"]))


def wait_until(predicate: Callable[[], object], timeout: float = 30.0) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` passes: a liveness wait, never a
    timing assertion. Returns the predicate's last truth value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())


class CapturingCloudWatch:
    """A PutMetricData client that keeps each request (what moto would not check)."""

    class meta:  # noqa: N801 - mirrors boto3's client.meta
        class service_model:  # noqa: N801
            protocol = "json"

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    def put_metric_data(self, **request: Any) -> dict[str, Any]:
        self.requests.append(request)
        return {"ResponseMetadata": {"RetryAttempts": 0}}
