"""Job ids never collide with the keys of the job table's other item kinds: ``Job`` refuses
them with a typed error saying what is allowed, and the shared decoder skips a job item
written on such a key (so the registry, ``metricskit jobs`` and the cost tracker ignore it)."""

from __future__ import annotations

from decimal import Decimal

import pytest

import metricskit
from metricskit import job_table as jt
from metricskit.errors import InvalidDimensionError
from metricskit.job_record import InvalidJobItemError, parse_job_item
from metricskit.validation import check_job_id


@pytest.mark.parametrize(
    "job_id",
    [
        "linecount#s3://b/g.csv",
        "csvrecords#/data/in.csv",
        "checkpoint#victim#0/1",
        "costcache#cost-explorer",
    ],
)
def test_job_refuses_an_id_with_another_item_kinds_key_prefix(job_id: str) -> None:
    with pytest.raises(InvalidDimensionError, match="key prefix of another item kind") as info:
        metricskit.Job(job_id, sink="off", handle_sigterm=False)
    for prefix in jt.RESERVED_KEY_PREFIXES:
        assert repr(prefix) in str(info.value)  # the message lists what is not allowed


def test_every_item_kinds_key_helper_makes_a_reserved_key() -> None:
    keys = [
        jt.linecount_key("s3://b/k"),
        jt.csvrecords_key("s3://b/k"),
        jt.checkpoint_key("job", "0/1"),
        jt.cost_cache_key("cost-explorer"),
    ]
    assert [jt.reserved_prefix(key) is not None for key in keys] == [True] * 4
    assert len(set(map(jt.reserved_prefix, keys))) == len(jt.RESERVED_KEY_PREFIXES)


def test_ids_that_only_contain_or_resemble_a_prefix_stay_valid() -> None:
    for job_id in ["nightly#1", "my-checkpoint#3", "LINECOUNT#x", "costcache", "a linecount#b"]:
        assert check_job_id(job_id) == job_id
        metricskit.Job(job_id, sink="off", handle_sigterm=False).close()


def test_a_job_item_on_a_reserved_key_is_rejected_by_the_decoder() -> None:
    item = {"job_id": "checkpoint#victim#0/1", "status": "running", "started_at": Decimal(1)}
    with pytest.raises(InvalidJobItemError, match=r"'checkpoint#'.*item_type is 'job'"):
        parse_job_item(item)
    assert parse_job_item({**item, "job_id": "victim"}).job_id == "victim"


def test_a_worker_registration_made_directly_refuses_a_reserved_id_too() -> None:
    """Code that registers through JobRegistry without a Job gets the same refusal."""
    from metricskit.registry import JobRegistry, WorkerRegistration

    registry = JobRegistry("jobs", client=object())  # type: ignore[arg-type]  # never called
    with pytest.raises(InvalidDimensionError, match="key prefix of another item kind"):
        WorkerRegistration(
            registry, "checkpoint#victim#0/1", namespace="N", total=None, started_at=0.0,
            compute_profile=None, hourly_rate=None, monotonic_now=0.0,
        )  # fmt: skip
