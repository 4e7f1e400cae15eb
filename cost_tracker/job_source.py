"""Reads job items from the job table (layout: :mod:`metricskit.job_table`).

One Scan with a filter on ``item_type = "job"``, following ``LastEvaluatedKey``. Each item is
checked once, by :func:`metricskit.job_record.parse_job_item` (the decoder the workers' registry
uses too): an item with a missing or garbage field becomes a :class:`Rejected` entry with the
reason, never an exception, so one bad item never stops the run.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from metricskit import job_table as jt
from metricskit.job_record import (
    InvalidJobItemError,
    JobRecord,
    deserialize_item,
    parse_job_item,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

RECENT_SECONDS: Final = 86_400.0
"""Finished jobs are reported for one day after they finish."""


def is_current(job: JobRecord, now: float) -> bool:
    """Running, or finished within the last day (:data:`RECENT_SECONDS`)."""
    if job.running:
        return True
    ended = job.ended_at
    return ended is not None and now - ended <= RECENT_SECONDS


@dataclass(frozen=True, slots=True)
class Rejected:
    """A job item that was skipped, and why."""

    job_id: str
    reason: str


def scan_job_items(client: DynamoDBClient, table: str) -> Iterator[dict[str, Any]]:
    """Every job item of ``table`` as low-level DynamoDB items, following pagination.

    >>> items = list(scan_job_items(boto3.client("dynamodb"), "jobs"))  # doctest: +SKIP
    """
    kwargs: dict[str, Any] = {
        "TableName": table,
        "FilterExpression": "#t = :job",
        "ExpressionAttributeNames": {"#t": jt.ITEM_TYPE},
        "ExpressionAttributeValues": {":job": {"S": jt.TYPE_JOB}},
    }
    while True:
        page = client.scan(**kwargs)
        yield from page.get("Items", [])
        last = page.get("LastEvaluatedKey")
        if not last:
            return
        kwargs["ExclusiveStartKey"] = last


def load_jobs(
    client: DynamoDBClient, table: str, now: float
) -> tuple[list[JobRecord], list[Rejected]]:
    """The current jobs (running, or finished in the last day) and the rejected items."""
    jobs: list[JobRecord] = []
    rejected: list[Rejected] = []
    for raw in scan_job_items(client, table):
        try:
            record = parse_job_item(deserialize_item(raw))
        except InvalidJobItemError as error:
            key = raw.get(jt.HASH_KEY)
            job_id = key.get("S", "?") if isinstance(key, dict) else "?"
            rejected.append(Rejected(str(job_id), str(error)))
            continue
        if is_current(record, now):
            jobs.append(record)
    jobs.sort(key=lambda job: job.job_id)
    return jobs, rejected
