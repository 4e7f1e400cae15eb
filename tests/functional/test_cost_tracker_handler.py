"""The cost tracker Lambda, run in-process against the moto server.

Cost Explorer answers come from moto's queue (``/moto-api/static/ce/cost-and-usage-results``);
what moto cannot check (how many requests were made, what they asked for) is checked against
the requests captured by a botocore event hook on the client. Moto answers a repeated,
byte-identical request with its earlier answer, so every test uses its own day.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import json
import logging
import urllib.request
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError, ReadTimeoutError

from cost_tracker import cost_explorer as cex
from cost_tracker import handler as tracker
from cost_tracker.cost_explorer import CACHE_NAME, CostCache
from cost_tracker.pricing import PriceTable
from metricskit import catalog
from metricskit import job_table as jt
from metricskit.sinks.memory import MemorySink

HOUR = 3600.0
_days = itertools.count()


def unique_noon() -> float:
    """Noon of a day no other test in this module uses (moto caches answers by request)."""
    day = dt.datetime(2025, 1, 2, 12, tzinfo=dt.UTC) + dt.timedelta(days=2 * next(_days))
    return day.timestamp()


@pytest.fixture(autouse=True)
def _empty_cost_explorer_queue() -> Iterator[None]:
    """Answers a test queued but did not use (it failed first) must not reach the next test:
    moto's queue lives as long as the server."""
    yield
    from moto.ce.models import ce_backends

    for account in list(ce_backends.keys()):
        for backend in list(ce_backends[account].values()):
            backend.cost_usage_results_queue.clear()


def queue_ce(endpoint: str, *results: dict[str, Any]) -> None:
    body = json.dumps({"results": list(results)}).encode()
    request = urllib.request.Request(
        f"{endpoint}/moto-api/static/ce/cost-and-usage-results",
        data=body,
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request) as response:
        assert response.status == 201


def ce_page(
    start: str, end: str, groups: list[tuple[str, str, float]], token: str | None = None
) -> dict[str, Any]:
    page: dict[str, Any] = {
        "ResultsByTime": [
            {
                "TimePeriod": {"Start": start, "End": end},
                "Total": {},
                "Groups": [
                    {
                        "Keys": [f"JobId${job}", f"CostCategory${category}"],
                        "Metrics": {"UnblendedCost": {"Amount": str(amount), "Unit": "USD"}},
                    }
                    for job, category, amount in groups
                ],
                "Estimated": True,
            }
        ],
        "DimensionValueAttributes": [],
    }
    if token:
        page["NextPageToken"] = token
    return page


