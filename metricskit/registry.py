"""The job registry: one job across many workers, in the DynamoDB job table.

Layout: :mod:`metricskit.job_table`. Each worker

* registers on start with one ``UpdateItem``: ``if_not_exists`` for what the first worker
  sets (namespace, total, started_at, compute profile, hourly rate), status ``running``,
  ``ADD workers 1, active_workers 1``; it never clobbers an item another worker created;
* on every flush sends one ``UpdateItem ... ADD done :d, errors :e, worker_seconds :s`` (and
  ``stage_done#<stage>`` for each of the job's stages) with ``ReturnValues=ALL_NEW``: the
  reply carries the job-wide ``done`` of the job and of every stage, so the worker publishes
  job-wide RecordsDone, ProgressPercentage and ETASeconds without another call (ALL_NEW,
  not UPDATED_NEW: whether an ``ADD 0`` counts as updated is left to the implementation, and
  moto leaves it out, which would leave an idle worker with a stale job-wide count; replies
  cost no read capacity either way); a total set after the start (``job.set_total``) goes
  with the next one as a plain ``SET total``; ``worker_seconds`` are the seconds it ran since
  its previous flush, which the cost tracker prices as one machine's time, so a forked child
  of a registered worker (a worker for progress) adds none: it runs on its parent's machine,
  whose time the parent's own seconds already count;
* on close adds its last deltas, ``ADD active_workers -1`` and sets the job's status:
  ``failed`` at once when a worker fails (and ``ADD failed_workers 1``, so the job stays
  failed: a worker registering later does not set ``running`` over it, and the last one out
  sets ``failed``); otherwise the last worker to leave sets ``completed`` (or ``interrupted``
  when any worker was interrupted) and ``finished_at``, unless a worker registered after its
  last update (then that one is the last out).

Faults: every call happens on the flusher thread, a helper thread at start, or in close()
(bounded by the shutdown timeout), never on the worker's thread, and none raises. What a
failed call did not deliver stays pending: the registration tracks cumulative counts and
what DynamoDB acknowledged, so the next successful call adds the whole difference. Every
update carries the worker's next sequence number (``seq#<worker>``, conditional on the
stored one being lower), so an update whose answer was lost and that is sent again, by
botocore or by the next flush, is applied once: the second copy is refused as already
applied.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from metricskit import config, job_table
from metricskit.aws_clients import dynamodb_client
from metricskit.backoff import Backoff
from metricskit.errors import ConfigurationError
from metricskit.job_record import (
    DEFAULT_STALE_AFTER_SECONDS,
    InvalidJobItemError,
    JobRecord,
    deserialize_item,
    parse_job_item,
    parse_number,
    parse_stages_done,
    read_job_items,
    warm_deserializer,
)
from metricskit.lock_holders import holds_lock
from metricskit.validation import check_hourly_rate, check_job_id, check_table_name

if TYPE_CHECKING:
    import boto3
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

logger = logging.getLogger("metricskit")


def is_stale(
    record: JobRecord, now: float | None = None, stale_after: float = DEFAULT_STALE_AFTER_SECONDS
) -> bool:
    """True when ``record`` says running but no worker sent a heartbeat for ``stale_after`` s.

    >>> is_stale(registry.get("csv-job-1"), stale_after=300)      # doctest: +SKIP
    """
    return record.is_stale(now, stale_after)


def final_status(closing: str, record: JobRecord) -> str:
    """The job's status when its last worker leaves with ``closing``.

    A worker that failed (``record.failed_workers`` > 0) failed the job, whatever the others
    did. A worker cut short earlier (``record.interrupted_workers`` > 0) makes a job that otherwise
    completed ``interrupted``, unless every record is done anyway: a replacement worker
    resumed the interrupted share (a retried Batch job, a new Spot task resuming from its
    checkpoint): every record done or counted as an error (``done + errors >= total``).
    Without a total nothing tells the two apart, so the interruption stands.

    >>> final_status("completed", record)   # record.interrupted_workers == 1  # doctest: +SKIP
    'interrupted'
    """
    if record.failed_workers > 0:
        return job_table.STATUS_FAILED
    if closing != job_table.STATUS_COMPLETED or record.interrupted_workers <= 0:
        return closing
    # Malformed records are handled too (counted as errors, never as done): a resumed job with
    # a few bad rows has done + errors == total when its last record is handled.
    if record.total is not None and record.done + record.errors >= record.total:
        return closing
    return job_table.STATUS_INTERRUPTED


FINISHED_SEQUENCE: Final = 10**9
"""Above any number a worker reaches (one per flush). A worker that finishes soon after it
started (see KEEP_SEQUENCE_SECONDS) leaves ``FINISHED_SEQUENCE + <epoch second>`` (a
*tombstone*) rather than removing its number, which refuses any late copy of its updates and
says when it was left. (Before tombstones carried the time they were exactly this value;
such ones are kept, their age unknown.)"""
KEEP_SEQUENCE_SECONDS: Final = 60.0
"""A copy of an update can reach DynamoDB late only while its sender waits for the answer
(5 s read timeout, 2 attempts); a worker finishing sooner than this after its first update
leaves a tombstone rather than removing its number, so such a copy is still refused."""
TOMBSTONE_EXPIRY_SECONDS: Final = 600.0
"""A tombstone older than this guards against nothing (ten times KEEP_SEQUENCE_SECONDS, which
also absorbs clock skew between workers): the next worker whose reply shows it removes it,
so a job run by many short-lived workers (a Lambda per file) does not grow its item towards
DynamoDB's 400 KB limit."""
MAX_TOMBSTONES_PER_UPDATE: Final = 25
"""Removed per update at most, which keeps the update expression small."""


