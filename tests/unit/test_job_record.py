"""The one decoder of job items, shared by the registry, the CLI and the cost tracker."""

from __future__ import annotations

from decimal import Decimal

import pytest

from metricskit.job_record import (
    InvalidJobItemError,
    JobRecord,
    deserialize_item,
    parse_job_item,
)
from metricskit.registry import final_status


def test_job_items_are_checked_field_by_field() -> None:
    good = {"job_id": "j", "status": "running", "started_at": Decimal("10"), "done": Decimal(5)}
    record = parse_job_item(good)
    assert record.done == 5.0
    assert record.total is None
    assert record.running
    for bad, message in [
        ({**good, "job_id": ""}, "job_id"),
        ({**good, "status": "paused"}, "status 'paused'"),
        ({k: v for k, v in good.items() if k != "started_at"}, "started_at is missing"),
        ({**good, "total": "lots"}, "total must be a number"),
        ({**good, "hourly_rate": Decimal("-1")}, "hourly_rate must be a finite number"),
        ({**good, "compute_profile": Decimal(3)}, "compute_profile must be a string"),
        ({**good, "status": "failed"}, "neither finished_at nor heartbeat_at"),
    ]:
        with pytest.raises(InvalidJobItemError, match=message):
            parse_job_item(bad)


def test_stage_counts_decode_by_stage_name() -> None:
    item = {
        "job_id": "j",
        "status": "running",
        "started_at": Decimal(1),
        "stage_done#read": Decimal(40),
        "stage_done#llm pass #2": Decimal("2.5"),  # a stage name may hold the separator
    }
    assert parse_job_item(item).stages_done == {"read": 40.0, "llm pass #2": 2.5}
    assert parse_job_item({**item, "stage_done#read": None}).stages_done["read"] == 0.0
    with pytest.raises(InvalidJobItemError, match="stage_done#read must be a number"):
        parse_job_item({**item, "stage_done#read": "forty"})
    with pytest.raises(InvalidJobItemError, match="stage_done#read must be a finite number"):
        parse_job_item({**item, "stage_done#read": Decimal(-1)})


def test_low_level_items_decode_to_the_same_record() -> None:
    raw = {
        "job_id": {"S": "j"},
        "status": {"S": "completed"},
        "started_at": {"N": "10"},
        "finished_at": {"N": "70.5"},
        "done": {"N": "100"},
        "total": {"N": "100"},
        "workers": {"N": "2"},
        "active_workers": {"N": "0"},
        "interrupted_workers": {"N": "1"},
        "compute_profile": {"S": "fargate:1vcpu:2gb"},
    }
    record = parse_job_item(deserialize_item(raw))
    assert record == JobRecord(
        "j",
        "completed",
        started_at=10.0,
        finished_at=70.5,
        done=100.0,
        total=100.0,
        workers=2,
        active_workers=0,
        interrupted_workers=1,
        compute_profile="fargate:1vcpu:2gb",
    )
    assert record.ended_at == 70.5
    assert record.worker_seconds is None  # absent: "no figure", not zero
    assert final_status("completed", record) == "completed"  # the resumed share finished it


def test_a_resumed_job_whose_records_are_all_done_or_errors_completes() -> None:
    """Malformed rows are errors, never done: a resumed share that handled every row must
    still complete the job, or any bad row would leave it interrupted for good."""
    item = {
        "job_id": "j",
        "status": "running",
        "started_at": 1,
        "total": 20_000,
        "interrupted_workers": 1,
    }
    handled = parse_job_item({**item, "done": 19_997, "errors": 3})
    short = parse_job_item({**item, "done": 19_990, "errors": 3})
    assert final_status("completed", handled) == "completed"
    assert final_status("completed", short) == "interrupted"


def test_a_failed_worker_fails_the_job_whatever_the_last_one_out_did() -> None:
    item = {"job_id": "j", "status": "running", "started_at": 1, "done": 10, "total": 10}
    assert parse_job_item(item).failed_workers == 0
    record = parse_job_item({**item, "failed_workers": Decimal(1)})
    assert record.failed_workers == 1
    for closing in ("completed", "interrupted", "failed"):
        assert final_status(closing, record) == "failed"


def test_a_worker_count_below_zero_still_decodes_as_none_active() -> None:
    item = {"job_id": "j", "status": "running", "started_at": 1, "active_workers": Decimal(-1)}
    assert parse_job_item(item).active_workers == -1
    with pytest.raises(InvalidJobItemError, match="active_workers must be a finite number, got"):
        parse_job_item({**item, "active_workers": Decimal("NaN")})


def test_something_that_is_not_a_dynamodb_item_is_a_typed_error() -> None:
    with pytest.raises(InvalidJobItemError, match="not a DynamoDB item"):
        deserialize_item({"job_id": {"Q": "j"}})
    with pytest.raises(InvalidJobItemError, match="not a DynamoDB item"):
        deserialize_item({"job_id": "plain"})


def test_staleness_counts_from_the_last_heartbeat_else_the_start() -> None:
    running = JobRecord("j", "running", started_at=0.0)
    assert running.is_stale(now=601.0)
    assert not running.is_stale(now=599.0)
    beating = JobRecord("j", "running", started_at=0.0, heartbeat_at=500.0)
    assert not beating.is_stale(now=601.0)
    assert not JobRecord("j", "completed", started_at=0.0, finished_at=1.0).is_stale(now=1e9)
