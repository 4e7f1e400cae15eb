"""Finished jobs expire: the registry writes the table's TTL attribute with the final status.

moto stores ``expires_at`` but never deletes expired items, so these tests check the value
written (against a FakeClock) and that a job running again drops it; the Terraform tests
check that the module turns TTL on for that attribute.
"""

from __future__ import annotations

import math
import re
import uuid

import boto3
import pytest

from metricskit import Job, config, job_table
from metricskit.errors import ConfigurationError
from metricskit.job_table import SECONDS_PER_DAY
from metricskit.registry import JobRegistry
from metricskit.sinks.memory import MemorySink
from tests.conftest import FakeClock
from tests.helpers import wait_until


def _item(table: str, jid: str) -> dict[str, str]:
    """The job item's attributes as DynamoDB stores them (type descriptors stripped)."""
    raw = boto3.client("dynamodb").get_item(
        TableName=table, Key={job_table.HASH_KEY: {"S": jid}}, ConsistentRead=True
    )["Item"]
    return {name: next(iter(value.values())) for name, value in raw.items()}


def _run(table: str, clock: FakeClock, status: str, **job_kwargs: object) -> str:
    jid = f"job-{uuid.uuid4().hex[:10]}"
    job = Job(jid, sink=MemorySink(), job_table=table, clock=clock, flush_interval=3600,
              handle_sigterm=False, **job_kwargs)  # type: ignore[arg-type]  # fmt: skip
    registration = job.registration
    assert registration is not None
    assert wait_until(lambda: registration.registered)
    job.processed(7)
    clock.advance(5_000.25)  # a fractional end: the expiry rounds up to whole seconds
    assert job.close(status)  # type: ignore[arg-type]
    return jid


@pytest.mark.parametrize("status", ["completed", "failed", "interrupted"])
def test_a_finished_job_expires_the_retention_after_it_finished(
    table: str, clock: FakeClock, monkeypatch: pytest.MonkeyPatch, status: str
) -> None:
    monkeypatch.setenv(config.ENV_FINISHED_JOB_RETENTION_DAYS, "90")
    jid = _run(table, clock, status)
    item = _item(table, jid)
    assert item[job_table.STATUS] == status
    finished_at = float(item[job_table.FINISHED_AT])
    started_at = float(item[job_table.STARTED_AT])
    assert finished_at == pytest.approx(started_at + 5_000.25)  # the FakeClock's time
    assert int(item[job_table.EXPIRES_AT]) == math.ceil(finished_at + 90 * SECONDS_PER_DAY)


@pytest.mark.parametrize("value", [None, "0", "nonsense", "-3"])
def test_without_a_retention_a_finished_job_is_kept_forever(
    table: str, clock: FakeClock, monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is None:
        monkeypatch.delenv(config.ENV_FINISHED_JOB_RETENTION_DAYS, raising=False)
    else:
        monkeypatch.setenv(config.ENV_FINISHED_JOB_RETENTION_DAYS, value)
    item = _item(table, _run(table, clock, "completed"))
    assert item[job_table.STATUS] == "completed"
    assert job_table.EXPIRES_AT not in item


def test_the_registry_argument_overrides_the_variable(
    table: str, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(config.ENV_FINISHED_JOB_RETENTION_DAYS, "90")
    registry = JobRegistry(table, retention_days=7.5)
    item = _item(table, _run(table, clock, "completed", registry=registry))
    finished_at = float(item[job_table.FINISHED_AT])
    assert int(item[job_table.EXPIRES_AT]) == math.ceil(finished_at + 7.5 * SECONDS_PER_DAY)
    kept = _item(
        table, _run(table, clock, "completed", registry=JobRegistry(table, retention_days=0))
    )
    assert job_table.EXPIRES_AT not in kept


def test_a_job_running_again_does_not_expire_until_it_finishes_again(
    table: str, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(config.ENV_FINISHED_JOB_RETENTION_DAYS, "30")
    jid = _run(table, clock, "interrupted")
    assert job_table.EXPIRES_AT in _item(table, jid)
    again = Job(jid, sink=MemorySink(), job_table=table, clock=clock, flush_interval=3600,
                handle_sigterm=False)  # fmt: skip
    registration = again.registration
    assert registration is not None
    assert wait_until(lambda: registration.registered)
    running = _item(table, jid)
    assert running[job_table.STATUS] == "running"
    assert job_table.EXPIRES_AT not in running  # TTL must not delete a job while it runs
    clock.advance(100)
    assert again.close("completed")
    finished = _item(table, jid)
    finished_at = float(finished[job_table.FINISHED_AT])
    assert int(finished[job_table.EXPIRES_AT]) == math.ceil(finished_at + 30 * SECONDS_PER_DAY)


def test_a_worker_joining_a_failed_job_keeps_its_expiry(
    table: str, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed job stays failed (no later status write), so its expiry must stay too."""
    monkeypatch.setenv(config.ENV_FINISHED_JOB_RETENTION_DAYS, "30")
    jid = _run(table, clock, "failed")
    expiry = _item(table, jid)[job_table.EXPIRES_AT]
    late = Job(jid, sink=MemorySink(), job_table=table, clock=clock, flush_interval=3600,
               handle_sigterm=False)  # fmt: skip
    registration = late.registration
    assert registration is not None
    assert wait_until(lambda: registration.registered)
    item = _item(table, jid)
    assert (item[job_table.STATUS], item[job_table.EXPIRES_AT]) == ("failed", expiry)
    late.close("completed")


@pytest.mark.parametrize("days", [-1, 36_501, float("nan"), True, "90"])
def test_a_retention_outside_0_to_36500_days_is_refused(days: object) -> None:
    with pytest.raises(ConfigurationError, match=re.escape("from 0 (keep forever) to 36500")):
        JobRegistry("metricskit-jobs", client=object(), retention_days=days)  # type: ignore[arg-type]
