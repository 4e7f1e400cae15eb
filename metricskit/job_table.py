"""The layout of the DynamoDB job table: the contract between workers, the cost tracker,
the examples and the Terraform module. Change it only together with all of them.

One table, hash key ``job_id`` (string), no sort key, on-demand billing. Several kinds of
item share it; ``item_type`` tells them apart so a Scan can filter, and the key prefixes of
the other kinds (RESERVED_KEY_PREFIXES) are never job ids: ``Job`` refuses them and every
reader skips a job item with such a key:

* job items (``item_type = "job"``), key ``job_id = <the JobId>``:
  ``namespace`` S, ``status`` S (one of JOB_STATUSES), ``total`` N (optional), ``done`` N
  (job-wide records done: every worker ADDs its delta once per flush), ``errors`` N,
  ``started_at`` / ``finished_at`` / ``heartbeat_at`` N (epoch seconds), ``workers`` N
  (ADD 1 per worker that registered), ``worker_seconds`` N (every worker ADDs the seconds it
  ran since its previous flush: estimated cost = worker_seconds / 3600 x hourly rate; a
  forked child of a worker adds none, it runs on its parent's machine),
  ``compute_profile`` S (optional, e.g. ``fargate:4vcpu:8gb``, ``ec2-spot:g5.xlarge``),
  ``hourly_rate`` N (optional USD per worker-hour, overrides the profile's price),
  ``active_workers`` N (ADD 1 on register, ADD -1 on close: the last worker out sets the
  final status), ``interrupted_workers`` N (ADD 1 per worker closed as interrupted: the job
  ends ``interrupted`` rather than ``completed`` when any shard was cut short, unless
  ``done >= total`` shows a replacement finished it: ``registry.final_status``);
  ``failed_workers`` N (ADD 1 with the last update of a worker closed as failed: the job ends
  ``failed`` even when that worker's own status write was lost; a worker registering later
  never sets ``running`` over ``failed``);
  ``stage_done#<stage>`` N per stage (job-wide records done in ``job.stage(<stage>)``: every
  worker ADDs its delta with the job's, for at most MAX_SHARED_STAGES stages per job);
  ``seq#<worker>`` N while a worker is active (the number of its last update: each update
  applies only above it, so a re-sent one counts once; the worker's last update removes it,
  or, when it comes within a minute of the first, leaves a tombstone,
  registry.FINISHED_SEQUENCE + the epoch second, which a later worker's update removes once
  it is registry.TOMBSTONE_EXPIRY_SECONDS old);
  the cost tracker adds ``actual_cost`` N, ``actual_cost_fetched_at`` N, ``actual_cost_status`` S;
  ``expires_at`` N (epoch seconds, see below) once the job has a final status.
* line-count cache items (``item_type = "linecount"``), key ``linecount#<uri>``:
  ``lines`` N, ``version`` S (ETag for S3, ``size:mtime_ns`` locally), ``counted_at`` N.
* CSV-record cache items (``item_type = "csvrecords"``), key ``csvrecords#<uri>``: the same
  attributes, ``lines`` holding the CSV records that ``lines.count_csv_records`` counted
  (header included; quoted fields may span lines, so they can be fewer than the lines).
* checkpoint items (``item_type = "checkpoint"``), key ``checkpoint#<job_id>#<shard>``:
  ``position`` N (records or bytes committed), ``updated_at`` N; ``expires_at`` N once the
  shard completed (see below).
* cost-explorer cache items (``item_type = "cost_cache"``), key ``costcache#<name>``:
  ``payload`` S (JSON), ``fetched_at`` N, and the daily request budget: ``requests_day`` S
  (the UTC day, ``YYYY-MM-DD``) and ``requests_used`` N (requests sent on that day); and
  ``refresh_pages`` N, the pages the answer needs for a query period starting
  ``refresh_pages_since`` S (``YYYY-MM-DD``).

``expires_at`` (EXPIRES_AT) is the table's TTL attribute: whole epoch seconds after which
DynamoDB deletes the item (typically within a few days; until then it still shows in reads
and Scans). The registry sets it on a job item with the final status, to ``finished_at`` plus
the retention (``METRICSKIT_FINISHED_JOB_RETENTION_DAYS``; unset or 0: never), and a worker
registering again removes it, so a restarted job is not deleted while it runs. The examples
set it on a shard's checkpoint when the shard completes. Items without it are kept.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

HASH_KEY: Final = "job_id"
ITEM_TYPE: Final = "item_type"

TYPE_JOB: Final = "job"
TYPE_LINECOUNT: Final = "linecount"
TYPE_CSVRECORDS: Final = "csvrecords"
TYPE_CHECKPOINT: Final = "checkpoint"
TYPE_COST_CACHE: Final = "cost_cache"

STATUS_RUNNING: Final = "running"
STATUS_COMPLETED: Final = "completed"
STATUS_FAILED: Final = "failed"
STATUS_INTERRUPTED: Final = "interrupted"
JOB_STATUSES: Final = frozenset(
    {STATUS_RUNNING, STATUS_COMPLETED, STATUS_FAILED, STATUS_INTERRUPTED}
)

# Job item attributes.
NAMESPACE: Final = "namespace"
STATUS: Final = "status"
TOTAL: Final = "total"
DONE: Final = "done"
ERRORS: Final = "errors"
STARTED_AT: Final = "started_at"
FINISHED_AT: Final = "finished_at"
HEARTBEAT_AT: Final = "heartbeat_at"
WORKERS: Final = "workers"
WORKER_SECONDS: Final = "worker_seconds"
ACTIVE_WORKERS: Final = "active_workers"
INTERRUPTED_WORKERS: Final = "interrupted_workers"
FAILED_WORKERS: Final = "failed_workers"
COMPUTE_PROFILE: Final = "compute_profile"
HOURLY_RATE: Final = "hourly_rate"
ACTUAL_COST: Final = "actual_cost"
ACTUAL_COST_FETCHED_AT: Final = "actual_cost_fetched_at"
ACTUAL_COST_STATUS: Final = "actual_cost_status"
EXPIRES_AT: Final = "expires_at"
"""The table's TTL attribute (terraform/job_table.tf names it too): epoch seconds."""
SECONDS_PER_DAY: Final = 86_400


