"""One job item of the job table, decoded and checked (layout: :mod:`metricskit.job_table`).

The only decoder of job items: the workers' registry, the ``metricskit jobs`` command and
the cost tracker all read items through :func:`parse_job_item`, so a field means the same
everywhere. Items come from DynamoDB, where anyone with write access can put anything, so
every field is checked: a missing or garbage field raises :class:`InvalidJobItemError`
with the reason, and callers decide whether to skip the item or report it.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

from metricskit import job_table as jt
from metricskit.errors import MetricsKitError

if TYPE_CHECKING:
    from boto3.dynamodb.types import TypeDeserializer
    from mypy_boto3_dynamodb.client import DynamoDBClient

DEFAULT_STALE_AFTER_SECONDS: Final = 600.0
"""A running job without a heartbeat for this long is stale (ten default flush intervals)."""


class InvalidJobItemError(MetricsKitError, ValueError):
    """A job item with a missing or malformed field; the message says which and why."""


@dataclass(frozen=True, slots=True)
class JobRecord:
    """A valid job item, numbers as floats (absent optional ones None, absent counts 0).

    ``worker_seconds`` is None for items written before workers reported it, so the cost
    tracker can tell "no figure" from "no time". ``stages_done`` maps each shared stage's
    name to its job-wide records done.
    """

    job_id: str
    status: str
    started_at: float
    namespace: str | None = None
    total: float | None = None
    done: float = 0.0
    errors: float = 0.0
    finished_at: float | None = None
    heartbeat_at: float | None = None
    workers: int = 0
    active_workers: int = 0
    interrupted_workers: int = 0
    failed_workers: int = 0
    worker_seconds: float | None = None
    compute_profile: str | None = None
    hourly_rate: float | None = None
    stages_done: Mapping[str, float] = field(default_factory=dict)

    @property
    def running(self) -> bool:
        return self.status == jt.STATUS_RUNNING

    @property
    def ended_at(self) -> float | None:
        """When a finished job stopped: ``finished_at``, else its last heartbeat."""
        return self.finished_at if self.finished_at is not None else self.heartbeat_at

    def is_stale(
        self, now: float | None = None, stale_after: float = DEFAULT_STALE_AFTER_SECONDS
    ) -> bool:
        """True for a job still marked running whose last heartbeat (else start) is too old."""
        if not self.running:
            return False
        seen = self.heartbeat_at if self.heartbeat_at is not None else self.started_at
        return (time.time() if now is None else now) - seen > stale_after


@dataclass(frozen=True, slots=True)
class Rejected:
    """A job item that was skipped, and why."""

    job_id: str
    reason: str


def read_job_items(client: DynamoDBClient, table: str) -> tuple[list[JobRecord], list[Rejected]]:
    """Every job item of ``table``: the valid ones decoded, the others with the reason.

    One paginated Scan filtered on ``item_type = "job"``; a bad item never stops the read.

    >>> jobs, rejected = read_job_items(boto3.client("dynamodb"), "jobs")  # doctest: +SKIP
    """
    records: list[JobRecord] = []
    rejected: list[Rejected] = []
    for page in client.get_paginator("scan").paginate(
        TableName=table,
        FilterExpression="#t = :job",
        ExpressionAttributeNames={"#t": jt.ITEM_TYPE},
        ExpressionAttributeValues={":job": {"S": jt.TYPE_JOB}},
    ):
        for raw in page.get("Items", []):
            try:
                records.append(parse_job_item(deserialize_item(raw)))
            except InvalidJobItemError as error:
                key = raw.get(jt.HASH_KEY)
                job_id = key.get("S", "?") if isinstance(key, dict) else "?"
                rejected.append(Rejected(str(job_id), str(error)))
    return records, rejected


def deserialize_item(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A low-level DynamoDB item (``{"N": "5"}`` values) as plain values (Decimal for N)."""
    deserializer = _deserializer()
    try:
        return {key: deserializer.deserialize(value) for key, value in raw.items()}
    except (TypeError, ValueError, AttributeError) as exc:
        raise InvalidJobItemError(f"not a DynamoDB item: {exc}") from exc


def warm_deserializer() -> None:
    """Import boto3's item decoder now (see :class:`~metricskit.registry.JobRegistry`)."""
    _deserializer()


@functools.cache
def _deserializer() -> TypeDeserializer:
    # Stateless, so one serves every thread; boto3 is imported only once an item is read.
    from boto3.dynamodb.types import TypeDeserializer

    return TypeDeserializer()


