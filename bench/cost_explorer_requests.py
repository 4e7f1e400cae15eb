"""Cost Explorer requests per day: the metricskit cost tracker vs the original plan.

    python bench/cost_explorer_requests.py [--jobs 3] [--days 1]

Both are counted against a local moto server (requests really sent, counted by a botocore
``before-send`` hook: once per HTTP send, retries included). The tracker runs on 288
scheduled events a day (every 5 minutes) with its default 6-hour cache; the original plan's
Lambda, also every 5 minutes, asks Cost Explorer once per job per run (``GetCostAndUsage``
filtered by that job's JobId tag), uncached. Cost Explorer bills $0.01 per request (each
page counts).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
import urllib.request
import uuid
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PRICE_PER_REQUEST = (
    0.01  # USD, Cost Explorer API (https://aws.amazon.com/aws-cost-management/pricing/)
)
RUNS_PER_DAY = 288  # every 5 minutes
DAYS_PER_MONTH = 30


class CallCounter:
    def __init__(self, client: Any) -> None:
        self.calls = 0
        # Once per HTTP send: a request botocore sends again is billed again.
        client.meta.events.register("before-send.ce.GetCostAndUsage", self._count)

    def _count(self, **_: object) -> None:
        self.calls += 1


def queue_result(endpoint: str, job_ids: list[str]) -> None:
    groups = [
        {
            "Keys": [f"JobId${job}", "CostCategory$Training"],
            "Metrics": {"UnblendedCost": {"Amount": "1.0", "Unit": "USD"}},
        }
        for job in job_ids
    ]
    result = {"ResultsByTime": [{"TimePeriod": {}, "Total": {}, "Groups": groups}]}
    request = urllib.request.Request(
        f"{endpoint}/moto-api/static/ce/cost-and-usage-results",
        data=json.dumps({"results": [result]}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    urllib.request.urlopen(request).close()


def make_table(job_ids: list[str], start: float) -> str:
    import boto3

    from metricskit import job_table

    client = boto3.client("dynamodb")
    name = f"bench-jobs-{uuid.uuid4().hex[:8]}"
    job_table.create_table(client, name)
    for job in job_ids:
        client.put_item(
            TableName=name,
            Item={
                "job_id": {"S": job},
                "item_type": {"S": "job"},
                "status": {"S": "running"},
                "started_at": {"N": str(start)},
                "compute_profile": {"S": "fargate:4vcpu:8gb"},
            },
        )
    return name


def run_metricskit(endpoint: str, job_ids: list[str], start: float, days: int) -> int:
    from cost_tracker.cost_explorer import ce_client
    from cost_tracker.handler import run
    from metricskit.sinks.memory import MemorySink

    table = make_table(job_ids, start)
    queue_result(endpoint, job_ids)
    ce = ce_client()  # the client the tracker builds for itself
    counter = CallCounter(ce)
    for index in range(RUNS_PER_DAY * days):
        at = dt.datetime.fromtimestamp(start + index * 300, tz=dt.UTC)
        run(
            {"time": at.isoformat()},
            table=table,
            ce_client=ce,
            sink=MemorySink(),
            environ={},
            clock=at.timestamp,  # the replayed schedule runs on time
        )
    return counter.calls


def run_original_plan(job_ids: list[str], start: float, days: int) -> int:
    """Every 5 minutes, one uncached GetCostAndUsage per job, filtered by its JobId tag."""
    import boto3

    ce = boto3.client("ce")
    counter = CallCounter(ce)
    for index in range(RUNS_PER_DAY * days):
        today = dt.datetime.fromtimestamp(start + index * 300, tz=dt.UTC).date()
        for job in job_ids:
            ce.get_cost_and_usage(
                TimePeriod={
                    "Start": today.replace(day=1).isoformat(),
                    "End": (today + dt.timedelta(days=1)).isoformat(),
                },
                Granularity="DAILY",
                Metrics=["UnblendedCost"],
                Filter={"Tags": {"Key": "JobId", "Values": [job]}},
            )
    return counter.calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=3)
    parser.add_argument("--days", type=int, default=1)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    from examples.local_aws import LocalAws

    with LocalAws() as aws:
        start = dt.datetime(2026, 11, 2, tzinfo=dt.UTC).timestamp()
        job_ids = [f"bench-job-{i}" for i in range(args.jobs)]
        ours = run_metricskit(aws.endpoint, job_ids, start, args.days) / args.days
        plan_one = run_original_plan(job_ids[:1], start, args.days) / args.days
        plan_all = run_original_plan(job_ids, start, args.days) / args.days

    print(f"\nCost Explorer GetCostAndUsage, runs every 5 minutes, {args.days} simulated day(s)")
    print(f"  {'':40}{'requests/day':>14}{'USD/month':>12}")
    rows = [
        (f"metricskit cost tracker ({args.jobs} jobs)", ours),
        ("original plan, 1 job", plan_one),
        (f"original plan, {args.jobs} jobs", plan_all),
    ]
    for name, per_day in rows:
        monthly = per_day * DAYS_PER_MONTH * PRICE_PER_REQUEST
        print(f"  {name:40}{per_day:14,.0f}{monthly:12.2f}")
    print(f"RATIO ce_requests_per_day metricskit/original_plan_1job = {ours / plan_one:.6f}")
    print(f"RATIO ce_requests_per_day metricskit/original_plan_{args.jobs}jobs = "
          f"{ours / plan_all:.6f}")  # fmt: skip


if __name__ == "__main__":
    main()