class _Body:
    """The raw body of a scripted HTTP answer, as botocore reads it."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.data


class CountingCE:
    """A Cost Explorer client built as the tracker builds its own (:func:`cex.ce_client`),
    whose GetCostAndUsage requests are captured as they are sent over HTTP.

    The hook is botocore's ``before-send``: it fires once per attempt, so a request botocore
    sends again (after a read timeout, a 5xx, throttling) is counted as the paid request it
    is. Inside :meth:`scripted` the answers come from the script (:meth:`answer`,
    :meth:`fail`, :meth:`break_send`) in place of moto's, and a request with nothing
    scripted fails the test; outside it, requests go to moto.
    """

    def __init__(self) -> None:
        self.client = cex.ce_client()
        self.requests: list[dict[str, Any]] = []
        self._script: deque[tuple[int, dict[str, Any]] | Exception] = deque()
        self._strict = False
        self.client.meta.events.register("before-send.ce.GetCostAndUsage", self._send)

    @contextlib.contextmanager
    def scripted(self) -> Iterator[CountingCE]:
        self._strict = True
        try:
            yield self
        finally:
            self._strict = False

    def answer(self, page: dict[str, Any]) -> None:
        """The next request is answered with ``page`` (a GetCostAndUsage response)."""
        self._script.append((200, page))

    def fail(self, code: str, status: int = 400) -> None:
        """The next request is answered with the error ``code`` (HTTP ``status``)."""
        self._script.append((status, {"__type": code, "message": f"scripted {code}"}))

    def break_send(self, error: Exception) -> None:
        """The next send raises ``error`` (a read timeout, say) instead of being answered."""
        self._script.append(error)

    def assert_answered(self) -> None:
        assert not self._script, f"{len(self._script)} scripted answers were never asked for"

    def _send(self, request: Any, **_: Any) -> AWSResponse | None:
        self.requests.append(json.loads(request.body))
        if not self._script:
            if self._strict:
                raise AssertionError("a GetCostAndUsage request that nothing was scripted for")
            return None  # on to moto
        scripted = self._script.popleft()
        if isinstance(scripted, Exception):
            raise scripted
        status, body = scripted
        headers = {"Content-Type": "application/x-amz-json-1.1", "x-amzn-RequestId": "scripted"}
        return AWSResponse(request.url, status, headers, _Body(json.dumps(body).encode()))


@pytest.fixture
def table(aws: str) -> Iterator[str]:
    client = boto3.client("dynamodb")
    name = f"jobs-{uuid.uuid4().hex[:10]}"
    jt.create_table(client, name)
    yield name
    client.delete_table(TableName=name)


def put_job(table: str, job_id: str, **attributes: object) -> None:
    item: dict[str, Any] = {jt.HASH_KEY: {"S": job_id}, jt.ITEM_TYPE: {"S": jt.TYPE_JOB}}
    for name, value in attributes.items():
        if isinstance(value, str):
            item[name] = {"S": value}
        else:
            item[name] = {"N": repr(value)}
    boto3.client("dynamodb").put_item(TableName=table, Item=item)


def put_raw(table: str, item: dict[str, Any]) -> None:
    boto3.client("dynamodb").put_item(TableName=table, Item=item)


def job_item(table: str, job_id: str) -> dict[str, Any]:
    return boto3.client("dynamodb").get_item(TableName=table, Key={jt.HASH_KEY: {"S": job_id}})[
        "Item"
    ]


def make_runner(
    table: str, ce: CountingCE | Any, namespace: str
) -> Callable[..., tuple[dict[str, Any], MemorySink]]:
    def run(now: float, **kwargs: Any) -> tuple[dict[str, Any], MemorySink]:
        """One run of the event at ``now``, on time (the real clock at ``now``) unless a
        ``clock`` is given."""
        sink = MemorySink()
        client = ce.client if isinstance(ce, CountingCE) else ce
        kwargs.setdefault("clock", lambda: now)
        report = tracker.run(
            {"time": dt.datetime.fromtimestamp(now, tz=dt.UTC).isoformat()},
            table=table,
            ce_client=client,
            sink=sink,
            environ={"METRICSKIT_NAMESPACE": namespace, **kwargs.pop("environ", {})},
            **kwargs,
        )
        return report, sink

    return run


def seed_jobs(table: str, now: float, namespace: str) -> None:
    put_job(
        table,
        "train-1",
        status=jt.STATUS_RUNNING,
        namespace=namespace,
        started_at=now - 3 * HOUR,
        heartbeat_at=now - 30,
        worker_seconds=7200,
        workers=1,
        done=2_000_000,
        total=10_000_000,
        compute_profile="fargate:4vcpu:8gb",
    )
    put_job(
        table,
        "infer-2",
        status=jt.STATUS_COMPLETED,
        namespace=namespace,
        started_at=now - 4 * HOUR,
        finished_at=now - 2 * HOUR,
        worker_seconds=3600,
        done=600_000,
        compute_profile="ec2-spot:g4dn.xlarge",
        hourly_rate=0.3,
    )
    put_job(
        table,
        "stale-3",
        status=jt.STATUS_RUNNING,
        namespace=namespace,
        started_at=now - 4 * HOUR,
        heartbeat_at=now - 1 * HOUR,
        workers=2,
        done=500,
        total=1000,
        compute_profile="ec2:g5.xlarge",
    )
    put_job(
        table,
        "old-4",
        status=jt.STATUS_COMPLETED,
        namespace=namespace,
        started_at=now - 80 * HOUR,
        finished_at=now - 72 * HOUR,
        worker_seconds=3600,
        compute_profile="ec2:g5.xlarge",
    )
    put_job(
        table,
        "tpu-5",
        status=jt.STATUS_RUNNING,
        namespace=namespace,
        started_at=now - HOUR,
        heartbeat_at=now - 10,
        worker_seconds=3600,
        done=10,
        compute_profile="tpu:v4",
    )
    put_raw(
        table,
        {
            jt.HASH_KEY: {"S": jt.linecount_key("s3://b/k.csv")},
            jt.ITEM_TYPE: {"S": jt.TYPE_LINECOUNT},
            jt.LINES: {"N": "100"},
        },
    )


def month_bounds(now: float) -> tuple[str, str]:
    day = dt.datetime.fromtimestamp(now, tz=dt.UTC).date()
    return day.replace(day=1).isoformat(), (day + dt.timedelta(days=1)).isoformat()


def seeded_tracker(
    endpoint: str, table: str, namespace: str, groups: list[tuple[str, str, float]]
) -> tuple[float, CountingCE, Callable[..., tuple[dict[str, Any], MemorySink]]]:
    """A day no other test uses, the standard jobs, Cost Explorer's answer for this month
    (``groups``) queued, and a runner whose requests are counted."""
    now = unique_noon()
    seed_jobs(table, now, namespace)
    queue_ce(endpoint, ce_page(*month_bounds(now), groups))
    ce = CountingCE()
    return now, ce, make_runner(table, ce, namespace)


def test_publishes_every_cost_metric_with_the_expected_values(
    aws: str, table: str, namespace: str
) -> None:
    now = unique_noon()
    seed_jobs(table, now, namespace)
    start, end = month_bounds(now)
    queue_ce(
        aws,
        ce_page(
            start,
            end,
            [("train-1", "Training", 0.5), ("", "Storage", 12.25), ("other", "Training", 3.0)],
            token="page-2",
        ),
        ce_page(start, end, [("", "Inference", 7.5)]),
    )
    ce = CountingCE()
    report, sink = make_runner(table, ce, namespace)(now)

    # One logical query, two pages, grouped by both tags: every job answered at once, from
    # the start of old-4, which ended three days ago and whose cost may still be settling.
    assert len(ce.requests) == 2
    first = ce.requests[0]
    old_start = dt.datetime.fromtimestamp(now - 80 * HOUR, tz=dt.UTC).date().isoformat()
    assert first["TimePeriod"] == {"Start": min(start, old_start), "End": end}
    assert first["Metrics"] == ["UnblendedCost"]
    assert first["GroupBy"] == [
        {"Type": "TAG", "Key": "JobId"},
        {"Type": "TAG", "Key": "CostCategory"},
    ]
    assert ce.requests[1]["NextPageToken"] == "page-2"
    assert report["ce_requests"] == 2
    assert report["ce_status"] == "ok"

    fargate_rate = 4 * 0.04048 + 8 * 0.004445
    assert sink.last(catalog.ESTIMATED_COST, JobId="train-1") == pytest.approx(2 * fargate_rate)
    assert sink.last(catalog.ACTUAL_COST, JobId="train-1") == pytest.approx(0.5)
    assert sink.last(catalog.ACTUAL_COST_AVAILABLE, JobId="train-1") == 1.0
    # Running: the estimate, not the lagging actual, per million records done so far.
    assert sink.last(catalog.COST_PER_MILLION_RECORDS, JobId="train-1") == pytest.approx(
        fargate_rate
    )

    # hourly_rate on the item wins over the profile's Spot price.
    assert sink.last(catalog.ESTIMATED_COST, JobId="infer-2") == pytest.approx(0.3)
    # Cost Explorer answered but has no figure for it yet (it lags a day): no ActualCost, and
    # ActualCostAvailable says the answer is there, so nobody chases a Cost Explorer fault.
    assert sink.last(catalog.ACTUAL_COST, JobId="infer-2") is None
    assert sink.last(catalog.ACTUAL_COST_AVAILABLE, JobId="infer-2") == 1.0
    assert sink.last(catalog.COST_PER_MILLION_RECORDS, JobId="infer-2") == pytest.approx(0.5)

    # No worker_seconds: wall time (until the last heartbeat, 3 h after the start: its workers
    # are gone) x workers x rate; and the tracker publishes job-wide progress, but no ETA:
    # dead workers finish nothing (an ETA "if resumed" would read 3 h every run for a day).
    assert sink.last(catalog.ESTIMATED_COST, JobId="stale-3") == pytest.approx(3 * 2 * 1.006)
    assert sink.last(catalog.RECORDS_DONE, JobId="stale-3") == 500
    assert sink.last(catalog.PROGRESS_PERCENTAGE, JobId="stale-3") == pytest.approx(50.0)
    assert sink.last(catalog.ETA_SECONDS, JobId="stale-3") is None
    assert report["stale_jobs"] == ["stale-3"]
    assert sink.last(catalog.RECORDS_DONE, JobId="train-1") is None  # its workers publish it

    # Unknown profile: reported, never guessed.
    assert sink.last(catalog.ESTIMATED_COST, JobId="tpu-5") is None
    assert sink.last(catalog.ACTUAL_COST_AVAILABLE, JobId="tpu-5") == 1.0
    assert [u["job_id"] for u in report["unpriced"]] == ["tpu-5"]
    assert "fargate:<N>vcpu:<M>gb" in report["unpriced"][0]["reason"]

    # Finished more than a day ago: only its (still settling) actual cost is reported.
    assert [(m.name, m.value) for m in sink.metrics(JobId="old-4")] == [
        (catalog.ACTUAL_COST_AVAILABLE, 1.0)
    ]
    assert report["settling_jobs"] == ["old-4"]
    assert job_item(table, "old-4")[jt.ACTUAL_COST_STATUS]["S"] == "no_data"

    assert sink.last(catalog.MONTHLY_COST, CostCategory="Training") == pytest.approx(3.5)
    assert sink.last(catalog.MONTHLY_COST, CostCategory="Storage") == pytest.approx(12.25)
    assert sink.last(catalog.MONTHLY_COST, CostCategory="Inference") == pytest.approx(7.5)
    assert {b.namespace for b in sink.batches} == {namespace}
    for metric in sink.metrics():
        assert metric.key.unit == catalog.unit_of(metric.name)

    stored = job_item(table, "train-1")
    assert float(stored[jt.ACTUAL_COST]["N"]) == pytest.approx(0.5)
    assert stored[jt.ACTUAL_COST_STATUS]["S"] == "ok"
    assert float(stored[jt.ACTUAL_COST_FETCHED_AT]["N"]) == pytest.approx(now)
    assert job_item(table, "infer-2")[jt.ACTUAL_COST_STATUS]["S"] == "no_data"
    cache = job_item(table, jt.cost_cache_key(CACHE_NAME))
    assert cache[jt.ITEM_TYPE]["S"] == jt.TYPE_COST_CACHE
    # "other" (not in the table) counts towards MonthlyCost, but the cache keeps no cost for it.
    assert json.loads(cache[jt.PAYLOAD]["S"])["job_costs"] == {"train-1": 0.5}


def test_progress_of_a_job_whose_workers_are_gone_lands_in_the_workers_own_series(
    aws: str, table: str, namespace: str
) -> None:
    """With the module's dimensions input, workers publish JobId plus those dimensions and the
    dashboard reads exactly that series: progress published with JobId alone never showed.
    The cost metrics are the tracker's own and keep JobId only (the dashboard reads them so)."""
    now, _, run = seeded_tracker(aws, table, namespace, [("train-1", "Training", 0.5)])
    _, sink = run(now, environ={"METRICSKIT_DIMENSIONS": '{"Env": "prod", "Team": "data"}'})
    job_and_own = (("JobId", "stale-3"), ("Env", "prod"), ("Team", "data"))
    for name in (catalog.RECORDS_DONE, catalog.RECORDS_TOTAL, catalog.PROGRESS_PERCENTAGE):
        assert [m.key.dimensions for m in sink.metrics(name, JobId="stale-3")] == [job_and_own]
    for name in (catalog.ESTIMATED_COST, catalog.ACTUAL_COST_AVAILABLE):
        assert [m.key.dimensions for m in sink.metrics(name, JobId="stale-3")] == [
            (("JobId", "stale-3"),)
        ]
    assert [m.key.dimensions for m in sink.metrics(catalog.ACTUAL_COST)] == [
        (("JobId", "train-1"),)
    ]


