"""PutMetricData requests and bytes for a 1M-record job: metricskit vs the original plan.

    python bench/api_calls.py [--records 1000000] [--plan-sample 20000]

Both are counted against a local moto server (requests really sent, bodies really encoded).
The simulated job handles one record per simulated millisecond (1M records = 1000 s), with a
Kafka latency observation per record; metricskit flushes every 60 simulated seconds, as its
background flusher would. The original plan makes one call per record (latency), one per
1000 records (RecordsPerSecond) and one per 10,000 (ProgressPercentage): it is run for
``--plan-sample`` records and scaled linearly, since its cost is linear by construction.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PRICE_PER_1000_REQUESTS = 0.01  # USD, PutMetricData (CloudWatch pricing, us-east-1)


class RequestMeter:
    """Counts PutMetricData requests and their encoded body bytes on one client."""

    def __init__(self, client: Any) -> None:
        self.requests = 0
        self.bytes = 0
        client.meta.events.register("request-created.cloudwatch.PutMetricData", self._count)

    def _count(self, request: Any, **_: object) -> None:
        self.requests += 1
        body = request.body
        self.bytes += len(body) if body else 0


def run_metricskit(records: int, latencies: list[float]) -> RequestMeter:
    import boto3

    import metricskit
    from metricskit.sinks.cloudwatch import CloudWatchSink

    client = boto3.client("cloudwatch")
    meter = RequestMeter(client)
    now = [0.0]
    job = metricskit.Job(
        "bench-1m",
        namespace="Bench/metricskit",
        total=records,
        sink=CloudWatchSink(client=client),
        clock=lambda: now[0],
        flush_interval=3600,  # flushes are driven below on the simulated clock
    )
    next_flush = 60.0
    processed, observe = job.processed, job.observe
    for i in range(records):
        observe("KafkaLatency", latencies[i % len(latencies)])
        processed()
        now[0] += 0.001
        if now[0] >= next_flush:
            job.flush()
            next_flush += 60.0
    job.close()
    return meter


def run_original_plan(records: int, latencies: list[float]) -> RequestMeter:
    import boto3

    client = boto3.client("cloudwatch")
    meter = RequestMeter(client)
    dims = [{"Name": "JobId", "Value": "bench-plan"}]
    for i in range(records):
        client.put_metric_data(
            Namespace="Bench/plan",
            MetricData=[
                {"MetricName": "KafkaLatency", "Value": latencies[i % len(latencies)],
                 "Unit": "Milliseconds", "Dimensions": dims}
            ],
        )  # fmt: skip
        if (i + 1) % 1000 == 0:
            client.put_metric_data(
                Namespace="Bench/plan",
                MetricData=[{"MetricName": "RecordsPerSecond", "Value": 1000.0,
                             "Unit": "Count/Second", "Dimensions": dims}],
            )  # fmt: skip
        if (i + 1) % 10_000 == 0:
            client.put_metric_data(
                Namespace="Bench/plan",
                MetricData=[{"MetricName": "ProgressPercentage", "Value": 100.0 * i / records,
                             "Unit": "Percent", "Dimensions": dims}],
            )  # fmt: skip
    return meter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--plan-sample", type=int, default=20_000)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    rng = random.Random(5)
    latencies = [rng.lognormvariate(2.0, 0.8) for _ in range(10_000)]
    from examples.local_aws import LocalAws

    with LocalAws():
        mk = run_metricskit(args.records, latencies)
        plan = run_original_plan(args.plan_sample, latencies)
    scale = args.records / args.plan_sample
    plan_requests = plan.requests * scale
    plan_bytes = plan.bytes * scale
    duration_min = args.records * 0.001 / 60
    print(f"\nPutMetricData for a {args.records:,}-record job ({duration_min:.1f} simulated min)")
    print(f"  {'':28}{'requests':>12}{'bytes':>14}{'USD':>10}")
    for name, req, byt in (
        ("metricskit (60 s flushes)", mk.requests, mk.bytes),
        (f"original plan (x{scale:g} of {args.plan_sample:,})", plan_requests, plan_bytes),
    ):
        cost = req / 1000 * PRICE_PER_1000_REQUESTS
        print(f"  {name:28}{req:12,.0f}{byt:14,.0f}{cost:10.2f}")
    flushes = int(duration_min) + 1
    print(f"\n  metricskit requests per flush: {mk.requests / flushes:.2f} (flushes: {flushes})")
    print(f"RATIO requests metricskit/original_plan = {mk.requests / plan_requests:.6f}")
    print(f"RATIO bytes metricskit/original_plan = {mk.bytes / plan_bytes:.6f}")


if __name__ == "__main__":
    main()
