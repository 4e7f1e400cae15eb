"""Reads the jobs the tracker reports on from the job table (layout: :mod:`metricskit.job_table`).

The items are read and checked by :func:`metricskit.job_record.read_job_items`, the reader the
workers' registry and ``metricskit jobs`` use too: an item with a missing or garbage field
becomes a :class:`~metricskit.job_record.Rejected` entry with the reason, never an exception,
so one bad item never stops the run.

A job is *current* (its metrics are published) while it runs and for a day after it ends.
A running job whose workers all died without closing never ends in the table, so it counts
as ended at its last heartbeat: it is reported (as stale) for a day, then dropped, rather than
forever. Its actual cost is still refreshed and published for three days after it ends (the
job is *settling*), because Cost Explorer's figures for a day keep arriving for a day or more.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from metricskit.job_record import JobRecord, Rejected, read_job_items

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

RECENT_SECONDS: Final = 86_400.0
"""Jobs are current (every cost metric published) for one day after they end."""
COST_SETTLE_SECONDS: Final = 3 * 86_400.0
"""Jobs' actual costs are refreshed and published for three days after they end (Cost
Explorer lags)."""


def last_active(job: JobRecord) -> float | None:
    """When the job was last known to run: now-ish for a live job, its end for a finished one.

    A running job's last heartbeat (else its start), so one whose workers vanished stops
    looking active; a finished job's ``finished_at``, else its last heartbeat.
    """
    if job.running:
        return job.heartbeat_at if job.heartbeat_at is not None else job.started_at
    return job.ended_at


def is_current(job: JobRecord, now: float, within: float = RECENT_SECONDS) -> bool:
    """Active within the last ``within`` seconds (a day by default)."""
    last = last_active(job)
    return last is not None and now - last <= within


def load_jobs(
    client: DynamoDBClient, table: str, now: float, within: float = RECENT_SECONDS
) -> tuple[list[JobRecord], list[Rejected]]:
    """The jobs active within ``within`` seconds of ``now``, by JobId, and the rejected items."""
    records, rejected = read_job_items(client, table)
    jobs = sorted(
        (job for job in records if is_current(job, now, within)), key=lambda job: job.job_id
    )
    return jobs, rejected
