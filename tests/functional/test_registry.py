"""The job registry on moto DynamoDB: many workers, one job; faults never reach the worker."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import boto3
import pytest

from metricskit import Job, backoff, catalog, job_table, process_hooks
from metricskit import registry as registry_module
from metricskit.registry import (
    FINISHED_SEQUENCE,
    InvalidJobItemError,
    JobRecord,
    JobRegistry,
    is_stale,
)
from metricskit.sinks.memory import MemorySink
from tests.conftest import UNREACHABLE_ENDPOINT, use_fake_aws

TOTAL = 4000


@pytest.fixture
def table(aws: str) -> str:
    name = f"jobs-{uuid.uuid4().hex[:8]}"
    job_table.create_table(boto3.client("dynamodb"), name)
    return name


def job_id() -> str:
    return f"job-{uuid.uuid4().hex[:10]}"


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    """Poll until ``condition`` holds (a background registration is asynchronous)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def wait_registered(*jobs: Job) -> None:
    """Registration runs on a helper thread: a test about who leaves last must wait for it."""
    for job in jobs:
        wait_for(lambda job=job: job.registration is not None and job.registration.registered,
                 "registration")  # fmt: skip


def record(table: str, jid: str) -> JobRecord:
    found = JobRegistry(table).get(jid)
    assert found is not None, f"{jid} is not in {table}"
    return found


def test_worker_registers_on_start_with_profile_and_rate(table: str) -> None:
    jid = job_id()
    job = Job(
        jid,
        namespace="Reg/Test",
        total=100,
        sink=MemorySink(),
        job_table=table,
        compute_profile="fargate:4vcpu:8gb",
        hourly_rate=0.25,
    )
    try:
        assert job.registration is not None
        wait_for(lambda: job.registration is not None and job.registration.registered, "register")
        rec = record(table, jid)
        assert rec.status == job_table.STATUS_RUNNING
        assert rec.namespace == "Reg/Test"
        assert rec.total == 100
        assert rec.workers == 1
        assert rec.active_workers == 1
        assert rec.compute_profile == "fargate:4vcpu:8gb"
        assert rec.hourly_rate == 0.25
        assert rec.started_at is not None
        assert abs(rec.started_at - time.time()) < 600
        item = boto3.client("dynamodb").get_item(
            TableName=table, Key={job_table.HASH_KEY: {"S": jid}}
        )["Item"]
        assert item[job_table.ITEM_TYPE]["S"] == job_table.TYPE_JOB
    finally:
        job.close()
    rec = record(table, jid)
    assert rec.status == job_table.STATUS_COMPLETED
    assert rec.finished_at is not None
    assert rec.active_workers == 0


def test_registration_does_not_clobber_what_the_first_worker_set(table: str) -> None:
    jid = job_id()
    boto3.client("dynamodb").put_item(
        TableName=table,
        Item={
            job_table.HASH_KEY: {"S": jid},
            job_table.ITEM_TYPE: {"S": job_table.TYPE_JOB},
            job_table.TOTAL: {"N": "500"},
            job_table.STARTED_AT: {"N": "1000"},
            job_table.DONE: {"N": "120"},
            job_table.WORKERS: {"N": "1"},
            job_table.ACTIVE_WORKERS: {"N": "1"},
            job_table.NAMESPACE: {"S": "First"},
        },
    )
    with Job(jid, namespace="Second", total=999, sink=MemorySink(), job_table=table) as job:
        job.processed(30)
        job.flush()
        assert job.status().done == 150  # job-wide: the other worker's 120 plus our 30
    rec = record(table, jid)
    assert (rec.total, rec.started_at, rec.namespace) == (500, 1000, "First")
    assert rec.done == 150
    assert rec.workers == 2
    assert rec.active_workers == 1  # the first worker has not left
    assert rec.status == job_table.STATUS_RUNNING  # so the job is not over yet


def worker(jid: str, table: str, clock: Any, name: str) -> tuple[Job, MemorySink]:
    """One of several workers of job ``jid`` (total 200) on the injected clock."""
    sink = MemorySink()
    return Job(jid, total=200, sink=sink, job_table=table, clock=clock, worker_id=name), sink


def test_each_flush_publishes_job_wide_progress(table: str, clock: Any) -> None:
    jid = job_id()
    (a, sink_a), (b, sink_b) = (worker(jid, table, clock, name) for name in "ab")
    try:
        a.processed(30)
        b.processed(50)
        clock.advance(10)
        a.flush()
        assert sink_a.last(catalog.RECORDS_DONE) == 30
        b.flush()
        assert sink_b.last(catalog.RECORDS_DONE) == 80  # a's 30 came back in the reply
        assert sink_b.last(catalog.PROGRESS_PERCENTAGE) == 40
        # The delta stays this worker's.
        assert sink_b.sum(catalog.RECORDS_PROCESSED, WorkerId="b") == 50
        a.processed(20)
        clock.advance(10)
        a.flush()
        assert sink_a.last(catalog.RECORDS_DONE) == 100
        assert sink_a.last(catalog.ETA_SECONDS) is not None
        assert a.status().done == 100
        b.processed(1)
        assert b.status().done == 81  # the last reply plus what b did since, without a call
    finally:
        a.close()
        b.close()
    rec = record(table, jid)
    assert rec.done == 101
    assert rec.worker_seconds == pytest.approx(40.0)  # 20 s each, on the injected clock
    assert rec.status == job_table.STATUS_COMPLETED