def expires_at(finished_at: float, retention_days: float | None) -> int | None:
    """The EXPIRES_AT of an item finished at ``finished_at`` (whole epoch seconds, rounded
    up: TTL reads seconds), or None when a retention of None or 0 keeps it forever.

    >>> expires_at(1000.5, 1), expires_at(1000.5, 0)
    (87401, None)
    """
    if not retention_days:
        return None
    return math.ceil(finished_at + retention_days * SECONDS_PER_DAY)


STAGE_DONE_PREFIX: Final = "stage_done#"
SEQUENCE_PREFIX: Final = "seq#"
MAX_SHARED_STAGES: Final = 100
"""Stages whose progress the registry shares. Each adds an ADD term to every flush's
UpdateItem, and DynamoDB allows an expression 4 KB and 300 operators: 100 stages take about
1.4 KB and 100 operators, leaving room for the job's own terms."""

# Other item kinds.
LINES: Final = "lines"
VERSION: Final = "version"
COUNTED_AT: Final = "counted_at"
POSITION: Final = "position"
UPDATED_AT: Final = "updated_at"
PAYLOAD: Final = "payload"
FETCHED_AT: Final = "fetched_at"
REQUESTS_DAY: Final = "requests_day"
REQUESTS_USED: Final = "requests_used"
REFRESH_PAGES: Final = "refresh_pages"
REFRESH_PAGES_SINCE: Final = "refresh_pages_since"

LINECOUNT_PREFIX: Final = "linecount#"
CSVRECORDS_PREFIX: Final = "csvrecords#"
CHECKPOINT_PREFIX: Final = "checkpoint#"
COST_CACHE_PREFIX: Final = "costcache#"
RESERVED_KEY_PREFIXES: Final = (
    LINECOUNT_PREFIX,
    CSVRECORDS_PREFIX,
    CHECKPOINT_PREFIX,
    COST_CACHE_PREFIX,
)
"""The key prefixes of the item kinds other than jobs: no job id may start with one, or its
job item would land on (and merge into) a cache or checkpoint item's key. Every new item kind
adds its prefix here."""


def reserved_prefix(key: str) -> str | None:
    """The reserved prefix ``key`` starts with, else None.

    >>> reserved_prefix("checkpoint#load-42#0/2"), reserved_prefix("train-1")
    ('checkpoint#', None)
    """
    return next((prefix for prefix in RESERVED_KEY_PREFIXES if key.startswith(prefix)), None)


def sequence_attribute(worker: str) -> str:
    return f"{SEQUENCE_PREFIX}{worker}"


def stage_done_attribute(stage: str) -> str:
    return f"{STAGE_DONE_PREFIX}{stage}"


def linecount_key(uri: str) -> str:
    return f"{LINECOUNT_PREFIX}{uri}"


def csvrecords_key(uri: str) -> str:
    return f"{CSVRECORDS_PREFIX}{uri}"


def checkpoint_key(job_id: str, shard: str) -> str:
    return f"{CHECKPOINT_PREFIX}{job_id}#{shard}"


def cost_cache_key(name: str) -> str:
    return f"{COST_CACHE_PREFIX}{name}"


def create_table(client: DynamoDBClient, name: str) -> None:
    """Create a job table with this layout (what the Terraform module creates in AWS).

    For local runs and tests; in AWS apply the module, which also sets encryption and PITR.

    >>> create_table(boto3.client("dynamodb"), "metricskit-jobs")   # doctest: +SKIP
    """
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": HASH_KEY, "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": HASH_KEY, "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
