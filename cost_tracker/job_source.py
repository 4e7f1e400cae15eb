"""Reads job items from the job table (layout: :mod:`metricskit.job_table`).

One Scan with a filter on ``item_type = "job"``, following ``LastEvaluatedKey``. Each item is
checked here, once: an item with a missing or garbage field becomes a :class:`Rejected` entry
with the reason, never an exception, so one bad item never stops the run.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

from metricskit import job_table as jt

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

RECENT_SECONDS: Final = 86_400.0
"""Finished jobs are reported for one day after they finish."""


@dataclass(frozen=True, slots=True)
class JobRecord:
    """One valid job item, with numbers as floats (absent optional numbers are None)."""

    job_id: str
    status: str
    started_at: float
    namespace: str | None = None
    total: float | None = None
    done: float = 0.0
    errors: float = 0.0
    finished_at: float | None = None
    heartbeat_at: float | None = None
    workers: float | None = None
    worker_seconds: float | None = None
    compute_profile: str | None = None
    hourly_rate: float | None = None

    @property
    def running(self) -> bool:
        return self.status == jt.STATUS_RUNNING

    @property
    def ended_at(self) -> float | None:
        """When a finished job stopped: ``finished_at``, else its last heartbeat."""
        return self.finished_at if self.finished_at is not None else self.heartbeat_at

    def is_current(self, now: float) -> bool:
        """Running, or finished within the last day."""
        if self.running:
            return True
        ended = self.ended_at
        return ended is not None and now - ended <= RECENT_SECONDS


@dataclass(frozen=True, slots=True)
class Rejected:
    """A job item that was skipped, and why."""

    job_id: str
    reason: str


class InvalidItemError(ValueError):
    """Raised by :func:`parse_job` with the reason an item cannot be used."""


def scan_job_items(client: DynamoDBClient, table: str) -> Iterator[dict[str, Any]]:
    """Every job item of ``table`` as plain Python values, following pagination.

    >>> items = list(scan_job_items(boto3.client("dynamodb"), "jobs"))  # doctest: +SKIP
    """
    from boto3.dynamodb.types import TypeDeserializer

    deserializer = TypeDeserializer()
    kwargs: dict[str, Any] = {
        "TableName": table,
        "FilterExpression": "#t = :job",
        "ExpressionAttributeNames": {"#t": jt.ITEM_TYPE},
        "ExpressionAttributeValues": {":job": {"S": jt.TYPE_JOB}},
    }
    while True:
        page = client.scan(**kwargs)
        for raw in page.get("Items", []):
            yield {key: deserializer.deserialize(value) for key, value in raw.items()}
        last = page.get("LastEvaluatedKey")
        if not last:
            return
        kwargs["ExclusiveStartKey"] = last


def parse_job(item: Mapping[str, Any]) -> JobRecord:
    """Check one deserialized job item; raise InvalidItemError saying what is wrong.

    >>> parse_job({"job_id": "j", "status": "running", "started_at": Decimal(1)}).job_id
    'j'
    """
    job_id = item.get(jt.HASH_KEY)
    if not isinstance(job_id, str) or not job_id:
        raise InvalidItemError(f"{jt.HASH_KEY} must be a non-empty string, got {job_id!r}")
    status = item.get(jt.STATUS)
    if status not in jt.JOB_STATUSES:
        allowed = ", ".join(sorted(jt.JOB_STATUSES))
        raise InvalidItemError(f"{jt.STATUS} {status!r} is not one of {allowed}")
    started_at = _number(item, jt.STARTED_AT, required=True)
    assert started_at is not None
    record = JobRecord(
        job_id=job_id,
        status=str(status),
        started_at=started_at,
        namespace=_string(item, jt.NAMESPACE),
        total=_number(item, jt.TOTAL),
        done=_number(item, jt.DONE) or 0.0,
        errors=_number(item, jt.ERRORS) or 0.0,
        finished_at=_number(item, jt.FINISHED_AT),
        heartbeat_at=_number(item, jt.HEARTBEAT_AT),
        workers=_number(item, jt.WORKERS),
        worker_seconds=_number(item, jt.WORKER_SECONDS),
        compute_profile=_string(item, jt.COMPUTE_PROFILE),
        hourly_rate=_number(item, jt.HOURLY_RATE),
    )
    if not record.running and record.ended_at is None:
        raise InvalidItemError(
            f"status is {status!r} but neither {jt.FINISHED_AT} nor {jt.HEARTBEAT_AT} is set"
        )
    return record


def _number(item: Mapping[str, Any], name: str, *, required: bool = False) -> float | None:
    value = item.get(name)
    if value is None:
        if required:
            raise InvalidItemError(f"{name} is missing")
        return None
    if isinstance(value, bool) or not isinstance(value, Decimal | int | float):
        raise InvalidItemError(f"{name} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise InvalidItemError(f"{name} must be a finite number >= 0, got {value!r}")
    return number


def _string(item: Mapping[str, Any], name: str) -> str | None:
    value = item.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidItemError(f"{name} must be a string, got {value!r}")
    return value or None


def load_jobs(
    client: DynamoDBClient, table: str, now: float
) -> tuple[list[JobRecord], list[Rejected]]:
    """The current jobs (running, or finished in the last day) and the rejected items."""
    jobs: list[JobRecord] = []
    rejected: list[Rejected] = []
    for item in scan_job_items(client, table):
        try:
            record = parse_job(item)
        except InvalidItemError as error:
            rejected.append(Rejected(str(item.get(jt.HASH_KEY, "?")), str(error)))
            continue
        if record.is_current(now):
            jobs.append(record)
    jobs.sort(key=lambda job: job.job_id)
    return jobs, rejected