def test_an_idle_worker_still_publishes_the_job_wide_count(table: str, clock: Any) -> None:
    """A worker with nothing new to add still learns what the others did: the reply is the
    whole item (ALL_NEW), not only what this update changed (moto leaves out an ADD 0)."""
    jid = job_id()
    (a, _), (b, sink_b) = (worker(jid, table, clock, name) for name in "ab")
    try:
        a.processed(30)
        clock.advance(10)
        a.flush()
        b.flush()
        assert sink_b.last(catalog.RECORDS_DONE) == 30
        a.processed(70)
        clock.advance(10)
        a.flush()
        b.flush()  # b is idle: it adds 0
        assert sink_b.last(catalog.RECORDS_DONE) == 100
        assert b.status().done == 100
    finally:
        a.close()
        b.close()


def test_a_total_set_after_the_start_reaches_the_job_item(table: str, clock: Any) -> None:
    """A total known only after the job started (a line count that finished later, a
    ByteProgressReader's size) is the job's total for the tracker, the CLI and final_status."""
    jid = job_id()
    job = Job(jid, sink=MemorySink(), job_table=table, clock=clock)
    try:
        wait_registered(job)
        assert record(table, jid).total is None
        job.set_total(1000)
        job.processed(400)
        clock.advance(10)
        job.flush()
        assert record(table, jid).total == 1000
        job.set_total(None)  # unknown to this worker now: the item keeps what it has
        job.processed(1)
        clock.advance(10)
        job.flush()
        assert record(table, jid).total == 1000
    finally:
        job.close()
    assert record(table, jid).done == 401


def test_stage_progress_is_job_wide(table: str, clock: Any) -> None:
    jid = job_id()
    (a, sink_a), (b, sink_b) = (worker(jid, table, clock, name) for name in "ab")
    try:
        read_a, read_b = a.stage("read", total=200), b.stage("read", total=200)
        read_a.processed(30)
        read_b.processed(50)
        b.stage("write").processed(5)  # a stage only one worker has
        clock.advance(10)
        a.flush()
        assert sink_a.last(catalog.RECORDS_DONE, Stage="read") == 30
        b.flush()
        assert sink_b.last(catalog.RECORDS_DONE, Stage="read") == 80  # a's 30 in the reply
        assert sink_b.last(catalog.PROGRESS_PERCENTAGE, Stage="read") == 40
        assert sink_b.sum(catalog.RECORDS_PROCESSED, Stage="read", WorkerId="b") == 50
        assert sink_b.last(catalog.RECORDS_DONE, Stage="write") == 5
        assert b.status().done == 0  # the job's own count is apart from its stages
        read_b.processed(1)
        assert read_b.status().done == 81  # the last reply plus what b did since
        assert read_a.status().done == 30  # a has not heard of b's 50 yet
    finally:
        a.close()
        b.close()
    rec = record(table, jid)
    assert rec.stages_done == {"read": 81, "write": 5}
    assert rec.done == 0