@dataclass(frozen=True, slots=True)
class Sequence:
    """One worker's update number, which makes its updates idempotent (see WorkerRegistration).

    ``first``: the worker's first update (applies only while ``attribute`` is absent);
    ``last``: its final one, which removes ``attribute`` so items do not grow with workers,
    unless ``keep``: then it sets ``tombstone`` (see :data:`FINISHED_SEQUENCE`), fixed when
    the update is built so that a re-sent copy carries the same one and is refused.
    """

    attribute: str
    number: int
    first: bool
    last: bool = False
    keep: bool = False
    tombstone: int = FINISHED_SEQUENCE


@dataclass(frozen=True, slots=True)
class _Update:
    """An update built once and re-sent unchanged until DynamoDB has it (success or refusal
    as already applied), with what it acknowledges then."""

    sequence: Sequence
    sets: dict[str, Any]
    adds: dict[str, float]
    removes: tuple[str, ...]
    done: float
    errors: float
    stages: dict[str, float]
    seconds_at: float | None
    total_changes: int  # set_total() calls before it was built: its reply's total is current
    # for this worker only if there has been none since


class JobRegistry:
    """Access to the job table: register, add progress, finish, read, find stale jobs.

    >>> registry = JobRegistry("metricskit-jobs")                      # doctest: +SKIP
    >>> metricskit.Job("csv-job-1", total=10**8, registry=registry)    # doctest: +SKIP

    ``client`` (a low-level boto3 DynamoDB client) or ``session`` are used when given;
    otherwise a client with short timeouts is built from boto3's default chain.
    ``retention_days``: how long a finished job's item stays before the table's TTL deletes
    it (``expires_at`` = ``finished_at`` + that, set with the final status); 0 keeps it
    forever; None reads ``METRICSKIT_FINISHED_JOB_RETENTION_DAYS`` (unset: forever).
    """

    def __init__(
        self,
        table: str,
        *,
        client: DynamoDBClient | None = None,
        session: boto3.session.Session | None = None,
        retention_days: float | None = None,
    ) -> None:
        self.table = check_table_name(table)
        if retention_days is None:
            retention_days = config.env_retention_days()
        elif isinstance(retention_days, bool) or not (
            isinstance(retention_days, int | float)
            and 0 <= retention_days <= config.MAX_RETENTION_DAYS
        ):
            raise ConfigurationError(
                f"retention_days must be a number of days from 0 (keep forever) to "
                f"{config.MAX_RETENTION_DAYS:g}, got {retention_days!r}"
            )
        self.retention_days: float | None = float(retention_days) if retention_days else None
        self._session = session
        self._owns_client = client is None
        self._client = client if client is not None else dynamodb_client(session)
        # Import boto3's item decoder here, on the caller's thread: imported later by the
        # registration thread, a fork during that import would leave the children a held
        # import lock, and their first registry call would hang.
        warm_deserializer()

    @property
    def client(self) -> DynamoDBClient:
        return self._client

    def after_fork(self) -> None:
        """A forked child must not share the parent's connection pool."""
        if self._owns_client:
            self._client = dynamodb_client(self._session)

    def update(
        self,
        job_id: str,
        sets: Mapping[str, Any],
        adds: Mapping[str, float],
        *,
        returns: str,
        sequence: Sequence | None = None,
        removes: Collection[str] = (),
        unless_status: str | None = None,
    ) -> dict[str, Any]:
        """One ``UpdateItem``: ``sets`` values are plain or ``("if_not_exists", value)``;
        ``removes`` names attributes to delete (absent ones are no error).

        With ``sequence`` it applies only if that worker's sequence attribute is below the
        sequence number (or absent, for its first update), and sets or removes it; with
        ``unless_status``, only while the job's status is another one (or absent):
        otherwise DynamoDB answers ConditionalCheckFailedException (:meth:`already_applied`).
        """
        names: dict[str, str] = {}
        values: dict[str, AttributeValueTypeDef] = {}
        conditions: list[str] = []
        set_parts = _set_terms(sets, names, values)
        add_parts: list[str] = []
        if unless_status is not None:
            # The status's own placeholder when the update sets it: one per attribute.
            status = next((n for n, a in names.items() if a == job_table.STATUS), "#st")
            names[status] = job_table.STATUS
            values[":ust"] = {"S": unless_status}
            conditions.append(f"(attribute_not_exists({status}) OR {status} <> :ust)")
        for i, (attr, amount) in enumerate(adds.items()):
            names[f"#a{i}"] = attr
            values[f":a{i}"] = _encode(amount)
            add_parts.append(f"#a{i} :a{i}")
        remove_parts: list[str] = []
        for i, attr in enumerate(removes):
            names[f"#r{i}"] = attr
            remove_parts.append(f"#r{i}")
        if sequence is not None:
            names["#q"] = sequence.attribute
            values[":q"] = _encode(sequence.number)
            conditions.append("attribute_not_exists(#q)" if sequence.first else "#q < :q")
            if sequence.last and not sequence.keep:
                # Gone with the worker: a re-sent last update finds no number below its own.
                remove_parts.append("#q")
            else:
                if sequence.last:
                    values[":q"] = _encode(sequence.tombstone)
                set_parts.append("#q = :q")
        expression = "SET " + ", ".join(set_parts)
        if add_parts:
            expression += " ADD " + ", ".join(add_parts)
        remove = " REMOVE " + ", ".join(remove_parts) if remove_parts else ""
        kwargs: dict[str, Any] = {}
        if conditions:
            kwargs["ConditionExpression"] = " AND ".join(conditions)
        reply = self._client.update_item(
            TableName=self.table,
            Key={job_table.HASH_KEY: {"S": job_id}},
            UpdateExpression=expression + remove,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
            ReturnValues=returns,  # type: ignore[arg-type]  # a ReturnValueType literal
            **kwargs,
        )
        return dict(reply.get("Attributes", {}))

    def already_applied(self, error: Exception) -> bool:
        """Whether ``error`` says a sequenced update was refused as one already applied."""
        return isinstance(error, self._client.exceptions.ConditionalCheckFailedException)

    def set_status(
        self,
        job_id: str,
        status: str,
        finished_at: float,
        *,
        only_if: str | None,
        last_out_of: int | None = None,
    ) -> bool:
        """Set the job's final status; with ``only_if``, only while the status is that one;
        with ``last_out_of`` (the job's ``workers`` as the caller saw it leave, the last one
        active), only while no worker is active and none has registered since. False when
        refused. A ``status`` not in JOB_STATUSES raises ConfigurationError: written, it would
        leave an item that ``get`` refuses and ``jobs`` skips. A final status also sets
        ``expires_at`` (:meth:`expires_at`) when the registry has a retention."""
        if status not in job_table.JOB_STATUSES:
            raise ConfigurationError(
                f"status must be one of {', '.join(sorted(job_table.JOB_STATUSES))}, got {status!r}"
            )
        kwargs: dict[str, Any] = {}
        names = {"#st": job_table.STATUS, "#fin": job_table.FINISHED_AT}
        values: dict[str, AttributeValueTypeDef] = {
            ":st": {"S": status},
            ":fin": {"N": _number(finished_at)},
        }
        expression = "SET #st = :st, #fin = :fin"
        expires_at = None if status == job_table.STATUS_RUNNING else self.expires_at(finished_at)
        if expires_at is not None:
            names["#exp"] = job_table.EXPIRES_AT
            values[":exp"] = {"N": str(expires_at)}
            expression += ", #exp = :exp"
        conditions = []
        if only_if is not None:
            conditions.append("#st = :cond")
            values[":cond"] = {"S": only_if}
        if last_out_of is not None:
            names.update({"#aw": job_table.ACTIVE_WORKERS, "#w": job_table.WORKERS})
            values.update({":zero": {"N": "0"}, ":w": {"N": _number(last_out_of)}})
            conditions.append("#aw <= :zero AND #w = :w")
        if conditions:
            kwargs["ConditionExpression"] = " AND ".join(conditions)
        try:
            self._client.update_item(
                TableName=self.table,
                Key={job_table.HASH_KEY: {"S": job_id}},
                UpdateExpression=expression,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                **kwargs,
            )
        except self._client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def expires_at(self, finished_at: float) -> int | None:
        """When the table's TTL may delete an item that finished at ``finished_at`` (whole
        epoch seconds, rounded up: TTL reads seconds), or None when kept forever.

        >>> JobRegistry("jobs", retention_days=1).expires_at(1000.5)      # doctest: +SKIP
        87401
        """
        return job_table.expires_at(finished_at, self.retention_days)

    def get(self, job_id: str) -> JobRecord | None:
        """The job's record, or None when the table has no such job.

        Raises :class:`~metricskit.job_record.InvalidJobItemError` for a malformed item.
        """
        item = self.item(job_id)
        return None if item is None else parse_job_item(deserialize_item(item))

    def item(self, job_id: str) -> dict[str, Any] | None:
        """The job's item as DynamoDB stores it (strongly consistent), or None."""
        reply = self._client.get_item(
            TableName=self.table, Key={job_table.HASH_KEY: {"S": job_id}}, ConsistentRead=True
        )
        item = reply.get("Item")
        return None if item is None else dict(item)

    def jobs(self) -> list[JobRecord]:
        """Every valid job item in the table (a paginated Scan filtered on ``item_type``).

        An item with a missing or malformed field is skipped with a warning saying why, so
        one bad item (written by hand, or by another tool) never hides the others.
        """
        found, rejected = read_job_items(self._client, self.table)
        for item in rejected:
            logger.warning("metricskit: skipped job item %r: %s", item.job_id, item.reason)
        return found

    def stale_jobs(
        self, now: float | None = None, stale_after: float = DEFAULT_STALE_AFTER_SECONDS
    ) -> list[JobRecord]:
        """Jobs marked running whose heartbeat is older than ``stale_after`` seconds."""
        return [job for job in self.jobs() if is_stale(job, now, stale_after)]