def test_dimensions_the_library_would_refuse_are_ignored_with_a_warning(
    aws: str, table: str, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    now, _, run = seeded_tracker(aws, table, namespace, [])
    with caplog.at_level(logging.WARNING, logger="metricskit"):
        _, sink = run(now, environ={"METRICSKIT_DIMENSIONS": '{"JobId": "x"}'})
    assert "METRICSKIT_DIMENSIONS" in caplog.text
    (progress,) = sink.metrics(catalog.PROGRESS_PERCENTAGE, JobId="stale-3")
    assert progress.key.dimensions == (("JobId", "stale-3"),)


def test_an_answer_with_thousands_of_other_jobs_is_cached_for_the_tables_jobs(
    aws: str, table: str, namespace: str
) -> None:
    """Other teams' (or long-gone) jobs tagged JobId in the period: 12,000 of them would put
    the cache item past DynamoDB's 400 KB limit, the store would fail, and the runs until the
    next refresh would have no actual cost at all."""
    now = unique_noon()
    put_job(table, "mine", status=jt.STATUS_RUNNING, namespace=namespace,
            started_at=now - HOUR, heartbeat_at=now - 30, worker_seconds=HOUR,
            hourly_rate=1.0, done=100)  # fmt: skip
    others = [(f"batch-array-job-{i:06d}-attempt-1", "Training", 0.25) for i in range(12_000)]
    queue_ce(aws, ce_page(*month_bounds(now), [("mine", "Training", 2.0), *others]))
    ce = CountingCE()
    run = make_runner(table, ce, namespace)
    first, first_sink = run(now)
    later, later_sink = run(now + 300)
    assert (first["ce_refreshed"], later["ce_refreshed"], len(ce.requests)) == (True, False, 1)
    for sink in (first_sink, later_sink):
        assert sink.last(catalog.ACTUAL_COST, JobId="mine") == pytest.approx(2.0)
        assert sink.last(catalog.ACTUAL_COST_AVAILABLE, JobId="mine") == 1.0
        # Every job's cost still counts towards its category.
        assert sink.last(catalog.MONTHLY_COST, CostCategory="Training") == pytest.approx(3002.0)
    cache = job_item(table, jt.cost_cache_key(CACHE_NAME))
    assert json.loads(cache[jt.PAYLOAD]["S"])["job_costs"] == {"mine": 2.0}


def test_a_cache_item_that_cannot_be_written_leaves_the_fresh_costs_on_the_job_items(
    aws: str, table: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    now, _, run = seeded_tracker(aws, table, namespace, [("train-1", "Training", 0.75)])

    def refuse(self: CostCache, snapshot: cex.CostSnapshot) -> None:
        raise ClientError(
            {"Error": {"Code": "ValidationException", "Message": "Item size has exceeded"}},
            "UpdateItem",
        )

    monkeypatch.setattr(CostCache, "store", refuse)
    report, sink = run(now)
    assert report["ce_status"] == "ok"
    assert sink.last(catalog.ACTUAL_COST, JobId="train-1") == pytest.approx(0.75)
    stored = job_item(table, "train-1")
    assert float(stored[jt.ACTUAL_COST]["N"]) == pytest.approx(0.75)
    assert stored[jt.ACTUAL_COST_STATUS]["S"] == "ok"


def test_a_later_run_uses_the_cache_without_asking_cost_explorer(
    aws: str, table: str, namespace: str
) -> None:
    now, ce, run = seeded_tracker(aws, table, namespace, [("train-1", "Training", 0.75)])
    run(now)
    report, sink = run(now + 300)
    assert len(ce.requests) == 1
    assert report["ce_refreshed"] is False
    assert report["ce_requests"] == 0
    assert sink.last(catalog.ACTUAL_COST, JobId="train-1") == pytest.approx(0.75)
    assert sink.last(catalog.MONTHLY_COST, CostCategory="Training") == pytest.approx(0.75)


@pytest.mark.slow
@pytest.mark.parametrize(("refresh_hours", "expected"), [("6", 4), ("12", 2)])
def test_a_day_of_five_minute_runs_makes_at_most_four_cost_explorer_requests(
    aws: str, table: str, namespace: str, refresh_hours: str, expected: int
) -> None:
    midnight = unique_noon() - 12 * HOUR
    seed_jobs(table, midnight, namespace)
    start, end = month_bounds(midnight)
    # Every refresh of this day sends the same request; moto answers it with this page.
    queue_ce(aws, ce_page(start, end, [("train-1", "Training", 1.0)]))
    ce = CountingCE()
    run = make_runner(table, ce, namespace)
    refreshed = []
    for index in range(288):
        at = midnight + index * 300
        report, sink = run(at, environ={"COST_TRACKER_CE_REFRESH_HOURS": refresh_hours})
        if report["ce_refreshed"]:
            refreshed.append((at - midnight) / HOUR)
        assert sink.last(catalog.ACTUAL_COST_AVAILABLE, JobId="train-1") == 1.0
    assert len(ce.requests) == expected
    assert refreshed == [i * float(refresh_hours) for i in range(expected)]


@pytest.mark.parametrize(
    ("first_send", "code"),
    [
        ("read timeout", "ReadTimeoutError"),
        ("500", "InternalServerError"),
        ("503", "ServiceUnavailable"),
        ("400", "LimitExceededException"),
    ],
)
def test_a_request_that_fails_in_flight_is_sent_once_and_counted_once(
    aws: str, table: str, namespace: str, first_send: str, code: str
) -> None:
    """botocore would send it again (up to 3 attempts), each a paid request the daily budget
    never counted (after a read timeout Cost Explorer may well have billed the first one):
    the budget's hard cap would not hold. The refresh fails and waits for the next one."""
    now = unique_noon()
    seed_jobs(table, now, namespace)
    ce = CountingCE()
    run = make_runner(table, ce, namespace)
    with ce.scripted():
        if first_send == "read timeout":
            ce.break_send(ReadTimeoutError(endpoint_url="https://ce.us-east-1.amazonaws.com/"))
        else:
            ce.fail(code, status=int(first_send))
        # What a retry would be answered with.
        ce.answer(ce_page(*month_bounds(now), [("train-1", "Training", 1.0)]))
        report, sink = run(now, environ={"COST_TRACKER_CE_MAX_REQUESTS_PER_DAY": "1"})
        later, _ = run(now + 300, environ={"COST_TRACKER_CE_MAX_REQUESTS_PER_DAY": "1"})
    assert len(ce.requests) == 1
    assert (report["ce_requests"], report["ce_requests_today"]) == (1, 1)
    assert report["ce_status"] == "error"
    assert sink.last(catalog.ACTUAL_COST_AVAILABLE, JobId="train-1") == 0.0
    assert job_item(table, "train-1")[jt.ACTUAL_COST_STATUS]["S"] == f"error:{code}"
    assert later["ce_refreshed"] is False


def test_the_client_the_tracker_builds_sends_each_request_once(
    aws: str, table: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without an injected client (as in Lambda) the tracker builds its own: a request that
    times out is not sent again by botocore."""
    session = boto3.Session()
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", session)
    sends: list[str] = []

    def time_out(request: Any, **_: Any) -> None:
        sends.append(request.url)
        raise ReadTimeoutError(endpoint_url=request.url)

    # Registered on the session, so it reaches the client the tracker builds from it.
    session.events.register("before-send.ce.GetCostAndUsage", time_out)
    now = unique_noon()
    seed_jobs(table, now, namespace)
    report = tracker.run(
        {"time": dt.datetime.fromtimestamp(now, tz=dt.UTC).isoformat()},
        table=table,
        sink=MemorySink(),
        environ={"METRICSKIT_NAMESPACE": namespace},
        clock=lambda: now,
    )
    assert len(sends) == 1
    assert (report["ce_requests"], report["ce_requests_today"]) == (1, 1)
    assert report["ce_status"] == "error"


@pytest.mark.parametrize(
    "code", ["LimitExceededException", "AccessDeniedException", "DataUnavailableException"]
)
def test_cost_explorer_errors_keep_the_estimate_and_publish_unavailable(
    aws: str,
    table: str,
    namespace: str,
    code: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = unique_noon()
    seed_jobs(table, now, namespace)
    ce = CountingCE()
    ce.fail(code)
    run = make_runner(table, ce, namespace)
    with ce.scripted(), caplog.at_level(logging.WARNING, logger="cost_tracker"):
        report, sink = run(now)
        # Not retried on the next run: a failing Cost Explorer still costs at most 4 a day.
        later, later_sink = run(now + 300)
    ce.assert_answered()
    assert len(ce.requests) == 1
    assert report["ce_status"] == "error"
    assert later["ce_refreshed"] is False
    for published in (sink, later_sink):
        assert published.last(catalog.ESTIMATED_COST, JobId="train-1") == pytest.approx(
            2 * (4 * 0.04048 + 8 * 0.004445)
        )
        assert published.last(catalog.ACTUAL_COST_AVAILABLE, JobId="train-1") == 0.0
        assert published.last(catalog.ACTUAL_COST, JobId="train-1") is None
        assert published.names().isdisjoint({catalog.MONTHLY_COST})
    assert job_item(table, "train-1")[jt.ACTUAL_COST_STATUS]["S"] == f"error:{code}"
    assert code in caplog.text


def test_after_an_error_the_next_interval_refreshes_again(
    aws: str, table: str, namespace: str
) -> None:
    now = unique_noon()
    seed_jobs(table, now, namespace)
    start, end = month_bounds(now)
    ce = CountingCE()
    run = make_runner(table, ce, namespace)
    with ce.scripted():
        ce.fail("LimitExceededException")
        run(now)
    queue_ce(aws, ce_page(start, end, [("train-1", "Training", 2.0)]))
    report, sink = run(now + 6 * HOUR)
    assert len(ce.requests) == 2
    assert report["ce_status"] == "ok"
    assert sink.last(catalog.ACTUAL_COST, JobId="train-1") == pytest.approx(2.0)
    assert job_item(table, "train-1")[jt.ACTUAL_COST_STATUS]["S"] == "ok"


def test_one_failed_refresh_keeps_the_last_actual_costs(
    aws: str, table: str, namespace: str
) -> None:
    now, ce, run = seeded_tracker(aws, table, namespace, [("train-1", "Training", 7.0)])
    run(now)
    with ce.scripted():
        ce.fail("LimitExceededException")
        report, sink = run(now + 6 * HOUR)
    assert (report["ce_status"], report["ce_error"]) == ("ok", "LimitExceededException")
    assert sink.last(catalog.ACTUAL_COST, JobId="train-1") == pytest.approx(7.0)
    assert sink.last(catalog.ACTUAL_COST_AVAILABLE, JobId="train-1") == 1.0
    assert sink.last(catalog.MONTHLY_COST, CostCategory="Training") == pytest.approx(7.0)
    assert job_item(table, "train-1")[jt.ACTUAL_COST_STATUS]["S"] == "ok"
    _, between = run(now + 7 * HOUR)  # a run from the cache between refreshes: the same
    assert between.last(catalog.ACTUAL_COST, JobId="train-1") == pytest.approx(7.0)

    # A second failure in a row: the figures are too old to stand in any more.
    with ce.scripted():
        ce.fail("LimitExceededException")
        report, sink = run(now + 12 * HOUR)
    assert report["ce_status"] == "error"
    assert sink.last(catalog.ACTUAL_COST, JobId="train-1") is None
    assert sink.last(catalog.ACTUAL_COST_AVAILABLE, JobId="train-1") == 0.0
    assert job_item(table, "train-1")[jt.ACTUAL_COST_STATUS]["S"] == "error:LimitExceededException"
    assert len(ce.requests) == 3


def test_an_answer_cut_short_at_the_page_limit_counts_as_failed(
    aws: str, table: str, namespace: str
) -> None:
    now = unique_noon()
    seed_jobs(table, now, namespace)
    start, end = month_bounds(now)
    ce = CountingCE()
    with ce.scripted():
        for page in range(cex.MAX_PAGES):
            groups = [("train-1", "Training", 1.0)]
            ce.answer(ce_page(start, end, groups, f"p{page}"))
        # A budget that allows every page, so the page limit is what stops the refresh.
        report, sink = make_runner(table, ce, namespace)(
            now, environ={"COST_TRACKER_CE_MAX_REQUESTS_PER_DAY": str(cex.MAX_PAGES + 5)}
        )
    assert len(ce.requests) == cex.MAX_PAGES
    # train-1's groups on the unread pages would be missing: no partial sum passes for a cost.
    assert report["ce_status"] == "error"
    assert sink.last(catalog.ACTUAL_COST, JobId="train-1") is None
    assert sink.last(catalog.ACTUAL_COST_AVAILABLE, JobId="train-1") == 0.0
    assert sink.names().isdisjoint({catalog.MONTHLY_COST})
    assert job_item(table, "train-1")[jt.ACTUAL_COST_STATUS]["S"] == "error:TooManyPages"
    assert report["ce_error"] == "TooManyPages"


def test_an_answer_longer_than_the_page_limit_is_not_asked_for_again_for_that_period(
    aws: str, table: str, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """25 pages never fit in the 20 a refresh reads, whatever the budget: the first refresh
    learns it (20 requests), and the later ones send nothing, rather than 20 paid pages at
    every refresh (80 a day) for an answer that can never be complete."""
    midnight = unique_noon() - 12 * HOUR
    seed_jobs(table, midnight, namespace)
    start, end = month_bounds(midnight)
    ce = CountingCE()
    run = make_runner(table, ce, namespace)
    budget = {"COST_TRACKER_CE_MAX_REQUESTS_PER_DAY": "100"}
    with ce.scripted():
        for page in range(25):
            token = f"p{page + 2}" if page < 24 else None
            ce.answer(ce_page(start, end, [(f"j{page}", "Training", 1.0)], token))
        with caplog.at_level(logging.WARNING, logger="cost_tracker"):
            reports = [
                run(midnight + hour * HOUR + 300, environ=budget)[0] for hour in (0, 6, 12, 18)
            ]
    assert len(ce.requests) == cex.MAX_PAGES
    assert [(r["ce_requests"], r["ce_error"], r["ce_status"]) for r in reports] == [
        (cex.MAX_PAGES, "TooManyPages", "error"),
        (0, "TooManyPages", "error"),
        (0, "TooManyPages", "error"),
        (0, "TooManyPages", "error"),
    ]
    assert all(r["ce_requests_today"] == cex.MAX_PAGES for r in reports)
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors, "no ERROR says why no refresh is started"
    assert all("MAX_PAGES (20)" in e and "fewer distinct JobId" in e for e in errors)
    assert "to at least 21" not in caplog.text  # never advice no budget can follow


def test_the_daily_request_budget_caps_every_page_and_keeps_the_previous_figures(
    aws: str, table: str, namespace: str
) -> None:
    """DESIGN: at most 4 Cost Explorer requests a day whatever the schedule. An answer of 3
    pages would otherwise cost 12 requests in the day's 4 refreshes; and a refresh that cannot
    finish in what is left of the day is not started, since a partial answer buys nothing."""
    midnight = unique_noon() - 12 * HOUR
    seed_jobs(table, midnight, namespace)
    start, end = month_bounds(midnight)
    next_start, next_end = month_bounds(midnight + 24 * HOUR)
    ce = CountingCE()
    run = make_runner(table, ce, namespace)

    def three_pages(first: str, last: str, amount: float) -> None:
        ce.answer(ce_page(first, last, [], "p2"))
        ce.answer(ce_page(first, last, [], "p3"))
        ce.answer(ce_page(first, last, [("train-1", "Training", amount)]))

    with ce.scripted():
        three_pages(start, end, 5.0)
        reports = {}
        for hour in (0, 6, 12, 18):
            reports[hour], sink = run(midnight + hour * HOUR)
            # The figures of the midnight refresh stand all day.
            assert sink.last(catalog.ACTUAL_COST, JobId="train-1") == pytest.approx(5.0)
            assert sink.last(catalog.ACTUAL_COST_AVAILABLE, JobId="train-1") == 1.0
        three_pages(next_start, next_end, 6.0)
        next_day, next_sink = run(midnight + 24 * HOUR)
    ce.assert_answered()

    assert len(ce.requests) == 3 + 3
    assert [
        (r["ce_requests"], r["ce_requests_today"], r["ce_error"]) for r in reports.values()
    ] == [
        (3, 3, ""),
        (0, 3, "RequestBudgetExhausted"),  # 3 pages needed, 1 left: nothing sent
        (0, 3, "RequestBudgetExhausted"),
        (0, 3, "RequestBudgetExhausted"),
    ]
    assert all(r["ce_request_budget"] == 4 for r in reports.values())
    assert job_item(table, "train-1")[jt.ACTUAL_COST_STATUS]["S"] == "ok"
    # A new UTC day, a new budget.
    assert (next_day["ce_requests"], next_day["ce_requests_today"]) == (3, 3)
    assert next_sink.last(catalog.ACTUAL_COST, JobId="train-1") == pytest.approx(6.0)


def test_an_answer_larger_than_the_daily_budget_is_not_asked_for_again_for_that_period(
    aws: str, table: str, namespace: str
) -> None:
    """With 3 pages and a budget of 2 no refresh can finish: the first attempt learns it (2
    requests), and later days send nothing while the query period starts on the same day.
    When its start moves later (the earliest job left the table, or a new month), the answer
    may be smaller: the next refresh tries again."""
    noon = dt.datetime(2031, 3, 10, 12, tzinfo=dt.UTC).timestamp()
    early_start = dt.datetime(2031, 2, 20, tzinfo=dt.UTC).timestamp()

    def running(job_id: str, started_at: float, at: float) -> None:
        put_job(
            table,
            job_id,
            status=jt.STATUS_RUNNING,
            namespace=namespace,
            started_at=started_at,
            heartbeat_at=at - 30,
            workers=1,
            compute_profile="fargate:4vcpu:8gb",
        )

    ce = CountingCE()
    run = make_runner(table, ce, namespace)
    budget = {"COST_TRACKER_CE_MAX_REQUESTS_PER_DAY": "2"}
    with ce.scripted():
        ce.answer(ce_page("2031-02-20", "2031-03-11", [], "p2"))
        ce.answer(ce_page("2031-02-20", "2031-03-11", [], "p3"))
        later = []
        for day in (0, 1, 2):
            at = noon + day * 24 * HOUR
            running("train-1", noon - 24 * HOUR, at)
            running("early", early_start, at)
            later.append(run(at, environ=budget)[0])
        ce.assert_answered()

        at = noon + 3 * 24 * HOUR
        boto3.client("dynamodb").delete_item(TableName=table, Key={jt.HASH_KEY: {"S": "early"}})
        running("train-1", noon - 24 * HOUR, at)
        ce.answer(ce_page("2031-03-01", "2031-03-14", [("train-1", "Training", 4.0)]))
        smaller, sink = run(at, environ=budget)
    ce.assert_answered()

    assert [(r["ce_requests"], r["ce_error"]) for r in later] == [
        (2, "RequestBudgetExhausted"),
        (0, "RequestBudgetTooSmall"),
        (0, "RequestBudgetTooSmall"),
    ]
    assert (smaller["ce_requests"], smaller["ce_error"]) == (1, "")
    assert sink.last(catalog.ACTUAL_COST, JobId="train-1") == pytest.approx(4.0)
    assert len(ce.requests) == 3


def test_the_budget_day_is_the_real_day_not_the_events(
    aws: str, table: str, namespace: str
) -> None:
    """A late retry of yesterday's event spends today's budget, so a real day never sees more
    than one day's budget, whatever the events say."""
    noon = unique_noon()
    seed_jobs(table, noon, namespace)
    start, end = month_bounds(noon)
    ce = CountingCE()
    run = make_runner(table, ce, namespace)
    budget = {"COST_TRACKER_CE_MAX_REQUESTS_PER_DAY": "1"}
    with ce.scripted():
        ce.answer(ce_page(start, end, []))
        on_time, _ = run(noon, environ=budget)
        # The event of 18:00 arrives late, the next day at 00:30: it may refresh (a new day's
        # budget) ...
        ce.answer(ce_page(start, end, []))
        late, _ = run(noon + 6 * HOUR, environ=budget, clock=lambda: noon + 12.5 * HOUR)
        # ... and takes that day's only request from the event of 06:00 that day.
        next_morning, _ = run(noon + 18 * HOUR, environ=budget)
    ce.assert_answered()

    assert (on_time["ce_requests"], on_time["ce_requests_today"]) == (1, 1)
    assert (late["ce_requests"], late["ce_requests_today"]) == (1, 1)
    assert (next_morning["ce_requests"], next_morning["ce_error"]) == (
        0,
        "RequestBudgetExhausted",
    )
    assert len(ce.requests) == 2


def test_the_request_budget_is_shared_by_overlapping_runs_and_configurable(
    aws: str, table: str, namespace: str
) -> None:
    now = unique_noon()
    first = CostCache(boto3.client("dynamodb"), table, refresh_hours=6)
    second = CostCache(boto3.client("dynamodb"), table, refresh_hours=6)
    assert [first.take_request(now, 3), second.take_request(now, 3)] == [True, True]
    assert [first.take_request(now, 3), second.take_request(now, 3)] == [True, False]
    assert first.requests_today(now) == 3
    # A replayed event of an earlier day cannot start that day again over today's count.
    assert first.take_request(now - 24 * HOUR, 3) is False
    assert first.take_request(now + 24 * HOUR, 3) is True
    assert first.requests_today(now + 24 * HOUR) == 1

    # Through the environment (the Terraform variable sets it): 1 request a day.
    seed_jobs(table, now + 48 * HOUR, namespace)
    ce = CountingCE()
    with ce.scripted():
        ce.answer(ce_page("2025-01-01", "2025-01-02", [], "p2"))
        report, _ = make_runner(table, ce, namespace)(
            now + 48 * HOUR, environ={"COST_TRACKER_CE_MAX_REQUESTS_PER_DAY": "1"}
        )
    assert (report["ce_requests"], report["ce_request_budget"]) == (1, 1)
    assert report["ce_error"] == "RequestBudgetExhausted"
    assert len(ce.requests) == 1


def test_a_job_whose_workers_vanished_is_reported_for_a_day_and_costed_for_three(
    aws: str, table: str, namespace: str
) -> None:
    now = unique_noon()
    # Both still say running: their workers were killed without closing.
    put_job(
        table,
        "gone-2d",
        status=jt.STATUS_RUNNING,
        namespace=namespace,
        workers=1,
        started_at=now - 3 * 24 * HOUR,
        heartbeat_at=now - 2 * 24 * HOUR,
        hourly_rate=1.0,
    )
    put_job(
        table,
        "gone-5d",
        status=jt.STATUS_RUNNING,
        namespace=namespace,
        workers=1,
        started_at=now - 40 * 24 * HOUR,
        heartbeat_at=now - 5 * 24 * HOUR,
        hourly_rate=1.0,
    )
    put_job(table, "gone-1h", status=jt.STATUS_RUNNING, namespace=namespace, workers=1,
            started_at=now - 3 * HOUR, heartbeat_at=now - HOUR, hourly_rate=1.0)  # fmt: skip
    start, end = month_bounds(now)
    settling_start = dt.datetime.fromtimestamp(now - 3 * 24 * HOUR, tz=dt.UTC).date().isoformat()
    queue_ce(aws, ce_page(min(start, settling_start), end, []))
    ce = CountingCE()
    report, sink = make_runner(table, ce, namespace)(now)
    assert report["jobs"] == 1
    assert report["stale_jobs"] == ["gone-1h"]
    assert sink.last(catalog.ESTIMATED_COST, JobId="gone-1h") == pytest.approx(2.0)  # 2 h
    assert report["settling_jobs"] == ["gone-2d"]
    assert {m.name for m in sink.metrics(JobId="gone-2d")} == {
        catalog.ACTUAL_COST_AVAILABLE
    }  # its actual only
    assert sink.metrics(JobId="gone-5d") == []
    # The query reaches back to the settling job's start, not to the long-dead one's.
    assert ce.requests[0]["TimePeriod"]["Start"] == min(start, settling_start)
    assert job_item(table, "gone-2d")[jt.ACTUAL_COST_STATUS]["S"] == "no_data"
    assert jt.ACTUAL_COST_STATUS not in job_item(table, "gone-5d")


def test_a_settling_job_publishes_its_settled_actual_cost_until_three_days_after_it_ended(
    aws: str, table: str, namespace: str
) -> None:
    """Cost Explorer's figures for a job's last day arrive a day or more after it ends: they
    reach the metrics (not only the job item), so the dashboard's last figure is the settled one."""
    now = unique_noon()
    common: dict[str, Any] = {
        "status": jt.STATUS_COMPLETED,
        "namespace": namespace,
        "worker_seconds": 10 * HOUR,
        "hourly_rate": 1.0,
        "done": 2_000_000,
    }
    put_job(table, "ended-2d", started_at=now - 60 * HOUR, finished_at=now - 48 * HOUR, **common)
    put_job(table, "ended-4d", started_at=now - 110 * HOUR, finished_at=now - 96 * HOUR, **common)
    start, end = month_bounds(now)
    settling_start = dt.datetime.fromtimestamp(now - 60 * HOUR, tz=dt.UTC).date().isoformat()
    queue_ce(
        aws,
        ce_page(
            min(start, settling_start),
            end,
            [("ended-2d", "Training", 12.0), ("ended-4d", "Training", 9.0)],
        ),
    )
    report, sink = make_runner(table, CountingCE(), namespace)(now)
    assert report["settling_jobs"] == ["ended-2d"]
    assert sink.last(catalog.ACTUAL_COST, JobId="ended-2d") == pytest.approx(12.0)
    assert sink.last(catalog.ACTUAL_COST_AVAILABLE, JobId="ended-2d") == 1.0
    # Cost Explorer now covers the whole run: 12 USD / 2M records.
    assert sink.last(catalog.COST_PER_MILLION_RECORDS, JobId="ended-2d") == pytest.approx(6.0)
    # Its estimate was final when it ended (and published then); only the actual settles.
    assert sink.last(catalog.ESTIMATED_COST, JobId="ended-2d") is None
    assert {b.namespace for b in sink.batches} == {namespace}
    # Past the settling window: nothing at all.
    assert sink.metrics(JobId="ended-4d") == []


def test_cost_per_million_uses_the_estimate_while_current_and_the_actual_once_settling(
    aws: str, table: str, namespace: str
) -> None:
    """Cost Explorer lags a day or more: its actual cost over the records done *now* would
    read far too low for a running job (24x for one a day into its run)."""
    now = unique_noon()
    put_job(table, "running", status=jt.STATUS_RUNNING, namespace=namespace,
            started_at=now - 24 * HOUR, heartbeat_at=now - 30, worker_seconds=24 * HOUR,
            hourly_rate=1.0, done=1_000_000)  # fmt: skip
    put_job(table, "unpriced", status=jt.STATUS_RUNNING, namespace=namespace,
            started_at=now - 24 * HOUR, heartbeat_at=now - 30, worker_seconds=24 * HOUR,
            done=500_000)  # fmt: skip
    put_job(table, "ended-1h", status=jt.STATUS_COMPLETED, namespace=namespace,
            started_at=now - 11 * HOUR, finished_at=now - HOUR, worker_seconds=10 * HOUR,
            hourly_rate=1.0, done=1_000_000)  # fmt: skip
    put_job(table, "ended-30h", status=jt.STATUS_COMPLETED, namespace=namespace,
            started_at=now - 40 * HOUR, finished_at=now - 30 * HOUR, worker_seconds=10 * HOUR,
            hourly_rate=1.0, done=1_000_000)  # fmt: skip
    start, end = month_bounds(now)
    settling_start = dt.datetime.fromtimestamp(now - 40 * HOUR, tz=dt.UTC).date().isoformat()
    actuals = [("running", "Training", 1.0), ("unpriced", "Training", 0.5),
               ("ended-1h", "Training", 4.0), ("ended-30h", "Training", 11.0)]  # fmt: skip
    queue_ce(aws, ce_page(min(start, settling_start), end, actuals))
    report, sink = make_runner(table, CountingCE(), namespace)(now)
    assert report["settling_jobs"] == ["ended-30h"]
    per_million = {
        job: sink.last(catalog.COST_PER_MILLION_RECORDS, JobId=job)
        for job in ("running", "unpriced", "ended-1h", "ended-30h")
    }
    assert per_million == {
        "running": pytest.approx(24.0),  # the estimate, not 1.0 / 1M records
        "unpriced": pytest.approx(1.0),  # no estimate: the (lagging) actual, 0.5 / 0.5M
        "ended-1h": pytest.approx(10.0),  # current: still the estimate
        "ended-30h": pytest.approx(11.0),  # settling: the actual
    }
    assert [u["job_id"] for u in report["unpriced"]] == ["unpriced"]


def test_a_tag_not_yet_activated_is_explained_in_the_log(
    aws: str, table: str, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    now = unique_noon()
    seed_jobs(table, now, namespace)
    start, end = month_bounds(now)
    queue_ce(aws, ce_page(start, end, [("", "", 40.0)]))
    with caplog.at_level(logging.WARNING, logger="cost_tracker"):
        report, sink = make_runner(table, CountingCE(), namespace)(now)
    assert report["ce_status"] == "ok"
    assert "Activate 'JobId'" in caplog.text
    assert "24 hours" in caplog.text
    # Cost Explorer answered: the missing tag shows as no ActualCost (and the log above), not
    # as an unavailable answer.
    assert sink.last(catalog.ACTUAL_COST, JobId="train-1") is None
    assert sink.last(catalog.ACTUAL_COST_AVAILABLE, JobId="train-1") == 1.0
    assert sink.last(catalog.MONTHLY_COST, CostCategory="Untagged") == pytest.approx(40.0)


def test_malformed_items_are_skipped_and_reported(
    aws: str, table: str, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    now = unique_noon()
    put_job(table, "good", status="running", started_at=now - HOUR, hourly_rate=1.0)
    put_job(table, "no-start", status="running", hourly_rate=1.0)
    put_job(table, "bad-status", status="exploded", started_at=now - HOUR)
    put_job(table, "text-done", status="running", started_at=now - HOUR, done="many")
    put_job(table, "negative", status="running", started_at=now - HOUR, worker_seconds=-5)
    put_job(table, "finished-when", status="completed", started_at=now - HOUR)
    put_job(table, "bad\tid", status="running", started_at=now - HOUR, hourly_rate=1.0)
    put_raw(table, {jt.HASH_KEY: {"S": "list-start"}, jt.ITEM_TYPE: {"S": "job"},
                    jt.STATUS: {"S": "running"}, jt.STARTED_AT: {"L": [{"N": "1"}]}})  # fmt: skip
    queue_ce(aws, ce_page(*month_bounds(now), []))
    with caplog.at_level(logging.WARNING, logger="cost_tracker"):
        report, sink = make_runner(table, CountingCE(), namespace)(now)
    reasons = {entry["job_id"]: entry["reason"] for entry in report["skipped"]}
    assert set(reasons) == {
        "no-start",
        "bad-status",
        "text-done",
        "negative",
        "finished-when",
        "bad\tid",
        "list-start",
    }
    assert "started_at is missing" in reasons["no-start"]
    assert "one of completed, failed, interrupted, running" in reasons["bad-status"]
    assert "done must be a number" in reasons["text-done"]
    assert "printable ASCII" in reasons["bad\tid"]
    assert report["jobs"] == 1
    assert sink.last(catalog.ESTIMATED_COST, JobId="good") == pytest.approx(1.0)
    assert "skipped job item 'no-start'" in caplog.text


def test_one_job_that_fails_never_stops_the_run(aws: str, table: str, namespace: str) -> None:
    class Exploding(PriceTable):
        def hourly_rate(self, profile_text: str) -> float:
            if profile_text == "ec2:g5.xlarge":
                raise RuntimeError("boom")
            return super().hourly_rate(profile_text)

    now = unique_noon()
    seed_jobs(table, now, namespace)
    queue_ce(aws, ce_page(*month_bounds(now), []))
    report, sink = make_runner(table, CountingCE(), namespace)(
        now, prices=Exploding(PriceTable.load(environ={}).data)
    )
    assert {e["job_id"] for e in report["skipped"]} == {"stale-3"}
    assert sink.last(catalog.ESTIMATED_COST, JobId="train-1") is not None
    assert sink.last(catalog.ESTIMATED_COST, JobId="infer-2") is not None


def test_an_empty_table_publishes_nothing_and_does_not_fail(
    aws: str, table: str, namespace: str
) -> None:
    now = unique_noon()
    queue_ce(aws, ce_page(*month_bounds(now), []))
    report, sink = make_runner(table, CountingCE(), namespace)(now)
    assert report["jobs"] == 0
    assert report["skipped"] == []
    assert report["metrics"] == 0
    assert report["ce_status"] == "ok"
    assert sink.batches == []


def test_pricing_overrides_from_the_environment_reach_the_estimate(
    aws: str, table: str, namespace: str
) -> None:
    now = unique_noon()
    put_job(
        table,
        "gpu",
        status="running",
        started_at=now - HOUR,
        heartbeat_at=now,
        worker_seconds=7200,
        compute_profile="ec2-spot:g5.xlarge",
    )
    queue_ce(aws, ce_page(*month_bounds(now), []))
    overrides = json.dumps({"ec2": {"spot": {"g5.xlarge": 0.5}}})
    _, sink = make_runner(table, CountingCE(), namespace)(
        now, environ={"COST_TRACKER_PRICING_OVERRIDES": overrides}
    )
    assert sink.last(catalog.ESTIMATED_COST, JobId="gpu") == pytest.approx(1.0)


def test_the_lambda_entry_point_runs_with_its_environment(
    aws: str, table: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = unique_noon()
    seed_jobs(table, now, namespace)
    queue_ce(aws, ce_page(*month_bounds(now), []))
    monkeypatch.setenv("METRICSKIT_JOB_TABLE", table)
    monkeypatch.setenv("METRICSKIT_NAMESPACE", namespace)
    monkeypatch.setenv("METRICSKIT_SINK", "memory")
    event = {
        "source": "aws.events",
        "detail-type": "Scheduled Event",
        "time": dt.datetime.fromtimestamp(now, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    report = tracker.handler(event, None)
    assert report["now"] == dt.datetime.fromtimestamp(now, tz=dt.UTC).isoformat()
    assert report["jobs"] == 4
    assert report["ce_status"] == "ok"
    assert report["metrics"] > 0
    assert report["export_ok"] is True


def test_the_default_sink_writes_emf_documents_to_stdout(
    aws: str, table: str, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Inside Lambda the tracker publishes EMF on stdout (no PutMetricData fees)."""
    now = unique_noon()
    seed_jobs(table, now, namespace)
    queue_ce(aws, ce_page(*month_bounds(now), [("train-1", "Training", 0.5)]))
    tracker.run(
        {"time": dt.datetime.fromtimestamp(now, tz=dt.UTC).isoformat()},
        table=table,
        ce_client=CountingCE().client,
        environ={"METRICSKIT_NAMESPACE": namespace},
    )
    documents = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    train = [d for d in documents if d.get("JobId") == "train-1" and "ActualCost" in d]
    assert len(train) == 1
    assert train[0]["ActualCost"] == pytest.approx(0.5)
    assert train[0]["EstimatedCost"] == pytest.approx(2 * (4 * 0.04048 + 8 * 0.004445))
    directives = train[0]["_aws"]["CloudWatchMetrics"]
    assert {d["Namespace"] for d in directives} == {namespace}


def test_an_event_time_from_the_future_does_not_block_later_refreshes(
    aws: str, table: str, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A console test event dated 2027-01-01 (a typo) used to claim the refresh for 2027:
    no refresh was due before then. Its time is not believed: the run reports on the clock."""
    now = unique_noon()
    seed_jobs(table, now, namespace)
    ce = CountingCE()
    run = make_runner(table, ce, namespace)
    with ce.scripted():
        ce.answer(ce_page(*month_bounds(now), [("train-1", "Training", 1.0)]))
        ce.answer(ce_page(*month_bounds(now), [("train-1", "Training", 2.0)]))
        with caplog.at_level(logging.WARNING, logger="cost_tracker"):
            typo = tracker.run(
                {"time": "2027-01-01T00:00:00Z"},
                table=table,
                ce_client=ce.client,
                sink=MemorySink(),
                environ={"METRICSKIT_NAMESPACE": namespace},
                clock=lambda: now,
            )
        later, sink = run(now + 6 * HOUR)
    ce.assert_answered()
    assert typo["now"] == dt.datetime.fromtimestamp(now, tz=dt.UTC).isoformat()
    assert "ahead of the clock" in caplog.text
    assert (typo["ce_refreshed"], later["ce_refreshed"]) == (True, True)
    assert sink.last(catalog.ACTUAL_COST, JobId="train-1") == pytest.approx(2.0)


def test_a_refresh_claimed_in_the_future_is_due_and_taken_over_once(
    aws: str, table: str, namespace: str
) -> None:
    """A claim stored ahead of the clock (by an older tracker, or a run given such a ``now``)
    is due at once, and only one of two overlapping runs takes it over."""
    now = unique_noon()
    first = CostCache(boto3.client("dynamodb"), table, refresh_hours=6)
    second = CostCache(boto3.client("dynamodb"), table, refresh_hours=6)
    assert first.claim(now + 40 * 24 * HOUR)
    _, claimed_at = first.load()
    assert first.due(claimed_at, now, now) is True
    assert first.due(claimed_at, now, None) is False  # without the clock: not due
    assert [first.claim(now, now), second.claim(now, now)] == [True, False]
    assert first.load()[1] == pytest.approx(now)
    # Within the slack a claim ahead of the clock is believed (clock skew).
    assert first.claim(now + 6 * HOUR + 60)
    assert second.claim(now + 6 * HOUR, now + 6 * HOUR) is False

    seed_jobs(table, now + 2 * 24 * HOUR, namespace)
    first.claim(now + 80 * 24 * HOUR, now + 80 * 24 * HOUR)
    ce = CountingCE()
    with ce.scripted():
        ce.answer(ce_page(*month_bounds(now + 2 * 24 * HOUR), [("train-1", "Training", 3.0)]))
        report, sink = make_runner(table, ce, namespace)(now + 2 * 24 * HOUR)
    assert report["ce_refreshed"] is True
    assert sink.last(catalog.ACTUAL_COST, JobId="train-1") == pytest.approx(3.0)


def test_only_one_of_two_overlapping_runs_claims_a_refresh(aws: str, table: str) -> None:
    """The claim is a conditional write, so concurrent invocations never both pay."""
    now = unique_noon()
    first = CostCache(boto3.client("dynamodb"), table, refresh_hours=6)
    second = CostCache(boto3.client("dynamodb"), table, refresh_hours=6)
    assert first.claim(now) is True
    assert second.claim(now) is False
    assert second.claim(now + 6 * HOUR - 1) is False
    assert second.claim(now + 6 * HOUR) is True
    _, claimed_at = first.load()
    assert claimed_at == pytest.approx(now + 6 * HOUR)
