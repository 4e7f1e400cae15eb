"""A bad close(status) never reaches the job table: the item stays readable and listed."""

from __future__ import annotations

import uuid

import pytest

from metricskit import Job, job_table
from metricskit.errors import ConfigurationError
from metricskit.registry import JobRegistry
from metricskit.sinks.memory import MemorySink


def test_a_bad_close_status_is_refused_and_the_job_item_stays_valid(table: str) -> None:
    jid = f"job-{uuid.uuid4().hex[:10]}"
    job = Job(jid, sink=MemorySink(), job_table=table, flush_interval=3600, handle_sigterm=False)
    job.processed(5)
    with pytest.raises(ConfigurationError, match="completed, failed, interrupted"):
        job.close("bogus")  # type: ignore[arg-type]
    assert job.close("interrupted")
    registry = JobRegistry(table)
    record = registry.get(jid)  # raised InvalidJobItemError when 'bogus' was written
    assert record is not None
    assert record.status == job_table.STATUS_INTERRUPTED
    assert record.done == 5
    assert jid in [r.job_id for r in registry.jobs()]


def test_set_status_refuses_a_status_the_table_does_not_know(table: str) -> None:
    jid = f"job-{uuid.uuid4().hex[:10]}"
    with Job(jid, sink=MemorySink(), job_table=table, handle_sigterm=False):
        pass
    registry = JobRegistry(table)
    with pytest.raises(ConfigurationError, match="completed, failed, interrupted, running"):
        registry.set_status(jid, "done", 0.0, only_if=None)
    record = registry.get(jid)
    assert record is not None
    assert record.status == job_table.STATUS_COMPLETED
