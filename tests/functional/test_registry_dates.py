"""The job item's heartbeat and end follow the wall clock after a suspension, like the batches.

A worker resumed from hibernation whose heartbeat stayed hours behind would look stale to
``metricskit jobs``, ``JobRegistry.stale_jobs()`` and the cost tracker while it runs.
"""

from __future__ import annotations

import time
import uuid

import pytest

from metricskit import Job, job_table
from metricskit.registry import JobRegistry
from metricskit.sinks.memory import MemorySink
from tests.helpers import wait_until

HOUR = 3600.0


def test_heartbeat_and_finished_at_follow_the_wall_clock_after_a_suspension(
    table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    jid = f"job-{uuid.uuid4().hex[:10]}"
    job = Job(jid, sink=MemorySink(), job_table=table, flush_interval=3600, handle_sigterm=False)
    registration = job.registration
    assert registration is not None
    assert wait_until(lambda: registration.registered)
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 3 * HOUR)  # resumed 3 h later
    job.processed(3)
    earliest = time.time()
    assert job.flush()
    latest = time.time()
    record = JobRegistry(table).get(jid)
    assert record is not None
    assert record.heartbeat_at is not None
    assert earliest <= record.heartbeat_at <= latest
    assert record.done == 3
    assert job.close()
    record = JobRegistry(table).get(jid)
    assert record is not None
    assert record.finished_at is not None
    assert record.status == job_table.STATUS_COMPLETED
    assert latest <= record.finished_at <= time.time()