def parse_job_item(item: Mapping[str, Any]) -> JobRecord:
    """Check one deserialized job item; raise InvalidJobItemError saying what is wrong.

    >>> parse_job_item({"job_id": "j", "status": "running", "started_at": Decimal(1)}).job_id
    'j'
    """
    job_id = item.get(jt.HASH_KEY)
    if not isinstance(job_id, str) or not job_id:
        raise InvalidJobItemError(f"{jt.HASH_KEY} must be a non-empty string, got {job_id!r}")
    if (prefix := jt.reserved_prefix(job_id)) is not None:
        # The key of another item kind: no Job takes such an id, so this item was written by
        # hand or to pass for a job (its writes would land on a cache or checkpoint item).
        raise InvalidJobItemError(
            f"{jt.HASH_KEY} starts with {prefix!r}, the key prefix of another item kind, "
            f"but {jt.ITEM_TYPE} is {jt.TYPE_JOB!r}"
        )
    status = item.get(jt.STATUS)
    if status not in jt.JOB_STATUSES:
        allowed = ", ".join(sorted(jt.JOB_STATUSES))
        raise InvalidJobItemError(f"{jt.STATUS} {status!r} is not one of {allowed}")
    started_at = parse_number(item, jt.STARTED_AT)
    if started_at is None:
        raise InvalidJobItemError(f"{jt.STARTED_AT} is missing")
    record = JobRecord(
        job_id=job_id,
        status=str(status),
        started_at=started_at,
        namespace=_string(item, jt.NAMESPACE),
        total=parse_number(item, jt.TOTAL),
        done=parse_number(item, jt.DONE) or 0.0,
        errors=parse_number(item, jt.ERRORS) or 0.0,
        finished_at=parse_number(item, jt.FINISHED_AT),
        heartbeat_at=parse_number(item, jt.HEARTBEAT_AT),
        workers=int(parse_number(item, jt.WORKERS) or 0),
        # Workers ADD -1 as they leave: a count below zero (a worker that left twice) says
        # "none active", not "garbage", so the last worker out can still end the job.
        active_workers=int(parse_number(item, jt.ACTIVE_WORKERS, minimum=-math.inf) or 0),
        interrupted_workers=int(parse_number(item, jt.INTERRUPTED_WORKERS) or 0),
        failed_workers=int(parse_number(item, jt.FAILED_WORKERS) or 0),
        worker_seconds=parse_number(item, jt.WORKER_SECONDS),
        compute_profile=_string(item, jt.COMPUTE_PROFILE),
        hourly_rate=parse_number(item, jt.HOURLY_RATE),
        stages_done=parse_stages_done(item),
    )
    if not record.running and record.ended_at is None:
        raise InvalidJobItemError(
            f"status is {status!r} but neither {jt.FINISHED_AT} nor {jt.HEARTBEAT_AT} is set"
        )
    return record


def parse_number(item: Mapping[str, Any], name: str, *, minimum: float = 0.0) -> float | None:
    """The finite number ``item[name]`` (at least ``minimum``) as a float; None when absent.

    Also for partial items, such as an ``UpdateItem`` reply with ``UPDATED_NEW``.
    """
    value = item.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, Decimal | int | float):
        raise InvalidJobItemError(f"{name} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number) or number < minimum:
        bound = "" if minimum == -math.inf else f" >= {minimum:g}"
        raise InvalidJobItemError(f"{name} must be a finite number{bound}, got {value!r}")
    return number


def parse_stages_done(item: Mapping[str, Any]) -> dict[str, float]:
    """Job-wide done per stage, from the item's ``stage_done#<stage>`` attributes."""
    prefix = jt.STAGE_DONE_PREFIX
    return {
        name[len(prefix) :]: parse_number(item, name) or 0.0
        for name in item
        if name.startswith(prefix)
    }


def _string(item: Mapping[str, Any], name: str) -> str | None:
    value = item.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidJobItemError(f"{name} must be a string, got {value!r}")
    return value or None


__all__ = [
    "DEFAULT_STALE_AFTER_SECONDS",
    "InvalidJobItemError",
    "JobRecord",
    "Rejected",
    "deserialize_item",
    "parse_job_item",
    "parse_number",
    "parse_stages_done",
    "read_job_items",
    "warm_deserializer",
]
