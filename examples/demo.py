"""A small instrumented loop against a local moto server (no AWS account, no network)."""

from __future__ import annotations

import datetime as dt
import os
import random

import boto3
from moto.server import ThreadedMotoServer

import metricskit


def main() -> None:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    os.environ.update(
        AWS_ENDPOINT_URL=f"http://{host}:{port}",
        AWS_ACCESS_KEY_ID="demo",
        AWS_SECRET_ACCESS_KEY="demo",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_DISABLE_REQUEST_COMPRESSION="true",
    )
    try:
        rng = random.Random(0)
        with metricskit.Job("demo-job", namespace="Demo", total=50_000) as job:
            for _ in range(50_000):
                job.observe("KafkaLatency", rng.lognormvariate(1.5, 0.6))
                job.processed()
        client = boto3.client("cloudwatch")
        now = dt.datetime.now(dt.UTC)
        stats = client.get_metric_statistics(
            Namespace="Demo",
            MetricName="RecordsProcessed",
            Dimensions=[{"Name": "JobId", "Value": "demo-job"}],
            StartTime=now - dt.timedelta(hours=1),
            EndTime=now + dt.timedelta(minutes=5),
            Period=3600,
            Statistics=["Sum"],
        )
        total = sum(p["Sum"] for p in stats["Datapoints"])
        print(f"RecordsProcessed read back from the local CloudWatch: {total:,.0f}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
