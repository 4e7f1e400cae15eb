"""The cost tracker reads items any worker can write (job items, the cost-cache item): what
one such item says must not reach another namespace, fail the run, widen every Cost Explorer
query, or break the request budget. Each case is skipped or ignored and reported."""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

import boto3
import pytest

from cost_tracker import cost_explorer as cex
from cost_tracker import handler as tracker
from metricskit import catalog
from metricskit import job_table as jt
from tests.functional.test_cost_tracker_handler import (
    HOUR,
    CountingCE,
    ce_page,
    make_runner,
    month_bounds,
    put_job,
    put_raw,
    queue_ce,
    unique_noon,
)

CACHE_KEY = {jt.HASH_KEY: {"S": jt.cost_cache_key(cex.CACHE_NAME)}}


def cache_item(table: str) -> dict[str, Any]:
    return boto3.client("dynamodb").get_item(TableName=table, Key=CACHE_KEY).get("Item", {})


def put_cache(table: str, **attributes: dict[str, str]) -> None:
    put_raw(table, {**CACHE_KEY, jt.ITEM_TYPE: {"S": jt.TYPE_COST_CACHE}, **attributes})


def test_a_job_item_naming_another_namespace_publishes_nothing_there(
    aws: str, table: str, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A worker held to its own namespace by IAM writes a job item naming another team's:
    the tracker, whose role may publish anywhere, must not launder figures into it."""
    now = unique_noon()
    put_job(table, "ours", status="running", namespace=namespace, started_at=now - HOUR,
            heartbeat_at=now - 30, worker_seconds=3600, hourly_rate=1.0)  # fmt: skip
    put_job(table, "no-namespace", status="running", started_at=now - HOUR,
            heartbeat_at=now - 30, worker_seconds=3600, hourly_rate=2.0)  # fmt: skip
    put_job(table, "victim-job-7", status="running", namespace="TeamB-Production",
            started_at=now - 2 * HOUR, heartbeat_at=now - HOUR, done=1, total=100,
            hourly_rate=1e100, worker_seconds=3600)  # fmt: skip
    queue_ce(aws, ce_page(*month_bounds(now), [("victim-job-7", "X", 5.0)]))
    with caplog.at_level(logging.WARNING, logger="cost_tracker"):
        report, sink = make_runner(table, CountingCE(), namespace)(now)
    assert {batch.namespace for batch in sink.batches} == {namespace}
    published = {dict(m.key.dimensions).get("JobId") for b in sink.batches for m in b.metrics}
    assert "victim-job-7" not in published
    assert sink.last(catalog.ESTIMATED_COST, JobId="ours") == pytest.approx(1.0)
    assert sink.last(catalog.ESTIMATED_COST, JobId="no-namespace") == pytest.approx(2.0)
    reasons = {entry["job_id"]: entry["reason"] for entry in report["skipped"]}
    assert "'TeamB-Production' is not the tracker's" in reasons["victim-job-7"]
    assert "skipped job item 'victim-job-7'" in caplog.text
    assert report["published_jobs"] == 2
    # Nor does it get an actual cost written on its item.
    item = boto3.client("dynamodb").get_item(
        TableName=table, Key={jt.HASH_KEY: {"S": "victim-job-7"}}
    )["Item"]
    assert jt.ACTUAL_COST_STATUS not in item


def test_a_job_item_on_another_item_kinds_key_is_skipped_and_reported(
    aws: str, table: str, namespace: str
) -> None:
    now = unique_noon()
    put_job(table, "checkpoint#victim#0/1", status="running", namespace=namespace,
            started_at=now - HOUR, heartbeat_at=now - 30, hourly_rate=1.0)  # fmt: skip
    queue_ce(aws, ce_page(*month_bounds(now), []))
    report, sink = make_runner(table, CountingCE(), namespace)(now)
    reasons = {entry["job_id"]: entry["reason"] for entry in report["skipped"]}
    assert "key prefix of another item kind" in reasons["checkpoint#victim#0/1"]
    assert sink.batches == []


@pytest.mark.parametrize(
    "payload",
    [
        '{"status": "ok", "fetched_at": 1, "job_costs": []}',
        '{"status": "ok", "fetched_at": 1, "monthly": {"T": "lots"}}',
        '{"status": "ok", "fetched_at": "soon"}',
        '{"status": "ok", "fetched_at": 1, "job_costs": {"a": NaN}}',
        '["not", "an", "object"]',
        "[" * 100_000,
        "not json",
    ],
)
def test_a_malformed_cost_cache_payload_is_no_cache_and_one_warning(
    aws: str, table: str, namespace: str, payload: str, caplog: pytest.LogCaptureFixture
) -> None:
    now = unique_noon()
    put_job(table, "train", status="running", namespace=namespace, started_at=now - HOUR,
            heartbeat_at=now - 30, worker_seconds=3600, hourly_rate=1.0)  # fmt: skip
    # Claimed an hour ago: not due, so the run reads the cache rather than refreshing.
    put_cache(table, **{jt.PAYLOAD: {"S": payload}, jt.FETCHED_AT: {"N": str(now - HOUR)}})
    with caplog.at_level(logging.WARNING, logger="cost_tracker"):
        report, sink = make_runner(table, CountingCE(), namespace)(now)
    assert caplog.text.count("ignoring an unreadable cost cache payload") == 1
    assert report["ce_status"] == "none"
    assert sink.last(catalog.ESTIMATED_COST, JobId="train") == pytest.approx(1.0)
    assert sink.last(catalog.ACTUAL_COST_AVAILABLE, JobId="train") == 0.0


def test_a_claim_that_is_not_a_number_is_due_and_taken(
    aws: str, table: str, namespace: str
) -> None:
    now = unique_noon()
    put_job(table, "train", status="running", namespace=namespace, started_at=now - HOUR,
            heartbeat_at=now - 30, worker_seconds=3600, hourly_rate=1.0)  # fmt: skip
    put_cache(table, **{jt.FETCHED_AT: {"S": "tomorrow"}})
    queue_ce(aws, ce_page(*month_bounds(now), [("train", "T", 0.5)]))
    ce = CountingCE()
    report, sink = make_runner(table, ce, namespace)(now)
    assert len(ce.requests) == 1
    assert report["ce_status"] == "ok"
    assert sink.last(catalog.ACTUAL_COST, JobId="train") == pytest.approx(0.5)


@pytest.mark.parametrize("used", ["1.5", "-1000"])
def test_an_unreadable_request_count_spends_nothing_until_the_next_day(
    aws: str, table: str, namespace: str, used: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A count that is not a non-negative integer could hide requests already sent (or, if
    believed, buy a thousand more): no request is sent that day; the next day counts anew."""
    now = unique_noon()
    put_job(table, "train", status="running", namespace=namespace, started_at=now - HOUR,
            heartbeat_at=now - 30, worker_seconds=3600, hourly_rate=1.0)  # fmt: skip
    today = cex._utc(now).date().isoformat()
    put_cache(table, **{jt.REQUESTS_DAY: {"S": today}, jt.REQUESTS_USED: {"N": used}})
    ce = CountingCE()
    with caplog.at_level(logging.WARNING, logger="cost_tracker"):
        report, sink = make_runner(table, ce, namespace)(now)
    assert ce.requests == []
    assert report["ce_error"] == cex.BUDGET_UNREADABLE
    assert "request count cannot be read" in caplog.text
    assert sink.last(catalog.ESTIMATED_COST, JobId="train") == pytest.approx(1.0)

    tomorrow = now + 24 * HOUR
    queue_ce(aws, ce_page(*month_bounds(tomorrow), [("train", "T", 0.5)]))
    report, _ = make_runner(table, ce, namespace)(tomorrow)
    assert len(ce.requests) == 1
    assert report["ce_status"] == "ok"
    assert cache_item(table)[jt.REQUESTS_USED]["N"] == "1"


def test_a_negative_request_count_buys_no_request_beyond_the_cap(aws: str, table: str) -> None:
    now = unique_noon()
    today = cex._utc(now).date().isoformat()
    put_cache(table, **{jt.REQUESTS_DAY: {"S": today}, jt.REQUESTS_USED: {"N": "-1000"}})
    cache = cex.CostCache(boto3.client("dynamodb"), table, refresh_hours=6)
    assert cache.take_request(now, limit=4) is False


@pytest.mark.parametrize("day", [{"S": "9999-12-31"}, {"N": "20260101"}])
def test_a_request_day_that_is_no_day_starts_a_new_count(
    aws: str, table: str, day: dict[str, str]
) -> None:
    now = unique_noon()
    put_cache(table, **{jt.REQUESTS_DAY: day, jt.REQUESTS_USED: {"N": "99"}})
    cache = cex.CostCache(boto3.client("dynamodb"), table, refresh_hours=6)
    assert cache.take_request(now, limit=4) is True
    item = cache_item(table)
    assert item[jt.REQUESTS_DAY] == {"S": cex._utc(now).date().isoformat()}
    assert item[jt.REQUESTS_USED] == {"N": "1"}


def test_a_bad_pages_figure_is_ignored_with_a_warning(
    aws: str, table: str, caplog: pytest.LogCaptureFixture
) -> None:
    put_cache(
        table, **{jt.REFRESH_PAGES: {"N": "2.5"}, jt.REFRESH_PAGES_SINCE: {"S": "2026-01-01"}}
    )
    cache = cex.CostCache(boto3.client("dynamodb"), table, refresh_hours=6)
    with caplog.at_level(logging.WARNING, logger="cost_tracker"):
        budget = cache.budget(unique_noon(), "2026-01-01")
    assert budget.pages_needed == 0
    assert not budget.unreadable
    assert "ignoring refresh_pages '2.5'" in caplog.text


def test_one_job_started_long_ago_does_not_widen_the_query_for_every_job(
    aws: str, table: str, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    now = unique_noon()
    put_job(table, "honest", status="running", namespace=namespace, started_at=now - HOUR,
            heartbeat_at=now - 30, worker_seconds=3600, hourly_rate=1.0)  # fmt: skip
    put_job(table, "epoch", status="running", namespace=namespace, started_at=0,
            heartbeat_at=now - 30, worker_seconds=3600, hourly_rate=1.0)  # fmt: skip
    ce = CountingCE()
    start = cex.earliest_start(now).isoformat()
    queue_ce(aws, ce_page(start, month_bounds(now)[1], [("honest", "T", 0.5)]))
    with caplog.at_level(logging.WARNING, logger="cost_tracker"):
        report, _ = make_runner(table, ce, namespace)(now)
    assert [r["TimePeriod"]["Start"] for r in ce.requests] == [start]
    assert start > "2024"  # a month or so back, not 1970 nor a year
    assert report["lookback_clamped_jobs"] == ["epoch"]
    assert "epoch started more than 31 days ago" in caplog.text
    assert report["ce_status"] == "ok"


@pytest.mark.parametrize(("setting", "days"), [("90", 90), ("400", 31), ("soon", 31)])
def test_the_lookback_is_configurable_within_cost_explorers_history(
    aws: str, table: str, namespace: str, caplog: pytest.LogCaptureFixture, setting: str, days: int
) -> None:
    """An account whose jobs run two months raises COST_TRACKER_CE_LOOKBACK_DAYS; a value
    past Cost Explorer's year of history, or no number, warns and keeps 31."""
    now = unique_noon()
    started = now - 60 * 24 * HOUR
    put_job(table, "long", status="running", namespace=namespace, started_at=started,
            heartbeat_at=now - 30, worker_seconds=3600, hourly_rate=1.0)  # fmt: skip
    ce = CountingCE()
    reached = days == 90  # 60 days back is within reach: the query starts at the job's start
    job_day = dt.datetime.fromtimestamp(started, tz=dt.UTC).date()
    start = (job_day if reached else cex.earliest_start(now, days)).isoformat()
    queue_ce(aws, ce_page(start, month_bounds(now)[1], [("long", "T", 0.5)]))
    with caplog.at_level(logging.WARNING):
        report, _ = make_runner(table, ce, namespace)(now, environ={cex.ENV_LOOKBACK_DAYS: setting})
    assert [r["TimePeriod"]["Start"] for r in ce.requests] == [start]
    if reached:
        assert report["lookback_clamped_jobs"] == []
    else:
        assert report["lookback_clamped_jobs"] == ["long"]
        assert cex.ENV_LOOKBACK_DAYS in caplog.text


def test_a_run_reports_on_at_most_max_jobs_per_run_the_most_recent_first(
    aws: str, table: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tracker, "MAX_JOBS_PER_RUN", 3)
    now = unique_noon()
    for i in range(5):
        put_job(table, f"job-{i}", status="running", namespace=namespace,
                started_at=now - HOUR, heartbeat_at=now - 60 * (i + 1), hourly_rate=1.0,
                worker_seconds=3600)  # fmt: skip
    put_job(table, "settling", status="completed", namespace=namespace,
            started_at=now - 50 * HOUR, finished_at=now - 48 * HOUR, hourly_rate=1.0)  # fmt: skip
    queue_ce(aws, ce_page(*month_bounds(now), []))
    report, sink = make_runner(table, CountingCE(), namespace)(now)
    assert report["published_jobs"] == 3
    over = {e["job_id"] for e in report["skipped"] if "MAX_JOBS_PER_RUN (3)" in e["reason"]}
    assert over == {"job-3", "job-4", "settling"}
    assert {dict(m.key.dimensions)["JobId"] for b in sink.batches for m in b.metrics} == {
        "job-0",
        "job-1",
        "job-2",
    }
    assert json.dumps(report)  # the Lambda's return value stays JSON
