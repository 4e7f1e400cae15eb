"""A forked child's progress: what it publishes as RecordsDone is what its status() says.

Without a job table, a child continues from the count its parent had at the fork (records
its parent flushed or not), plus what it does itself; its RecordsProcessed stays its own.
The child once published the parent's count as of the parent's last flush instead, while
status() said the count at the fork, and fed its ETA estimator both in turn.
"""

from __future__ import annotations

import json
import os

import pytest

import metricskit
from metricskit import catalog
from metricskit.sinks.memory import MemorySink
from tests.conftest import FakeClock

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")


def _own(sink: MemorySink, name: str, stage: str | None = None) -> list[float]:
    """Every value of ``name`` published for the job (or ``stage``), oldest first."""
    return [m.value for m in sink.metrics(name) if m.key.dimension(catalog.STAGE) == stage]


def _in_child(job: metricskit.Job, sink: MemorySink, clock: FakeClock) -> dict[str, object]:
    """Fork; in the child record, flush and report; in the parent return the report."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            sink.clear()  # the child's copy: keep only what the child publishes
            stage = job.stage("load")
            for _ in range(7):
                job.processed()
            stage.processed(3)
            clock.advance(10)
            assert job.flush()
            first = {"job": job.status().done, "stage": stage.status().done}
            job.processed(10)
            clock.advance(10)
            assert job.flush()
            report = {
                "done": _own(sink, catalog.RECORDS_DONE),
                "processed": sum(_own(sink, catalog.RECORDS_PROCESSED)),
                "stage_done": _own(sink, catalog.RECORDS_DONE, "load"),
                "status_after_first_flush": first,
                "status_done": job.status().done,
                "percent": _own(sink, catalog.PROGRESS_PERCENTAGE),
                "rate": job.status().rate,
            }
            os.write(write_end, json.dumps(report).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        text = pipe.read()
    os.waitpid(pid, 0)
    assert text, "the child reported nothing (it failed before writing its report)"
    report: dict[str, object] = json.loads(text)
    return report


def test_a_forked_childs_records_done_continues_from_its_parents_count_at_the_fork(
    clock: FakeClock,
) -> None:
    sink = MemorySink()
    job = metricskit.Job(
        "forked", namespace="Test", sink=sink, clock=clock, flush_interval=3600, total=1000
    )
    stage = job.stage("load")
    job.processed(100)
    stage.processed(20)
    clock.advance(60)
    assert job.flush()  # the parent's last flush before the fork: done 100, stage 20
    job.processed(50)  # recorded, not yet flushed, at the fork
    stage.processed(5)
    child = _in_child(job, sink, clock)
    assert child["status_after_first_flush"] == {"job": 157, "stage": 28}
    assert child["done"] == [157, 167]  # was [107, 117]: the parent's last flush + the child's
    assert child["status_done"] == 167
    assert child["stage_done"] == [28, 28]  # was [23, 23]
    assert child["percent"] == [15.7, 16.7]
    assert child["processed"] == 17  # RecordsProcessed stays the child's own delta
    # One count fed to the estimator, not two alternating ones: 10 records in 10 s.
    assert child["rate"] == pytest.approx(1.0)
    # The parent goes on with its own count, and publishes the 50 it had not flushed.
    clock.advance(60)
    assert job.flush()
    assert _own(sink, catalog.RECORDS_DONE)[-1] == 150
    assert sum(_own(sink, catalog.RECORDS_PROCESSED)) == 150
    job.close()


def test_a_job_that_fails_its_fork_reset_does_not_stop_the_others_being_reset(
    clock: FakeClock,
) -> None:
    """The at-fork hook resets every live job in turn: one job whose reset raised (here its
    clock, read during the reset) left every job after it with the parent's unflushed counts,
    which the child then published a second time."""
    broken_clock = FakeClock()
    broken = metricskit.Job("broken", sink=MemorySink(), clock=broken_clock, flush_interval=3600)
    sink = MemorySink()
    job = metricskit.Job("healthy", sink=sink, clock=clock, flush_interval=3600)
    job.processed(100)  # the parent's, unflushed at the fork

    def raising() -> float:
        raise RuntimeError("clock gone")

    broken.clock = raising  # type: ignore[method-assign]
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            job.processed(1)
            job.flush()
            os.write(write_end, json.dumps(sink.sum(catalog.RECORDS_PROCESSED)).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as report:
        child_published = json.loads(report.read())
    os.waitpid(pid, 0)
    broken.clock = broken_clock  # type: ignore[method-assign]
    broken.close()
    assert job.flush()
    job.close()
    assert child_published == 1
    assert sink.sum(catalog.RECORDS_PROCESSED) == 100