class WorkerRegistration:
    """One worker's membership of one job: what it told the registry and what is pending.

    Counts are cumulative (``local_done``/``local_errors`` and each stage's done as this worker
    recorded them); ``_acked_*`` is what DynamoDB confirmed, so a failed call loses nothing:
    the next successful one adds the whole difference. The first
    :data:`~metricskit.job_table.MAX_SHARED_STAGES` stages are shared; later ones stay per
    worker (a warning says so).
    """

    def __init__(
        self,
        registry: JobRegistry,
        job_id: str,
        *,
        namespace: str,
        total: float | None,
        started_at: float,
        compute_profile: str | None,
        hourly_rate: float | None,
        monotonic_now: float,
        retry_base_seconds: float = 60.0,
    ) -> None:
        if hourly_rate is not None:
            check_hourly_rate(hourly_rate)
        if compute_profile is not None and (
            not isinstance(compute_profile, str) or not compute_profile
        ):
            raise ConfigurationError(
                f"compute_profile must be a non-empty string, got {compute_profile!r}"
            )
        self.registry = registry
        self.job_id = check_job_id(job_id)  # never another item kind's key (Job checks it too)
        self._namespace = namespace
        self._total = total
        self._started_at = started_at
        self._compute_profile = compute_profile
        self._hourly_rate = hourly_rate
        self._io_lock = threading.Lock()  # serializes calls; never taken by the worker thread
        self._state_lock = threading.Lock()  # guards the numbers below; held only briefly
        self._registered = False
        self._acked_done = 0.0
        self._acked_errors = 0.0
        self._acked_seconds_at = monotonic_now
        self._adds_seconds = True  # False in a forked child: see reset_after_fork
        self._job_done: float | None = None
        self._sequence_attribute = ""
        self._sequence = 0
        self._inflight: _Update | None = None  # sent without an answer; re-sent as it is
        self._first_sent_at = 0.0  # time.monotonic() of the first update
        self._new_sequence()
        self._finished = False
        self._stage_acked: dict[str, float] = {}  # shared stages, in the order first seen
        self._stage_job_done: dict[str, float] = {}
        self._total_unsent = False  # set_total() after the start, not yet in an update
        self._total_changes = 0  # set_total() calls so far
        self._job_total: float | None = None  # the item's, from the last reply that can tell
        self._expired_tombstones: set[str] = set()  # seen in replies; the next update removes
        self._warned_unshared = False
        self._backoff = Backoff(retry_base_seconds)
        self.failed_calls = 0
        self.successful_calls = 0
        self.skipped_syncs = 0
        """Flushes that did not call DynamoDB because it failed recently (backoff)."""
        self.job_status: str | None = None
        """The status this worker set as the job's last one out (None while others run)."""

    # -- read by the worker (no I/O) ---------------------------------------------------------

    @holds_lock
    def job_done(self, local_done: float) -> tuple[float, bool]:
        """Job-wide done: the last reply plus what this worker did since; and whether that is
        still this worker's own count, because no reply has come yet (``(local_done, True)``).
        """
        with self._state_lock:
            if self._job_done is None:
                return local_done, True
            return self._job_done + max(0.0, local_done - self._acked_done), False

    @holds_lock
    def stage_done(self, stage: str, local_done: float) -> tuple[float, bool]:
        """Job-wide done of ``stage``: as :meth:`job_done`, for a stage's own count."""
        with self._state_lock:
            job_done = self._stage_job_done.get(stage)
            if job_done is None:
                return local_done, True
            return job_done + max(0.0, local_done - self._stage_acked.get(stage, 0.0)), False

    @property
    def registered(self) -> bool:
        return self._registered

    @holds_lock
    def set_total(self, total: float) -> None:
        """The job's total changed (``job.set_total``): the next update sets it on the item.

        A plain SET, unlike registration's ``if_not_exists``: whoever sets a total after the
        start says what it is now (a count that finished after the job started, a correction).
        """
        with self._state_lock:
            self._total = total
            self._total_unsent = True
            self._total_changes += 1
            self._job_total = None  # this worker's own, until a reply carries it or a later one

    @holds_lock
    def job_total(self, local_total: float | None) -> float | None:
        """The job's total: the item's, as the last reply showed it, unless this worker set
        one since that the item may not have yet; else ``local_total`` (this worker's)."""
        with self._state_lock:
            return local_total if self._job_total is None else self._job_total

    # -- I/O (flusher thread, start-up helper thread, close) ----------------------------------

    def register(self, now_wall: float) -> None:
        """Join the job (idempotent: a registered worker does nothing). Never raises."""
        with self._io_lock:
            if self._registered or self._finished:
                return
            update = self._inflight or self._build({}, now_wall, local=None, monotonic_now=None)
            self._send(update)

    def sync(
        self,
        local_done: float,
        local_errors: float,
        now_wall: float,
        monotonic_now: float,
        *,
        stages: Mapping[str, float] | None = None,
    ) -> tuple[float, bool]:
        """Add what is pending (registering first if needed); returns :meth:`job_done`.

        ``stages`` maps each stage's name to this worker's cumulative done in it.

        After a failed call the next ones wait with backoff (at most five ``retry_base``
        intervals), so a hung or throttling table does not hold up every flush; what is
        pending stays counted and goes with the next call that is made. A call that failed
        may still have been applied (its answer lost), so that same update is sent again
        first (see :meth:`_send`), then one with what was counted since.
        """
        with self._io_lock:
            if self._finished:
                pass  # the last update went (or was attempted): nothing may follow it
            elif self._backoff.ready(monotonic_now):
                sent = self._inflight is None or self._send(self._inflight) is not None
                if sent:
                    update = self._build(
                        {},
                        now_wall,
                        local=(local_done, local_errors),
                        monotonic_now=monotonic_now,
                        stages=stages,
                    )
                    sent = self._send(update) is not None
                if sent:
                    self._backoff.succeeded()
                else:
                    self._backoff.failed(monotonic_now)
            else:
                self.skipped_syncs += 1
        return self.job_done(local_done)

    def finish(
        self,
        status: str,
        local_done: float,
        local_errors: float,
        now_wall: float,
        monotonic_now: float,
        *,
        stages: Mapping[str, float] | None = None,
    ) -> bool:
        """Send the last deltas, leave the job and set its status. Never raises.

        An update left unanswered earlier goes first; the final one may be sent twice, since
        DynamoDB applies it at most once.
        """
        with self._io_lock:
            self._finished = True
            if self._inflight is not None and not self._send_twice(self._inflight):
                return False
            adds = {job_table.ACTIVE_WORKERS: -1.0}
            if status == job_table.STATUS_INTERRUPTED:
                adds[job_table.INTERRUPTED_WORKERS] = 1.0
            elif status == job_table.STATUS_FAILED:
                # Kept on the item, so the job ends failed even if the status write below is
                # lost: the last worker out reads it (final_status).
                adds[job_table.FAILED_WORKERS] = 1.0
            update = self._build(
                adds,
                now_wall,
                local=(local_done, local_errors),
                monotonic_now=monotonic_now,
                stages=stages,
                last=True,
            )
            reply = self._send_twice(update)
            if reply is None:
                return False
            try:
                if status == job_table.STATUS_FAILED:
                    self._set_status(status, now_wall, only_if=None)
                    return True
                record = parse_job_item(deserialize_item(reply))
                if record.active_workers <= 0:
                    # Only if no worker joined since this reply: one that did (and is still
                    # there, or left after this reply) is the last out and sets the status.
                    final = final_status(status, record)
                    if self._set_status(
                        final,
                        now_wall,
                        only_if=job_table.STATUS_RUNNING,
                        last_out_of=record.workers,
                    ):
                        self.job_status = final
            except Exception as exc:
                self._failed(exc)
                return False
            return True

    def _set_status(
        self, status: str, now_wall: float, *, only_if: str | None, last_out_of: int | None = None
    ) -> bool:
        """Set the job's final status (see :meth:`JobRegistry.set_status`); once more if the
        answer was lost. True when this worker set it (a retry refused because the lost first
        try applied counts too). Raises when the second try fails as well."""
        registry, job_id = self.registry, self.job_id
        try:
            return registry.set_status(
                job_id, status, now_wall, only_if=only_if, last_out_of=last_out_of
            )
        except Exception as exc:
            self._failed(exc)
        if registry.set_status(job_id, status, now_wall, only_if=only_if, last_out_of=last_out_of):
            return True
        record = self.registry.get(self.job_id)  # refused: did the first try apply it?
        return record is not None and (record.status, record.finished_at) == (status, now_wall)

    def _send_twice(self, update: _Update) -> dict[str, Any] | None:
        """:meth:`_send`, and once more if no answer came (DynamoDB applies it at most once)."""
        reply = self._send(update)
        return reply if reply is not None else self._send(update)

    def _build(
        self,
        extra_adds: Mapping[str, float],
        now_wall: float,
        *,
        local: tuple[float, float] | None,
        monotonic_now: float | None,
        stages: Mapping[str, float] | None = None,
        last: bool = False,
    ) -> _Update:
        """The next update: everything not yet acknowledged, under a new sequence number."""
        with self._state_lock:
            done_delta = errors_delta = 0.0
            if local is not None:
                done_delta = max(0.0, local[0] - self._acked_done)
                errors_delta = max(0.0, local[1] - self._acked_errors)
            seconds = (
                max(0.0, monotonic_now - self._acked_seconds_at)
                if monotonic_now is not None and self._adds_seconds
                else 0.0
            )
            stage_deltas = self._stage_deltas(stages or {})
            registering = not self._registered
            total_unsent, self._total_unsent = self._total_unsent, False
            total_changes = self._total_changes
            self._sequence += 1
            if registering:
                self._first_sent_at = time.monotonic()
            # Soon after the first update a late copy of it may still arrive: keep a number
            # that refuses it rather than remove the attribute (see KEEP_SEQUENCE_SECONDS).
            keep = last and time.monotonic() - self._first_sent_at < KEEP_SEQUENCE_SECONDS
            sequence = Sequence(
                self._sequence_attribute,
                self._sequence,
                registering,
                last=last,
                keep=keep,
                tombstone=FINISHED_SEQUENCE + max(1, int(now_wall)),
            )
            removes = tuple(sorted(self._expired_tombstones)[:MAX_TOMBSTONES_PER_UPDATE])
            self._expired_tombstones.difference_update(removes)
        sets: dict[str, Any] = {job_table.HEARTBEAT_AT: now_wall}
        adds: dict[str, float] = {
            job_table.DONE: done_delta,
            job_table.ERRORS: errors_delta,
            job_table.WORKER_SECONDS: seconds,
        }
        if registering:
            sets.update(self._registration_sets())
            adds[job_table.WORKERS] = 1.0
            adds[job_table.ACTIVE_WORKERS] = 1.0
            # A job running again (a rerun, a replacement worker) must not expire mid-run:
            # the status it ends with sets a new expiry.
            removes = (*removes, job_table.EXPIRES_AT)
        if total_unsent and self._total is not None:
            # Once built, an update is re-sent unchanged until DynamoDB has it, and one that
            # never counted (item deleted) re-registers with the new total: sent, either way.
            sets[job_table.TOTAL] = self._total
        for stage, delta in stage_deltas.items():
            adds[job_table.stage_done_attribute(stage)] = delta
        for attr, amount in extra_adds.items():
            adds[attr] = adds.get(attr, 0.0) + amount
        return _Update(
            sequence,
            sets,
            adds,
            removes,
            done_delta,
            errors_delta,
            stage_deltas,
            monotonic_now,
            total_changes,
        )

    def _send(self, update: _Update) -> dict[str, Any] | None:
        """Send ``update``; its reply (the job item, when refused as already applied), or None.

        None means no answer: the update may or may not have been applied, so it stays in
        flight and is sent again, unchanged, before anything newer. Its sequence condition
        lets DynamoDB apply it at most once, so neither this re-send nor botocore's own retry
        of a request whose answer was lost counts anything twice.
        """
        reply = self._call(update)
        if reply is None:
            return None
        self._inflight = None
        self.successful_calls += 1
        with self._state_lock:
            self._registered = True
            self._acked_done += update.done
            self._acked_errors += update.errors
            for stage, delta in update.stages.items():
                self._stage_acked[stage] += delta
            if update.seconds_at is not None:
                self._acked_seconds_at = update.seconds_at
        self._read_reply(reply, update)
        return reply

    def _call(self, update: _Update) -> dict[str, Any] | None:
        """Send ``update`` once: its reply (or the item standing in for it), or None.

        A registration sets ``running`` only while the job has not failed: a failed worker
        fails the job for good (see :meth:`_after_refusal` for a refused one).
        """
        sets_status = job_table.STATUS in update.sets
        try:
            return self.registry.update(
                self.job_id, update.sets, update.adds, returns="ALL_NEW",
                sequence=update.sequence, removes=update.removes,
                unless_status=job_table.STATUS_FAILED if sets_status else None,
            )  # fmt: skip
        except Exception as exc:
            if not self.registry.already_applied(exc):
                self._inflight = update
                self._failed(exc)
                return None
        return self._after_refusal(update)

    def _after_refusal(self, update: _Update) -> dict[str, Any] | None:
        """The job item, when it shows that a refused ``update`` was applied before (its
        answer lost); None, with the update kept or dropped, when it does not.

        The item also carries the job-wide counts that the lost answer would have. A
        registration refused because the job failed is sent again without its status.
        """
        try:
            item = self.registry.item(self.job_id)
        except Exception as exc:
            self._inflight = update  # ask again with the next call
            self._failed(exc)
            return None
        sequence = update.sequence
        stored = _stored_number(item, sequence.attribute) if item is not None else None
        if sequence.last and not sequence.keep:
            applied = item is not None and (stored is None or stored >= sequence.number)
        else:
            applied = stored is not None and stored >= sequence.number
        if applied:
            return item
        if item is not None and job_table.STATUS in update.sets and _failed_item(item):
            # Refused for the job's status, not as a copy: this worker joins a job that
            # failed, which stays failed. The update never counted (its number is not on
            # the item), so the same one without the status SET carries its counts.
            # It keeps the failed job's expiry too: no later status write would set it again.
            sets = {k: v for k, v in update.sets.items() if k != job_table.STATUS}
            removes = tuple(r for r in update.removes if r != job_table.EXPIRES_AT)
            return self._call(dataclasses.replace(update, sets=sets, removes=removes))
        # The job item was deleted (or replaced): this update never counted. What it carried
        # is still pending; the next update registers this worker again, on the new item.
        self._inflight = None
        with self._state_lock:
            self._registered = False
        self.failed_calls += 1
        logger.warning(
            "metricskit: job %s: its item in %s was deleted or replaced; registering again",
            self.job_id,
            self.registry.table,
        )
        return None

    def _stage_deltas(self, stages: Mapping[str, float]) -> dict[str, float]:
        """What each shared stage has not yet had acknowledged (caller holds _state_lock)."""
        deltas: dict[str, float] = {}
        for stage, local_done in stages.items():
            if self._share(stage, acked=0.0):
                deltas[stage] = max(0.0, local_done - self._stage_acked[stage])
        return deltas

    def _share(self, stage: str, *, acked: float) -> bool:
        """Whether ``stage`` is shared, making it so (from ``acked``) while there is room."""
        if stage in self._stage_acked:
            return True
        if len(self._stage_acked) < job_table.MAX_SHARED_STAGES:
            self._stage_acked[stage] = acked
            return True
        if not self._warned_unshared:
            self._warned_unshared = True
            logger.warning(
                "metricskit: job %s has more than %d stages; stage %r and later ones report "
                "this worker's own progress, not the job-wide one",
                self.job_id,
                job_table.MAX_SHARED_STAGES,
                stage,
            )
        return False

    def _read_reply(self, reply: Mapping[str, Any], update: _Update) -> None:
        """Keep the job-wide counts and total that the reply to ``update`` returned, and note
        expired tombstones.

        The item's total is the job's (a worker that learned it later, ``set_total``, set it
        there), so every worker publishes its percentage and ETA against it, not against
        the one it started with, or none. Unless this worker set a total after ``update`` was
        built: the item does not have that one yet, so its own stands.
        """
        self._note_expired_tombstones(reply)
        try:
            item = deserialize_item(reply)
            job_done = parse_number(item, job_table.DONE)
            job_total = parse_number(item, job_table.TOTAL)
            stages_done = parse_stages_done(item)
        except InvalidJobItemError as exc:  # the ADD was applied: never count it as failed
            logger.warning("metricskit: job %s: unreadable registry reply (%s)", self.job_id, exc)
            return
        with self._state_lock:
            if job_done is not None:
                self._job_done = job_done
            if job_total is not None and update.total_changes == self._total_changes:
                self._job_total = job_total
            self._stage_job_done.update(
                (stage, done) for stage, done in stages_done.items() if stage in self._stage_acked
            )

    def _note_expired_tombstones(self, reply: Mapping[str, Any]) -> None:
        """Other workers' tombstones old enough that no copy they guard against can arrive."""
        oldest_kept = time.time() - TOMBSTONE_EXPIRY_SECONDS
        expired = [
            attribute
            for attribute in reply
            if attribute.startswith(job_table.SEQUENCE_PREFIX)
            and attribute != self._sequence_attribute
            and FINISHED_SEQUENCE
            < (_stored_number(reply, attribute) or 0.0)
            < FINISHED_SEQUENCE + oldest_kept
        ]
        if expired:
            with self._state_lock:
                self._expired_tombstones.update(expired)

    def _new_sequence(self) -> None:
        """Start this worker's own update numbers (a new worker: at start, or after fork)."""
        self._sequence_attribute = job_table.sequence_attribute(uuid.uuid4().hex[:16])
        self._sequence = 0
        self._inflight = None
        self._first_sent_at = 0.0

    def _registration_sets(self) -> dict[str, Any]:
        first: dict[str, Any] = {
            job_table.ITEM_TYPE: ("if_not_exists", job_table.TYPE_JOB),
            job_table.NAMESPACE: ("if_not_exists", self._namespace),
            job_table.STARTED_AT: ("if_not_exists", self._started_at),
            # A worker starting means the job runs (again, after an interruption).
            job_table.STATUS: job_table.STATUS_RUNNING,
        }
        if self._total is not None:
            first[job_table.TOTAL] = ("if_not_exists", self._total)
        if self._compute_profile is not None:
            first[job_table.COMPUTE_PROFILE] = ("if_not_exists", self._compute_profile)
        if self._hourly_rate is not None:
            first[job_table.HOURLY_RATE] = ("if_not_exists", self._hourly_rate)
        return first

    def _failed(self, exc: Exception) -> None:
        self.failed_calls += 1
        if self.failed_calls == 1 or self.failed_calls % 10 == 0:
            logger.warning(
                "metricskit: job registry %s unavailable for job %s (%s); progress is kept "
                "and sent with the next successful call (%d failed calls so far)",
                self.registry.table,
                self.job_id,
                exc,
                self.failed_calls,
            )

    def reset_after_fork(
        self,
        local_done: float,
        local_errors: float,
        monotonic_now: float,
        *,
        stages: Mapping[str, float] | None = None,
    ) -> None:
        """In a forked child: a new worker that starts from the counts it inherited.

        It adds no ``worker_seconds``: ``compute_profile`` prices what one worker runs on,
        and a forked child shares its parent's machine, whose time the parent's own seconds
        already count (a pool of 4 on one instance would otherwise price it 5 times).
        """
        self._io_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._registered = False
        self._new_sequence()  # what the parent had in flight is the parent's
        self._acked_done = local_done
        self._acked_errors = local_errors
        # Counters keep what the parent counted (the parent sends it): acknowledge it here.
        for stage, inherited in (stages or {}).items():
            if self._share(stage, acked=inherited):
                self._stage_acked[stage] = inherited
        self._acked_seconds_at = monotonic_now
        self._adds_seconds = False
        self._backoff.succeeded()
        self.registry.after_fork()


