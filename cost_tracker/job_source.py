"""Reads the current jobs from the job table (layout: :mod:`metricskit.job_table`).

The items are read and checked by :func:`metricskit.job_record.read_job_items`, the reader the
workers' registry and ``metricskit jobs`` use too: an item with a missing or garbage field
becomes a :class:`~metricskit.job_record.Rejected` entry with the reason, never an exception,
so one bad item never stops the run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from metricskit.job_record import JobRecord, Rejected, read_job_items

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


def load_jobs(
    client: DynamoDBClient, table: str, now: float
) -> tuple[list[JobRecord], list[Rejected]]:
    """The current jobs (running, or finished in the last day) and the rejected items."""
    records, rejected = read_job_items(client, table)
    jobs = sorted((job for job in records if is_current(job, now)), key=lambda job: job.job_id)
    return jobs, rejected