def test_stages_beyond_the_shared_limit_stay_per_worker(
    table: str, clock: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(job_table, "MAX_SHARED_STAGES", 2)
    jid = job_id()
    sink = MemorySink()
    with Job(jid, sink=sink, job_table=table, clock=clock) as job:
        for name in ("one", "two", "three", "four"):
            job.stage(name).processed(3)
        clock.advance(10)
        with caplog.at_level(logging.WARNING, logger="metricskit"):
            job.flush()
            job.flush()
        assert sink.last(catalog.RECORDS_DONE, Stage="three") == 3  # still published, locally
    assert record(table, jid).stages_done == {"one": 3, "two": 3}
    warnings = [r.getMessage() for r in caplog.records if "more than 2 stages" in r.getMessage()]
    assert warnings == [
        f"metricskit: job {jid} has more than 2 stages; stage 'three' and later ones report "
        "this worker's own progress, not the job-wide one"
    ]


def _worker(table: str, jid: str, share: int, results: Any) -> None:
    sink = MemorySink()
    # A generous shutdown timeout: the registry gets half of it at close, on a loaded machine.
    job = Job(
        jid, namespace="Reg/Procs", total=TOTAL, sink=sink, job_table=table, shutdown_timeout=30
    )
    load = job.stage("load", total=TOTAL)
    for i in range(share):
        load.processed()
        job.processed()
        if i % 250 == 249:
            job.flush()
    job.close("completed")
    results.put(
        (
            sink.last(catalog.RECORDS_DONE),
            sink.last(catalog.PROGRESS_PERCENTAGE),
            sink.last(catalog.PROGRESS_PERCENTAGE, Stage="load"),
        )
    )


def test_four_worker_processes_complete_one_job(table: str) -> None:
    jid = job_id()
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()
    workers = [
        ctx.Process(target=_worker, args=(table, jid, TOTAL // 4, results)) for _ in range(4)
    ]
    for proc in workers:
        proc.start()
    for proc in workers:
        proc.join(120)
        assert proc.exitcode == 0
    published = [results.get(timeout=10) for _ in workers]
    rec = record(table, jid)
    assert rec.done == TOTAL
    assert rec.stages_done == {"load": TOTAL}
    assert rec.status == job_table.STATUS_COMPLETED
    assert (rec.workers, rec.active_workers) == (4, 0)
    # The worker whose final update came last saw every other worker's records.
    assert max(done for done, _, _ in published) == TOTAL
    assert max(percent for _, percent, _ in published) == 100
    assert max(stage_percent for _, _, stage_percent in published) == 100


def _inheriting_worker(job: Job, share: int) -> None:
    stage = job.stage("work")
    for _ in range(share):
        stage.processed()
        job.processed()
    job.close("completed")


def test_forked_children_of_a_registered_job_count_exactly(table: str) -> None:
    jid = job_id()
    parent = Job(jid, total=TOTAL, sink=MemorySink(), job_table=table, shutdown_timeout=30)
    wait_registered(parent)  # fork with no registry call in flight on a helper thread
    parent.processed(400)  # unflushed at fork time: the parent, not the children, sends it
    parent.stage("work").processed(400)
    ctx = multiprocessing.get_context("fork")
    children = [ctx.Process(target=_inheriting_worker, args=(parent, 900)) for _ in range(4)]
    for proc in children:
        proc.start()
    for proc in children:
        proc.join(120)
        assert proc.exitcode == 0
    parent.close()
    rec = record(table, jid)
    assert rec.done == TOTAL
    assert rec.stages_done == {"work": TOTAL}
    assert rec.workers == 5
    assert rec.status == job_table.STATUS_COMPLETED


_POOL_JOB: Job | None = None


def _record_in_pool_worker(n: int) -> int:
    assert _POOL_JOB is not None
    for _ in range(n):
        _POOL_JOB.processed()
    return os.getpid()


@pytest.mark.parametrize("total", [None, 10_000], ids=["no-total", "total-not-reached"])
def test_a_pool_left_through_its_with_block_leaves_the_job_completed(
    table: str, total: int | None
) -> None:
    """``with Pool() as pool:`` ends in terminate(), which SIGTERMs the workers: each closes
    its inherited copy of the job (delivering its counts), but the parent alone decides the
    job's status, so the workers' SIGTERM must not count as interrupted workers."""
    global _POOL_JOB  # noqa: PLW0603 - fork children see module globals
    jid = job_id()
    _POOL_JOB = Job(jid, total=total, sink="off", job_table=table, flush_interval=3600,
                    shutdown_timeout=30)  # fmt: skip
    try:
        # The pool workers inherit metricskit's SIGTERM hook: that is the path under test.
        assert signal.getsignal(signal.SIGTERM) is process_hooks._on_sigterm
        wait_registered(_POOL_JOB)  # fork with no registry call in flight on a helper thread
        with multiprocessing.get_context("fork").Pool(4) as pool:
            pool.map(_record_in_pool_worker, [1000] * 8, chunksize=1)
        assert _POOL_JOB.close() is True
    finally:
        _POOL_JOB = None
    rec = record(table, jid)
    assert rec.done == 8000  # delivered by the workers' SIGTERM close
    assert (rec.interrupted_workers, rec.failed_workers, rec.active_workers) == (0, 0, 0)
    assert rec.status == job_table.STATUS_COMPLETED


def _inheriting_worker_that_raises(job: Job) -> None:
    try:
        with job:
            job.processed(25)
            raise RuntimeError("this task failed")
    except RuntimeError:
        pass


def test_an_exception_through_a_forked_copys_with_block_does_not_fail_the_job(
    table: str,
) -> None:
    """A forked copy leaves the job's outcome to its parent whatever ends it: its counts go
    to the job item, its exception does not fail the job for every worker."""
    jid = job_id()
    parent = Job(jid, sink=MemorySink(), job_table=table, shutdown_timeout=30)
    wait_registered(parent)
    child = multiprocessing.get_context("fork").Process(
        target=_inheriting_worker_that_raises, args=(parent,)
    )
    child.start()
    child.join(120)
    assert child.exitcode == 0
    assert record(table, jid).status == job_table.STATUS_RUNNING  # the parent still runs
    parent.processed(5)
    assert parent.close() is True
    rec = record(table, jid)
    assert rec.done == 30
    assert (rec.interrupted_workers, rec.failed_workers, rec.active_workers) == (0, 0, 0)
    assert rec.status == job_table.STATUS_COMPLETED


def _child_on_the_parents_machine(job: Job, clock: Any) -> None:
    job.processed(10)
    clock.advance(100)  # this process's copy of the clock: it runs 200 s in all
    job.flush()
    clock.advance(100)
    job.close("completed")


def test_forked_children_count_as_workers_but_add_no_worker_seconds(table: str, clock: Any) -> None:
    """compute_profile prices what one worker runs on: a worker with 4 forked processes on one
    g5.xlarge is one machine, which the parent's own seconds price (the children's would
    price it 5 times over)."""
    jid = job_id()
    parent = Job(jid, total=100, sink=MemorySink(), job_table=table, clock=clock,
                 compute_profile="ec2:g5.xlarge", shutdown_timeout=30)  # fmt: skip
    wait_registered(parent)  # fork with no registry call in flight on a helper thread
    ctx = multiprocessing.get_context("fork")
    children = [
        ctx.Process(target=_child_on_the_parents_machine, args=(parent, clock)) for _ in range(4)
    ]
    for proc in children:
        proc.start()
    for proc in children:
        proc.join(120)
        assert proc.exitcode == 0
    clock.advance(250)
    parent.close()
    rec = record(table, jid)
    assert rec.done == 40
    # Still workers for progress and for who leaves last ...
    assert (rec.workers, rec.active_workers) == (5, 0)
    assert rec.status == job_table.STATUS_COMPLETED
    # ... but the machine's time is the parent's: 250 s, not 250 + 4 x 200.
    assert rec.worker_seconds == pytest.approx(250.0)


def test_failed_worker_fails_the_job_and_interrupted_one_is_remembered(table: str) -> None:
    failed = job_id()
    with pytest.raises(RuntimeError), Job(failed, sink=MemorySink(), job_table=table):
        raise RuntimeError("boom")
    assert record(table, failed).status == job_table.STATUS_FAILED

    mixed = job_id()
    a = Job(mixed, sink=MemorySink(), job_table=table)
    b = Job(mixed, sink=MemorySink(), job_table=table)
    wait_registered(a, b)  # else a may leave first, as the last worker out, and end the job
    a.close("interrupted")
    assert record(table, mixed).status == job_table.STATUS_RUNNING  # b still runs
    b.close("completed")
    rec = record(table, mixed)
    assert rec.status == job_table.STATUS_INTERRUPTED
    assert rec.finished_at is not None


def test_a_job_resumed_after_an_interruption_completes(table: str) -> None:
    """A Spot task cut short, then a replacement finishing the rest: the job completed."""
    jid = job_id()
    first = Job(jid, total=TOTAL, sink=MemorySink(), job_table=table)
    first.processed(1000)
    first.close("interrupted")
    assert record(table, jid).status == job_table.STATUS_INTERRUPTED

    replacement = Job(jid, total=TOTAL, sink=MemorySink(), job_table=table)
    wait_for(lambda: record(table, jid).status == job_table.STATUS_RUNNING, "re-registration")
    replacement.processed(TOTAL - 1000)
    replacement.close("completed")
    rec = record(table, jid)
    assert (rec.done, rec.workers, rec.active_workers) == (TOTAL, 2, 0)
    assert rec.status == job_table.STATUS_COMPLETED


def test_a_resumed_job_that_stops_short_stays_interrupted(table: str) -> None:
    jid = job_id()
    first = Job(jid, total=TOTAL, sink=MemorySink(), job_table=table)
    first.processed(1000)
    first.close("interrupted")
    replacement = Job(jid, total=TOTAL, sink=MemorySink(), job_table=table)
    replacement.processed(1000)  # leaves half of the records undone
    replacement.close("completed")
    assert record(table, jid).status == job_table.STATUS_INTERRUPTED


def test_only_the_last_worker_out_of_a_completed_job_publishes_eta_zero(
    table: str, clock: Any
) -> None:
    jid = job_id()
    sinks = [MemorySink(), MemorySink()]
    first, last = (
        Job(jid, total=TOTAL, sink=sink, job_table=table, clock=clock, flush_interval=3600)
        for sink in sinks
    )
    wait_registered(first, last)
    for _ in range(3):
        first.processed(500)
        last.processed(500)
        clock.advance(10)
        first.flush()
        last.flush()
    first.close("completed")  # 3000 of 4000 done and a peer still running: time is left
    eta = sinks[0].last(catalog.ETA_SECONDS)
    assert eta is not None
    assert eta > 0
    last.processed(900)  # 100 rows failed: done stops short of the total
    last.failed(100)
    clock.advance(10)
    last.close("completed")
    assert sinks[1].last(catalog.ETA_SECONDS) == 0.0
    assert record(table, jid).status == job_table.STATUS_COMPLETED


def test_stale_jobs_are_those_running_without_a_recent_heartbeat(table: str) -> None:
    registry = JobRegistry(table)
    now = time.time()
    fresh, old, over = job_id(), job_id(), job_id()
    for jid, heartbeat, status in (
        (fresh, now - 10, "running"),
        (old, now - 3600, "running"),
        (over, now - 3600, "completed"),
    ):
        registry.update(
            jid,
            {
                job_table.ITEM_TYPE: job_table.TYPE_JOB,
                job_table.STATUS: status,
                job_table.STARTED_AT: now - 7200,
                job_table.HEARTBEAT_AT: heartbeat,
            },
            {},
            returns="NONE",
        )
    stale = {rec.job_id for rec in registry.stale_jobs(now=now, stale_after=600)}
    assert old in stale
    assert fresh not in stale
    assert over not in stale
    rec = registry.get(old)
    assert rec is not None
    assert is_stale(rec, now=now, stale_after=600)
    assert not rec.is_stale(now=now, stale_after=7200)


def test_a_malformed_job_item_is_skipped_by_jobs_and_refused_by_get(
    table: str, caplog: pytest.LogCaptureFixture
) -> None:
    registry = JobRegistry(table)
    good, bad = job_id(), job_id()
    base = {job_table.ITEM_TYPE: job_table.TYPE_JOB, job_table.STARTED_AT: time.time()}
    registry.update(good, {**base, job_table.STATUS: "running"}, {}, returns="NONE")
    registry.update(bad, {**base, job_table.STATUS: "running", job_table.DONE: "lots"}, {},
                    returns="NONE")  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="metricskit"):
        found = {rec.job_id for rec in registry.jobs()}
    assert good in found
    assert bad not in found
    assert f"skipped job item {bad!r}: done must be a number" in caplog.text
    with pytest.raises(InvalidJobItemError, match="done must be a number, got 'lots'"):
        registry.get(bad)


class Outage:
    """A botocore hook that fails every DynamoDB call while ``down`` is set."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.down = False
        self.refused = 0

    def __call__(self, request: Any, **_: Any) -> None:
        if self.down:
            from botocore.exceptions import ClientError, EndpointConnectionError

            self.refused += 1
            if self.kind == "unreachable":
                raise EndpointConnectionError(endpoint_url=request.url)
            error = {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}
            raise ClientError({"Error": error}, "UpdateItem")


@pytest.mark.parametrize("kind", ["unreachable", "throttled"])
def test_deltas_survive_an_outage_and_arrive_when_it_ends(
    table: str, kind: str, clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The longest wait full jitter allows, so the attempts below are deterministic.
    monkeypatch.setattr(backoff.random, "uniform", lambda low, high: high)
    outage = Outage(kind)
    client = boto3.client("dynamodb")
    client.meta.events.register("before-send.dynamodb", outage)
    registry = JobRegistry(table, client=client)
    jid = job_id()
    outage.down = True
    sink = MemorySink()
    job = Job(jid, total=10_000, sink=sink, registry=registry, clock=clock, flush_interval=60)
    registration = job.registration
    assert registration is not None
    wait_for(lambda: registration.failed_calls == 1, "the failed start-up registration")
    stage = job.stage("send")
    for _ in range(10):
        for _ in range(100):
            job.processed()  # never raises, never waits for DynamoDB
        stage.processed(2)
        job.failed()
        clock.advance(60)
        assert job.flush() is True  # the metrics still go out
    # Backoff after the k-th failure: min(5 intervals, 2^(k-1) intervals) = 60, 120, 240,
    # 300 s, so of the flushes at 60..600 s only those at 60, 120, 240 and 480 s call.
    assert (registration.failed_calls, registration.skipped_syncs) == (1 + 4, 6)
    assert outage.refused >= 5
    # Local progress while the table is away, for the job and its stage.
    job_done = [m.value for m in sink.metrics(catalog.RECORDS_DONE) if not m.key.dimension("Stage")]
    assert job_done[-1] == 1000
    assert sink.last(catalog.RECORDS_DONE, Stage="send") == 20

    outage.down = False
    job.processed(50)
    clock.advance(60)  # 660 s: still inside the backoff (next attempt at 780 s)
    job.flush()
    assert registry.get(jid) is None  # nothing was ever registered
    clock.advance(300)
    job.flush()
    rec = record(table, jid)
    assert (rec.done, rec.errors, rec.workers) == (1050, 10, 1)
    assert rec.stages_done == {"send": 20}
    # Two calls: the unanswered registration again, unchanged (it might have been applied),
    # then everything counted since.
    assert registration.successful_calls == 2
    job.close()
    assert record(table, jid).status == job_table.STATUS_COMPLETED


Hooks = TypeVar("Hooks")


def hooked_job(
    table: str, clock: Any, hooks: Callable[[Any], Hooks], *, total: float, sink: Any = None
) -> tuple[str, Job, Hooks]:
    """A registered job whose DynamoDB client carries ``hooks`` (built on that client)."""
    client = boto3.client("dynamodb")
    attached = hooks(client)
    jid = job_id()
    registry = JobRegistry(table, client=client)
    job = Job(jid, total=total, sink=sink or MemorySink(), registry=registry, clock=clock)
    wait_registered(job)
    return jid, job, attached


class LostAnswers:
    """Botocore hooks that make DynamoDB apply an UpdateItem and the worker not learn it."""

    def __init__(self, client: Any) -> None:
        self.lose_next = 0  # answers to lose after DynamoDB applied the update
        self.retry_next = 0  # applied updates botocore is told to send again at once
        client.meta.events.register("after-call.dynamodb.UpdateItem", self._lose)
        client.meta.events.register("needs-retry.dynamodb.UpdateItem", self._retry)

    def _lose(self, http_response: Any, **_: Any) -> None:
        if self.lose_next and http_response.status_code == 200:
            from botocore.exceptions import ReadTimeoutError

            self.lose_next -= 1
            raise ReadTimeoutError(endpoint_url="http://dynamodb")

    def _retry(self, response: Any, **_: Any) -> float | None:
        if self.retry_next and response is not None and response[0].status_code == 200:
            self.retry_next -= 1
            return 0.0  # as botocore does when a read times out after the table applied it
        return None


@pytest.mark.parametrize("where", ["worker", "botocore"])
def test_an_update_applied_without_an_answer_counts_once(
    table: str, clock: Any, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """Neither the worker's re-send nor botocore's retry of an applied update adds twice."""
    monkeypatch.setattr(backoff.random, "uniform", lambda low, high: high)
    sink = MemorySink()
    jid, job, lost = hooked_job(table, clock, LostAnswers, total=1000, sink=sink)
    job.processed(100)
    job.stage("read").processed(7)
    if where == "worker":
        lost.lose_next = 1
    else:
        lost.retry_next = 1
    clock.advance(60)
    job.flush()
    clock.advance(180)  # past the backoff after the failed call (worker case)
    job.processed(5)
    job.flush()
    rec = record(table, jid)
    assert (rec.done, rec.stages_done, rec.workers, rec.active_workers) == (105, {"read": 7}, 1, 1)
    # The last update too: the leaving worker is subtracted once, and the job completes.
    if where == "worker":
        lost.lose_next = 1
    else:
        lost.retry_next = 1
    assert job.close() is True
    rec = record(table, jid)
    assert (rec.done, rec.workers, rec.active_workers) == (105, 1, 0)
    assert rec.status == job_table.STATUS_COMPLETED
    # The refusal's item stood in for the lost answer: the last figures published are whole.
    job_wide = [m.value for m in sink.metrics(catalog.RECORDS_DONE) if not m.key.dimension("Stage")]
    assert job_wide[-1] == 105
    assert job.status().done == 105
    # A worker that finished within a minute of starting leaves a number no copy gets past.
    assert [is_tombstone(n) for n in sequence_numbers(table, jid)] == [True]


def test_a_lost_answer_to_the_final_status_still_reports_the_job_completed(
    table: str, clock: Any
) -> None:
    jid, job, lost = hooked_job(table, clock, LostAnswers, total=3)
    job.processed(3)
    lost.lose_next = 2  # the last update's answer, then the final status's
    assert job.close() is True
    assert job.registration is not None
    assert job.registration.job_status == job_table.STATUS_COMPLETED
    assert record(table, jid).status == job_table.STATUS_COMPLETED


def sequence_numbers(table: str, jid: str) -> list[float]:
    return list(sequence_attributes(table, jid).values())


def sequence_attributes(table: str, jid: str) -> dict[str, float]:
    raw = boto3.client("dynamodb").get_item(TableName=table, Key={"job_id": {"S": jid}})["Item"]
    return {k: float(v["N"]) for k, v in raw.items() if k.startswith(job_table.SEQUENCE_PREFIX)}


def is_tombstone(number: float) -> bool:
    """A finished worker's number: FINISHED_SEQUENCE plus the epoch second it was left at."""
    return abs(number - FINISHED_SEQUENCE - time.time()) < 3600


class Recorded:
    """Keeps every UpdateItem a client sends, to replay one later as a delayed copy."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.calls: list[dict[str, Any]] = []
        client.meta.events.register("provide-client-params.dynamodb.UpdateItem", self._keep)

    def _keep(self, params: dict[str, Any], **_: Any) -> None:
        self.calls.append(dict(params))

    def replay(self, index: int) -> str:
        from botocore.exceptions import ClientError

        try:
            boto3.client("dynamodb").update_item(**self.calls[index])
        except ClientError as error:
            return str(error.response["Error"]["Code"])
        return "applied"


@pytest.mark.parametrize("lived", ["briefly", "long"])
def test_a_late_copy_of_any_update_is_refused_after_the_worker_left(
    table: str, clock: Any, monkeypatch: pytest.MonkeyPatch, lived: str
) -> None:
    if lived == "long":  # long enough that no copy can still be on its way: the number goes
        monkeypatch.setattr(registry_module, "KEEP_SEQUENCE_SECONDS", 0.0)
    jid, job, sent = hooked_job(table, clock, Recorded, total=10)
    job.processed(4)
    clock.advance(60)
    job.flush()
    job.processed(6)
    assert job.close() is True
    numbers = sequence_numbers(table, jid)
    assert [is_tombstone(n) for n in numbers] == ([] if lived == "long" else [True])
    # Every copy is refused; once the number is gone (a worker that lived for over a minute,
    # when no copy of its first update can still be on its way) all but the first would be.
    for index in range(lived == "long", len(sent.calls)):
        assert sent.replay(index) == "ConditionalCheckFailedException"
    rec = record(table, jid)
    assert (rec.done, rec.workers, rec.active_workers, rec.status) == (10, 1, 0, "completed")


def test_expired_tombstones_are_removed_so_short_lived_workers_do_not_grow_the_item(
    table: str, clock: Any
) -> None:
    """Many workers that each live under a minute (a Lambda per file) each leave a tombstone;
    once no copy it guards against can arrive, the next worker's update removes it."""
    jid = job_id()
    now = int(time.time())
    expired = {f"seq#old{i:02d}": FINISHED_SEQUENCE + now - 3600 - i for i in range(30)}
    kept = {
        "seq#young": FINISHED_SEQUENCE + now - 30,  # a late copy could still arrive
        "seq#legacy": FINISHED_SEQUENCE,  # written before tombstones carried a time
        "seq#active": 7,  # a running (or killed) worker's number: never touched
    }
    boto3.client("dynamodb").put_item(
        TableName=table,
        Item={
            job_table.HASH_KEY: {"S": jid},
            job_table.ITEM_TYPE: {"S": job_table.TYPE_JOB},
            job_table.STARTED_AT: {"N": str(now - 7200)},
            job_table.STATUS: {"S": job_table.STATUS_RUNNING},
            **{name: {"N": str(n)} for name, n in {**expired, **kept}.items()},
        },
    )
    job = Job(jid, sink=MemorySink(), job_table=table, clock=clock)
    try:
        wait_registered(job)
        for _ in range(3):  # the registration's reply shows them; then 25 per update
            job.processed(1)
            clock.advance(10)
            job.flush()
        left = sequence_attributes(table, jid)
        assert not set(expired) & set(left)
        assert {name: left[name] for name in kept} == kept
    finally:
        job.close()
    assert record(table, jid).done == 3


def test_a_deleted_job_item_makes_the_worker_register_again(table: str, clock: Any) -> None:
    """A refusal is taken as "already applied" only when the item says so."""
    jid = job_id()
    job = Job(jid, total=100, sink=MemorySink(), job_table=table, clock=clock)
    registration = job.registration
    assert registration is not None
    wait_registered(job)
    job.processed(10)
    clock.advance(60)
    job.flush()
    boto3.client("dynamodb").delete_item(TableName=table, Key={"job_id": {"S": jid}})
    job.processed(20)
    clock.advance(60)
    job.flush()  # refused (no item): seen as not applied, the worker registers again
    assert registration.failed_calls == 1
    clock.advance(60)
    job.flush()
    rec = record(table, jid)
    # The new item has all that was not acknowledged; the first 10 went with the old one.
    assert (rec.done, rec.workers, rec.active_workers) == (20, 1, 1)
    job.close()
    assert record(table, jid).status == job_table.STATUS_COMPLETED


def test_unreachable_table_never_blocks_or_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    use_fake_aws(monkeypatch, UNREACHABLE_ENDPOINT)
    monkeypatch.setenv("METRICSKIT_JOB_TABLE", "jobs")
    sink = MemorySink()
    job = Job(job_id(), total=10, sink=sink, shutdown_timeout=5)
    for _ in range(10):
        job.processed()
    assert job.status().done == 10
    assert job.close() is False  # the registry could not be told; nothing raised
    assert sink.last(catalog.RECORDS_DONE) == 10


def test_hung_table_at_close_still_lets_the_metrics_out(table: str) -> None:
    release = threading.Event()
    hanging = threading.Event()

    def hang(**_: Any) -> None:
        if hanging.is_set():
            release.wait(30)  # a DynamoDB call that does not answer

    client = boto3.client("dynamodb")
    client.meta.events.register("before-send.dynamodb", hang)
    sink = MemorySink()
    jid = job_id()
    # The registry gets half the shutdown timeout, the metrics the rest: 10 s leaves the
    # drain ample time on a loaded machine, and the 30 s hang still outlasts the registry's.
    job = Job(
        jid, total=10, sink=sink, registry=JobRegistry(table, client=client), shutdown_timeout=10
    )
    wait_for(lambda: job.registration is not None and job.registration.registered, "register")
    job.processed(10)
    hanging.set()
    try:
        assert job.close() is False  # the registry did not answer in time
        assert sink.sum(catalog.RECORDS_PROCESSED) == 10  # but the metrics were delivered
        assert sink.last(catalog.RECORDS_DONE) == 10
    finally:
        hanging.clear()
        release.set()


def test_bad_registry_arguments_are_refused_before_anything_starts(table: str) -> None:
    import threading as th

    from metricskit.errors import ConfigurationError

    before = {t.name for t in th.enumerate()}
    with pytest.raises(ConfigurationError, match="hourly_rate"):
        Job(job_id(), sink=MemorySink(), job_table=table, hourly_rate=-1)
    with pytest.raises(ConfigurationError, match="compute_profile"):
        Job(job_id(), sink=MemorySink(), job_table=table, compute_profile="")
    with pytest.raises(ConfigurationError, match="job table"):
        Job(job_id(), sink=MemorySink(), job_table="x")
    started = {t.name for t in th.enumerate()} - before
    assert not [name for name in started if name.startswith("metricskit")]
    assert JobRegistry(table).jobs() == []  # nobody registered


def drive(recorder: Any, clock: Any, seconds: range, *, flush: Callable[[], Any]) -> None:
    """100 records a second, ``status()`` every second (as the progress bar), a flush a minute."""
    for second in seconds:
        clock.advance(1)
        recorder.processed(100)
        recorder.status()
        if second % 60 == 0:
            flush()


def assert_eta_close(recorder: Any, total: float) -> None:
    """The ETA of a worker doing 100 records a second alone: within 10 % of the truth."""
    status = recorder.status()
    true_left = (total - status.done) / 100
    assert status.eta_seconds is not None
    assert status.eta_seconds == pytest.approx(true_left, rel=0.1), status


def test_a_worker_joining_a_running_job_does_not_take_its_count_for_progress(
    table: str, clock: Any
) -> None:
    """Until its first reply a worker knows only its own count; when the job-wide one comes,
    the records others did before are not progress made since the last sample."""
    jid = job_id()
    earlier = Job(jid, total=1_000_000, sink=MemorySink(), job_table=table)
    earlier.processed(900_000)
    earlier.close("interrupted")
    outage = Outage("throttled")
    client = boto3.client("dynamodb")
    client.meta.events.register("before-send.dynamodb", outage)
    outage.down = True  # the start-up registration fails: the first reply comes with a flush
    job = Job(jid, total=1_000_000, sink=MemorySink(), registry=JobRegistry(table, client=client),
              clock=clock, flush_interval=3600)  # fmt: skip
    registration = job.registration
    assert registration is not None
    wait_for(lambda: registration.failed_calls == 1, "the failed start-up registration")
    try:
        job.status()  # this worker's own count so far: 0
        outage.down = False
        drive(job, clock, range(1, 121), flush=job.flush)
        assert job.status().done == 912_000
        assert_eta_close(job, 1_000_000)
    finally:
        job.close()


def test_a_stage_joining_a_running_job_does_not_take_its_count_for_progress(
    table: str, clock: Any
) -> None:
    """The same for a stage, whose job-wide count comes with the first flush that carries it."""
    jid = job_id()
    with Job(jid, sink=MemorySink(), job_table=table) as earlier:
        earlier.stage("read").processed(900_000)
    job = Job(jid, sink=MemorySink(), job_table=table, clock=clock, flush_interval=3600)
    try:
        wait_registered(job)
        read = job.stage("read", total=1_000_000)
        drive(read, clock, range(1, 121), flush=job.flush)
        assert read.status().done == 912_000
        assert_eta_close(read, 1_000_000)
    finally:
        job.close()


def test_a_worker_joining_a_failed_job_leaves_it_failed(table: str) -> None:
    """A failed worker fails the job for good: one registering later neither marks it running
    nor, leaving last, completed; its counts still go to the job."""
    jid = job_id()
    a = Job(jid, total=100, sink=MemorySink(), job_table=table)
    a.processed(10)
    a.close("failed")
    assert record(table, jid).status == job_table.STATUS_FAILED
    b = Job(jid, total=100, sink=MemorySink(), job_table=table)
    wait_registered(b)
    assert record(table, jid).status == job_table.STATUS_FAILED
    b.processed(40)
    assert b.close("completed") is True
    rec = record(table, jid)
    assert rec.status == job_table.STATUS_FAILED
    assert (rec.done, rec.workers, rec.active_workers, rec.failed_workers) == (50, 2, 0, 1)


class RefusedStatus:
    """A botocore hook that fails every status write (``SET #st = :st``), by name."""

    def __init__(self, client: Any) -> None:
        self.refused = 0
        client.meta.events.register("provide-client-params.dynamodb.UpdateItem", self._refuse)

    def _refuse(self, params: dict[str, Any], **_: Any) -> None:
        if params["UpdateExpression"].startswith("SET #st = :st"):
            from botocore.exceptions import EndpointConnectionError

            self.refused += 1
            raise EndpointConnectionError(endpoint_url="http://dynamodb")


def test_a_failure_whose_status_write_is_lost_still_fails_the_job(table: str) -> None:
    """The failed worker's last update counts it (``failed_workers``), so the last worker out
    fails the job even when the failed one could not set the status itself."""
    jid = job_id()
    client = boto3.client("dynamodb")
    refused = RefusedStatus(client)
    a = Job(jid, total=100, sink=MemorySink(), registry=JobRegistry(table, client=client))
    b = Job(jid, total=100, sink=MemorySink(), job_table=table)
    wait_registered(a, b)
    a.processed(10)
    assert a.close("failed") is False  # its status did not reach the table
    assert refused.refused == 2  # the write and its one retry
    assert record(table, jid).status == job_table.STATUS_RUNNING
    b.processed(90)
    b.close("completed")
    rec = record(table, jid)
    assert rec.status == job_table.STATUS_FAILED
    assert (rec.done, rec.failed_workers) == (100, 1)
    assert b.registration is not None
    assert b.registration.job_status == job_table.STATUS_FAILED


class BeforeStatusWrite:
    """Botocore hooks: run ``action`` just before the first status write (``SET #st = :st``)
    this client sends; ``written`` is set once an UpdateItem answered after that."""

    def __init__(self, client: Any, action: Callable[[], None]) -> None:
        self.action: Callable[[], None] | None = action
        self.written = threading.Event()
        self._armed = False
        client.meta.events.register("provide-client-params.dynamodb.UpdateItem", self._before)
        client.meta.events.register("after-call.dynamodb.UpdateItem", self._after)

    def _before(self, params: dict[str, Any], **_: Any) -> None:
        action, self.action = self.action, None
        if action is not None and params["UpdateExpression"].startswith("SET #st = :st"):
            action()
            self._armed = True
        elif action is not None:
            self.action = action

    def _after(self, **_: Any) -> None:
        if self._armed:
            self.written.set()


@pytest.mark.parametrize("joiner", ["stays", "leaves"])
def test_a_worker_joining_as_the_last_one_leaves_does_not_miss_the_final_status(
    table: str, joiner: str
) -> None:
    """Worker c registers between a's last update (no worker left active) and a's status write.
    c "stays": the job is not over, so a sets nothing and c sets the final status when it
    leaves. c "leaves" before a's write (its own status write comes after a's): still c's."""
    jid = job_id()
    joined = threading.Event()
    c_writes = threading.Event()
    box: dict[str, Any] = {}
    a_hooks: list[BeforeStatusWrite] = []

    def c_joins() -> None:
        client = boto3.client("dynamodb")
        # c's own status write waits until a's has been answered.
        BeforeStatusWrite(client, lambda: (c_writes.set(), a_hooks[0].written.wait(20)))
        c = box["c"] = Job(jid, total=100, sink=MemorySink(),
                           registry=JobRegistry(table, client=client))  # fmt: skip
        wait_registered(c)
        joined.set()
        if joiner == "leaves":
            c.processed(20)
            c.close("interrupted")

    def before_a_writes() -> None:
        box["thread"] = threading.Thread(target=c_joins, daemon=True)
        box["thread"].start()
        assert joined.wait(20)
        if joiner == "leaves":
            assert c_writes.wait(20)  # c left; its status write waits for a's

    client = boto3.client("dynamodb")
    a_hooks.append(BeforeStatusWrite(client, before_a_writes))
    a = Job(jid, total=100, sink=MemorySink(), registry=JobRegistry(table, client=client))
    wait_registered(a)
    a.processed(50)
    a.close("completed")
    if joiner == "stays":
        assert record(table, jid).status == job_table.STATUS_RUNNING  # c still runs
        box["c"].processed(20)
        box["c"].close("interrupted")
    box["thread"].join(20)
    assert box["c"].closed
    rec = record(table, jid)
    assert (rec.status, rec.active_workers, rec.done) == ("interrupted", 0, 70)
    assert a.registration is not None
    assert a.registration.job_status is None  # a was not the last one out after all


def test_every_worker_adopts_the_total_another_one_set(table: str, clock: Any) -> None:
    """The job item's total is the job's: a worker started with another (or none) publishes
    the job-wide percentage and ETA against the item's, as the dashboard's Maximum reads it."""
    jid = job_id()
    (a, _), (b, sink_b) = (worker(jid, table, clock, name) for name in "ab")
    c_sink = MemorySink()
    c = Job(jid, sink=c_sink, job_table=table, clock=clock)  # no total of its own
    try:
        wait_registered(a, b, c)
        a.set_total(4000)  # a learned the real total (a count that finished)
        for _ in range(5):  # 100 records a minute each; every worker sees the 3 of them
            for job in (a, b, c, a, b):
                job.flush()
            clock.advance(60)
            for job in (a, b, c):
                job.processed(100)
        for job in (a, b, c, a, b):
            job.flush()
        assert record(table, jid).total == 4000
        assert (a.total, b.total, c.total) == (4000, 4000, 4000)
        for job, sink in ((b, sink_b), (c, c_sink)):
            assert sink.last(catalog.RECORDS_TOTAL) == 4000
            assert sink.last(catalog.PROGRESS_PERCENTAGE) == 37.5  # 1500 of 4000
            eta = sink.last(catalog.ETA_SECONDS)
            assert eta == pytest.approx(2500 / 5, rel=0.1)  # 300 records a minute, job-wide
            assert job.status().percent == 37.5
    finally:
        for job in (a, b, c):
            job.close()


def test_a_total_not_yet_sent_is_not_undone_by_an_older_reply(table: str, clock: Any) -> None:
    """An update built before set_total() and sent again after it gets the item's old total
    back: the worker keeps its own until the update that carries it is answered."""
    outage = Outage("throttled")
    client = boto3.client("dynamodb")
    client.meta.events.register("before-send.dynamodb", outage)
    seen: list[float | None] = []
    jid = job_id()
    job = Job(jid, total=1000, sink=MemorySink(), registry=JobRegistry(table, client=client),
              clock=clock, flush_interval=60)  # fmt: skip
    try:
        wait_registered(job)
        # Only now: registered from __init__, the first answer could come before `job` is
        # bound, and the hook's NameError failed the registration until the next flush.
        client.meta.events.register(
            "after-call.dynamodb.UpdateItem", lambda **_: seen.append(job.total)
        )
        outage.down = True
        job.processed(10)
        clock.advance(60)
        job.flush()  # fails: the update stays in flight, unchanged
        job.set_total(4000)
        outage.down = False
        clock.advance(300)  # past the backoff
        seen.clear()
        job.flush()  # the update in flight (the item's total 1000 back), then the new one
        assert seen == [4000, 4000]  # as each answer came; the first was already read
        assert job.total == 4000
        assert record(table, jid).total == 4000
    finally:
        job.close()