def _set_terms(
    sets: Mapping[str, Any], names: dict[str, str], values: dict[str, AttributeValueTypeDef]
) -> list[str]:
    """The SET clauses of ``sets`` (plain values or ``("if_not_exists", value)``), their
    placeholders added to ``names`` and ``values``."""
    parts = []
    for i, (attr, value) in enumerate(sets.items()):
        names[f"#s{i}"] = attr
        if isinstance(value, tuple) and value[0] == "if_not_exists":
            values[f":s{i}"] = _encode(value[1])
            parts.append(f"#s{i} = if_not_exists(#s{i}, :s{i})")
        else:
            values[f":s{i}"] = _encode(value)
            parts.append(f"#s{i} = :s{i}")
    return parts


def _failed_item(item: Mapping[str, Any]) -> bool:
    """Whether a low-level job item says the job failed."""
    status = item.get(job_table.STATUS)
    return isinstance(status, Mapping) and status.get("S") == job_table.STATUS_FAILED


def _stored_number(item: Mapping[str, Any], attribute: str) -> float | None:
    """A low-level item's number attribute (``{"N": "5"}``), or None when absent or not one."""
    try:
        return float(item[attribute]["N"])
    except (KeyError, TypeError, ValueError):
        return None


def _encode(value: object) -> AttributeValueTypeDef:
    if isinstance(value, bool):
        raise TypeError("booleans are not stored in the job table")
    if isinstance(value, int | float):
        return {"N": _number(float(value))}
    return {"S": str(value)}


def _number(value: float) -> str:
    # DynamoDB numbers are decimal strings; repr keeps every digit of a float.
    return str(int(value)) if float(value).is_integer() else repr(float(value))


__all__ = [
    "DEFAULT_STALE_AFTER_SECONDS",
    "InvalidJobItemError",
    "JobRecord",
    "JobRegistry",
    "WorkerRegistration",
    "is_stale",
]
