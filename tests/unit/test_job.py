"""Job behaviour against the in-memory sink: what is published, when, and that it is exact."""

from __future__ import annotations

import gc
import json
import os
import sys
import threading
import weakref
from decimal import Decimal

import pytest

import metricskit
from metricskit import catalog, config, process_hooks
from metricskit.batch import MetricBatch
from metricskit.sinks.base import BaseSink, ExportResult
from metricskit.sinks.memory import MemorySink
from metricskit.testing import capture
from tests.conftest import FakeClock
from tests.helpers import wait_until


def make_job(clock: FakeClock, sink: MemorySink, **kwargs: object) -> metricskit.Job:
    return metricskit.Job(
        "job-1", namespace="Test", sink=sink, clock=clock, flush_interval=3600, **kwargs
    )  # type: ignore[arg-type]


def test_counts_and_standard_metrics_are_published_on_flush(clock: FakeClock) -> None:
    sink = MemorySink()
    job = make_job(clock, sink, total=1000)
    for _ in range(250):
        job.processed()
    job.processed(50)
    job.failed()
    job.failed(2)
    job.retried(3)
    job.checkpointed()
    clock.advance(10)
    assert job.flush()
    assert sink.sum(catalog.RECORDS_PROCESSED, JobId="job-1") == 300
    assert sink.sum(catalog.ERROR_COUNT) == 3
    assert sink.sum(catalog.RETRY_COUNT) == 3
    assert sink.sum(catalog.CHECKPOINT_COUNT) == 1
    assert sink.last(catalog.RECORDS_PER_SECOND) == pytest.approx(30.0)
    assert sink.last(catalog.RECORDS_DONE) == 300
    assert sink.last(catalog.RECORDS_TOTAL) == 1000
    assert sink.last(catalog.PROGRESS_PERCENTAGE) == pytest.approx(30.0)
    job.close()


def test_each_period_publishes_only_its_delta(clock: FakeClock) -> None:
    sink = MemorySink()
    job = make_job(clock, sink)
    job.processed(10)
    clock.advance(60)
    job.flush()
    job.processed(5)
    clock.advance(60)
    job.flush()
    deltas = [m.value for m in sink.metrics(catalog.RECORDS_PROCESSED)]
    assert deltas == [10, 5]
    assert [m.value for m in sink.metrics(catalog.RECORDS_DONE)] == [10, 15]
    job.close()


def test_timer_uses_the_injected_clock_in_milliseconds(clock: FakeClock) -> None:
    sink = MemorySink()
    job = make_job(clock, sink)
    with job.timer("KafkaLatency"):
        clock.advance(0.020)
    job.observe("KafkaLatency", 40.0)
    job.flush()
    values = sorted(sink.values("KafkaLatency"))
    assert len(values) == 2
    assert values[0] == pytest.approx(20.0, rel=0.005)
    assert values[1] == pytest.approx(40.0, rel=0.005)
    metric = sink.metrics("KafkaLatency")[0]
    assert metric.key.unit == "Milliseconds"
    job.close()


def test_gauge_publishes_last_value_with_its_unit(clock: FakeClock) -> None:
    sink = MemorySink()
    job = make_job(clock, sink)
    job.gauge("Loss", 0.9)
    job.gauge("Loss", 0.4)
    job.gauge("GpuMemory", 1024, unit="Megabytes")
    job.flush()
    assert sink.last("Loss") == 0.4
    assert sink.metrics("GpuMemory")[0].key.unit == "Megabytes"
    job.flush()
    assert len(sink.metrics("Loss")) == 1  # not re-published without a new value
    job.close()


def test_status_reports_done_total_percent_rate_and_eta(clock: FakeClock) -> None:
    job = make_job(clock, MemorySink(), total=1000)
    assert job.status().rate is None
    job.processed(100)
    clock.advance(10)
    job.status()
    job.processed(100)
    clock.advance(10)
    status = job.status()
    assert status.done == 200
    assert status.total == 1000
    assert status.percent == pytest.approx(20.0)
    assert status.rate == pytest.approx(10.0)
    assert status.eta_seconds == pytest.approx(80.0)
    job.close()


def test_unknown_total_gives_no_percent_and_no_eta(clock: FakeClock) -> None:
    sink = MemorySink()
    job = make_job(clock, sink)
    job.processed(10)
    clock.advance(5)
    job.processed(10)
    status = job.status()
    assert status.percent is None
    assert status.eta_seconds is None
    job.flush()
    assert catalog.PROGRESS_PERCENTAGE not in sink.names()
    assert catalog.ETA_SECONDS not in sink.names()
    job.close()


def test_bad_values_are_dropped_counted_and_warned_once(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    sink = MemorySink()
    job = make_job(clock, sink)
    job.processed(-5)
    job.processed(float("nan"))
    job.observe("Latency", float("inf"))
    job.observe("Latency", "slow")  # type: ignore[arg-type]
    job.gauge("Loss", float("nan"))
    job.processed(2)
    job.flush()
    assert sink.sum(catalog.RECORDS_PROCESSED) == 2
    assert sink.sum(catalog.DROPPED_VALUES) == 5
    warnings = [r for r in caplog.records if "dropped value" in r.getMessage()]
    assert len(warnings) == 3  # once per metric name
    job.close()


def test_stage_has_its_own_progress_with_a_stage_dimension(clock: FakeClock) -> None:
    sink = MemorySink()
    job = make_job(clock, sink)
    denoise = job.stage("denoise", total=10)
    assert job.stage("denoise") is denoise
    denoise.processed(5)
    denoise.failed()
    job.processed(1)
    job.flush()
    assert sink.sum(catalog.RECORDS_PROCESSED, Stage="denoise") == 5
    assert sink.last(catalog.PROGRESS_PERCENTAGE, Stage="denoise") == pytest.approx(50.0)
    assert sink.sum(catalog.ERROR_COUNT, Stage="denoise") == 1
    job_level = [
        m for m in sink.metrics(catalog.RECORDS_PROCESSED) if m.key.dimension("Stage") is None
    ]
    assert sum(m.value for m in job_level) == 1
    assert denoise.status().done == 5
    job.close()


def test_close_flushes_is_idempotent_and_recording_after_close_never_raises(
    clock: FakeClock,
) -> None:
    sink = MemorySink()
    job = make_job(clock, sink)
    job.processed(7)
    assert job.close()
    assert job.close()
    assert job.final_status == "completed"
    job.processed()
    job.observe("Latency", 1.0)
    assert sink.sum(catalog.RECORDS_PROCESSED) == 7


def test_context_manager_marks_failed_on_exception(clock: FakeClock) -> None:
    sink = MemorySink()
    job = make_job(clock, sink)

    def worker() -> None:
        with job:
            job.processed(3)
            raise RuntimeError("worker bug")

    with pytest.raises(RuntimeError):
        worker()
    assert job.final_status == "failed"
    assert sink.sum(catalog.RECORDS_PROCESSED) == 3


def test_background_flusher_is_a_named_daemon_thread_and_flushes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(config, "MIN_FLUSH_INTERVAL", 0.01)  # the testing path below 1 s
    sink = MemorySink()
    job = metricskit.Job("bg", sink=sink, flush_interval=0.05)
    job.processed(3)
    flushers = [t for t in threading.enumerate() if t.name == "metricskit-flusher-bg"]
    assert len(flushers) == 1
    assert flushers[0].daemon
    assert wait_until(lambda: sink.sum(catalog.RECORDS_PROCESSED) == 3)
    job.close()
    assert wait_until(lambda: not flushers[0].is_alive())


class ExplodingSink(BaseSink):
    def __init__(self) -> None:
        self.calls = 0

    def export(self, batch: MetricBatch) -> ExportResult:
        self.calls += 1
        raise RuntimeError("sink bug")


def test_flusher_survives_a_sink_that_raises_and_keeps_the_data(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(config, "MIN_FLUSH_INTERVAL", 0.01)
    sink = ExplodingSink()
    # close() retries the raising sink until its shutdown timeout: 1 s, not the default 10.
    job = metricskit.Job("boom", sink=sink, flush_interval=0.02, shutdown_timeout=1)
    job.processed(5)
    assert wait_until(lambda: sink.calls >= 3)
    assert any(t.name == "metricskit-flusher-boom" for t in threading.enumerate())
    assert job._delivery.queued >= 1
    job.close()


def test_sink_is_never_entered_twice_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config, "MIN_FLUSH_INTERVAL", 0.001)
    sink = MemorySink()
    sink.export_delay = 0.005
    job = metricskit.Job("conc", sink=sink, flush_interval=0.001)

    def hammer() -> None:
        for _ in range(20):
            job.processed()
            job.flush()

    threads = [threading.Thread(target=hammer) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    job.close()
    assert sink.concurrent_exports_seen == 1
    assert sink.sum(catalog.RECORDS_PROCESSED) == 120


def test_counts_are_exact_across_a_failing_sink_and_recovery(clock: FakeClock) -> None:
    sink = MemorySink()
    job = make_job(clock, sink, max_queued_periods=3)
    sink.fail_exports = True
    for _ in range(10):  # ten periods of outage: the queue merges beyond 3
        job.processed(100)
        job.observe("Latency", 5.0)
        clock.advance(60)
        assert not job.flush()
    assert job._delivery.queued <= 3
    sink.fail_exports = False
    job.processed(1)
    assert job.flush()
    assert sink.sum(catalog.RECORDS_PROCESSED) == 1001
    assert sink.count("Latency") == 10
    assert sink.sum(catalog.FAILED_EXPORTS) >= 10
    job.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_does_not_report_the_parents_failed_exports_again(
    clock: FakeClock,
) -> None:
    """The parent reports its own failures; a child that did report them too multiplied
    MetricskitFailedExports by the number of forked workers."""
    sink = MemorySink()
    job = make_job(clock, sink)
    sink.fail_exports = True
    for _ in range(3):
        job.processed(1)
        clock.advance(60)
        job.flush()
    sink.fail_exports = False
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: what its first flushes report as failed exports
        try:
            job.processed(1)
            job.flush()
            os.write(write_end, repr(sink.sum(catalog.FAILED_EXPORTS)).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as report:
        child_reported = float(report.read())
    os.waitpid(pid, 0)
    parent_before = sink.sum(catalog.FAILED_EXPORTS)
    assert job.flush()
    job.close()
    # The child's sink is a copy of the parent's: what it adds on top of the parent's
    # reports so far is what it reported itself.
    assert child_reported - parent_before == 0
    assert sink.sum(catalog.FAILED_EXPORTS) == 3


def _own_sum(sink: MemorySink, name: str) -> float:
    """A counter's sum over the job's own series (its stages' left out)."""
    return sum(m.total for m in sink.metrics(name) if m.key.dimension(catalog.STAGE) is None)


def _published(sink: MemorySink) -> dict[str, float | None]:
    return {
        "processed": _own_sum(sink, catalog.RECORDS_PROCESSED),
        "failed": _own_sum(sink, catalog.ERROR_COUNT),
        "retried": _own_sum(sink, catalog.RETRY_COUNT),
        "checkpointed": _own_sum(sink, catalog.CHECKPOINT_COUNT),
        "latency": sink.count("Latency"),
        "loss": sink.last("Loss"),
        "stage_processed": sink.sum(catalog.RECORDS_PROCESSED, Stage="load"),
        "stage_failed": sink.sum(catalog.ERROR_COUNT, Stage="load"),
    }


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_publishes_none_of_the_parents_unflushed_records(
    clock: FakeClock,
) -> None:
    """Everything recorded before the fork is the parent's to publish: a child that
    published its inherited copy too would multiply it by the number of forked workers."""
    sink = MemorySink()
    job = make_job(clock, sink)
    stage = job.stage("load")
    job.processed(100)
    job.failed(7)
    job.retried(3)
    job.checkpointed(2)
    job.observe("Latency", 5.0)
    job.gauge("Loss", 0.5)
    stage.processed(4)
    stage.failed(1)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: what it publishes of its own (its sink is an empty copy)
        try:
            job.processed(1)
            job.failed(1)
            job.flush()
            os.write(write_end, json.dumps(_published(sink)).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as report:
        child = json.loads(report.read())
    os.waitpid(pid, 0)
    assert job.flush()
    job.close()
    assert child == {
        "processed": 1,
        "failed": 1,
        "retried": 0,
        "checkpointed": 0,
        "latency": 0,
        "loss": None,
        "stage_processed": 0,
        "stage_failed": 0,
    }
    assert _published(sink) == {
        "processed": 100,
        "failed": 7,
        "retried": 3,
        "checkpointed": 2,
        "latency": 1,
        "loss": 0.5,
        "stage_processed": 4,
        "stage_failed": 1,
    }


def test_capture_routes_jobs_without_a_sink_to_memory() -> None:
    with capture() as sink, metricskit.Job("captured") as job:
        job.processed(4)
    assert sink.sum(catalog.RECORDS_PROCESSED, JobId="captured") == 4


def test_worker_id_dimension_is_opt_in(clock: FakeClock) -> None:
    sink = MemorySink()
    job = make_job(clock, sink, worker_id="w-7")
    job.processed()
    job.close()
    assert sink.metrics(catalog.RECORDS_PROCESSED)[0].key.dimension("WorkerId") == "w-7"
    plain = MemorySink()
    make_job(clock, plain).close()
    assert all(m.key.dimension("WorkerId") is None for m in plain.metrics())


def test_worker_id_adds_per_worker_series_and_keeps_the_job_wide_ones(clock: FakeClock) -> None:
    """Dashboards and alarms read a job by JobId (and Stage): WorkerId must not hide it."""
    sink = MemorySink()
    job = make_job(clock, sink, total=10, worker_id="w-7")
    job.processed(3)
    job.observe("KafkaLatency", 5.0)
    job.stage("read").processed(2)
    job.observe("Bad", float("nan"))  # a self-metric: published once, by JobId only
    clock.advance(60)
    job.flush()
    job.close()

    per_worker = [m for m in sink.metrics() if m.key.dimension("WorkerId") == "w-7"]
    assert {m.name for m in per_worker} >= {
        catalog.RECORDS_PROCESSED, catalog.PROGRESS_PERCENTAGE, "KafkaLatency"
    }  # fmt: skip
    # In every batch, each per-worker series has a job-wide twin with the same data and one
    # dimension less, and nothing else is job-wide but the self-metrics.
    for batch in sink.batches:
        by_key = {(m.name, m.key.dimensions): m for m in batch}
        twins = set()
        for m in batch:
            if m.key.dimension("WorkerId") is None:
                continue
            dims = tuple(d for d in m.key.dimensions if d[0] != "WorkerId")
            twin = by_key[(m.name, dims)]
            assert (twin.kind, twin.value, twin.values, twin.counts) == (
                m.kind, m.value, m.values, m.counts
            )  # fmt: skip
            twins.add((m.name, dims))
        alone = {k for k, m in by_key.items() if m.key.dimension("WorkerId") is None} - twins
        assert {name for name, _ in alone} <= {catalog.DROPPED_VALUES}
    assert sink.sum(catalog.RECORDS_PROCESSED, WorkerId="w-7") == 5  # job 3 + stage 2
    assert sink.last(catalog.RECORDS_DONE, Stage="read", WorkerId="w-7") == 2
    dropped = sink.metrics(catalog.DROPPED_VALUES)
    assert [m.key.dimensions for m in dropped] == [(("JobId", "job-1"),)]


def test_distribution_handle_records_into_the_same_series(clock: FakeClock) -> None:
    sink = MemorySink()
    job = make_job(clock, sink)
    latency = job.distribution("KafkaLatency")
    assert job.distribution("KafkaLatency") is latency
    latency.observe(10.0)
    job.observe("KafkaLatency", 20.0)
    latency.observe(float("nan"))  # dropped and counted, never raised
    job.flush()
    assert sink.count("KafkaLatency") == 2
    assert sink.sum(catalog.DROPPED_VALUES) == 1
    job.close()


def test_a_completed_job_publishes_eta_zero_even_when_done_stops_short(clock: FakeClock) -> None:
    """Rows that failed leave done < total; once the job completed nothing remains to wait for."""
    sink = MemorySink()
    job = make_job(clock, sink, total=1000)
    for _ in range(5):
        job.processed(190)
        clock.advance(10)
        job.flush()
    assert sink.last(catalog.ETA_SECONDS) == pytest.approx(2.6, rel=0.05)  # 50 left at 19/s
    job.failed(50)
    job.close("completed")
    assert sink.last(catalog.ETA_SECONDS) == 0.0
    assert sink.last(catalog.PROGRESS_PERCENTAGE) == pytest.approx(95.0)
    assert job.status().eta_seconds == 0.0


@pytest.mark.parametrize("before_close", ["paused", "short"])
def test_a_completed_job_publishes_eta_zero_whatever_its_rate(
    clock: FakeClock, before_close: str
) -> None:
    """No rate (closed before a second sample) or a pause long enough to count as stalled
    leaves the estimator without an ETA; a completed job with a total still has 0 left."""
    sink = MemorySink()
    job = make_job(clock, sink, total=1000)
    if before_close == "paused":
        for _ in range(10):
            job.processed(90)
            clock.advance(60)
            job.flush()
        clock.advance(300)  # wrapping up: far longer than any pause before
    else:
        job.processed(900)
    job.close("completed")
    assert sink.last(catalog.ETA_SECONDS) == 0.0
    assert job.status().eta_seconds == 0.0
    assert sink.last(catalog.PROGRESS_PERCENTAGE) == pytest.approx(90.0)


def test_an_interrupted_job_keeps_its_eta(clock: FakeClock) -> None:
    sink = MemorySink()
    job = make_job(clock, sink, total=1000)
    for _ in range(2):
        job.processed(100)
        clock.advance(10)
        job.flush()
    job.close("interrupted")
    eta = sink.last(catalog.ETA_SECONDS)
    assert eta is not None
    assert eta > 0


def test_timer_is_a_public_timer_and_keeps_the_unit_contract(clock: FakeClock) -> None:
    job = make_job(clock, MemorySink())
    assert isinstance(job.timer("KafkaLatency"), metricskit.Timer)
    assert job.timer("KafkaLatency") is not job.timer("KafkaLatency")  # nests and threads
    job.observe("Size", 3.0, unit="Bytes")
    with pytest.raises(metricskit.InvalidMetricError, match="unit 'Bytes'"):
        job.timer("Size")
    with pytest.raises(metricskit.InvalidMetricError):
        job.timer("")
    job.close()


def test_nested_timers_on_one_name_each_record_their_own_block(clock: FakeClock) -> None:
    sink = MemorySink()
    job = make_job(clock, sink)
    with job.timer("Step"):
        clock.advance(0.010)
        with job.timer("Step"):
            clock.advance(0.005)
    job.flush()
    values = sorted(sink.values("Step"))
    assert values == [pytest.approx(5.0, rel=0.005), pytest.approx(15.0, rel=0.005)]
    job.close()


def test_record_calls_never_raise_whatever_number_type_they_get(clock: FakeClock) -> None:
    """boto3's DynamoDB numbers are Decimals; huge ints and Decimal NaN must not escape."""
    sink = MemorySink()
    job = make_job(clock, sink)
    job.processed(Decimal("5"))
    job.failed(Decimal("2"))
    for bad in (Decimal("NaN"), Decimal("sNaN"), 10**400, "7", None):
        job.processed(bad)  # type: ignore[arg-type]
        job.failed(bad)  # type: ignore[arg-type]
        job.gauge("Loss", bad)  # type: ignore[arg-type]
        job.observe("KafkaLatency", bad)  # type: ignore[arg-type]
    job.observe("KafkaLatency", Decimal("3"))
    job.gauge("Loss", Decimal("0.5"))  # type: ignore[arg-type]
    job.close()
    assert sink.sum(catalog.RECORDS_PROCESSED) == 5
    assert sink.sum(catalog.ERROR_COUNT) == 2
    assert sink.count("KafkaLatency") == 1
    assert sink.last("Loss") == 0.5
    assert sink.sum(catalog.DROPPED_VALUES) == 5 * 4


def test_close_delivers_even_where_no_new_thread_may_start(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Python 3.12.0 to 3.12.2 refuse new threads in atexit hooks, where close() may run."""
    sink = MemorySink()
    job = make_job(clock, sink)
    job.processed(3)

    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't create new thread at interpreter shutdown")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    assert job.close() is True
    assert sink.sum(catalog.RECORDS_PROCESSED) == 3


def test_a_job_registry_imports_its_item_decoder_on_the_callers_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Not later on the registration thread, where a fork could catch the import lock held."""
    from metricskit import job_record
    from metricskit.registry import JobRegistry

    job_record._deserializer.cache_clear()
    monkeypatch.delitem(sys.modules, "boto3.dynamodb.types", raising=False)
    JobRegistry("jobs", client=object())  # type: ignore[arg-type]
    assert "boto3.dynamodb.types" in sys.modules
    assert job_record._deserializer.cache_info().currsize == 1


def test_a_fault_computing_progress_never_costs_the_periods_counts(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink = MemorySink()
    job = make_job(clock, sink, total=100)
    stage = job.stage("parse", total=10)
    job.processed(7)
    stage.processed(3)
    job.observe("KafkaLatency", 2.0)

    def broken(*_: object) -> list[object]:
        raise RuntimeError("a bug in progress")

    monkeypatch.setattr(stage, "_progress_metrics", broken)
    monkeypatch.setattr(job, "_progress_metrics", broken)
    clock.advance(60)
    job.flush()
    job.close()
    assert sink.sum(catalog.RECORDS_PROCESSED, Stage="parse") == 3
    assert sink.sum(catalog.RECORDS_PROCESSED) == 10  # the job's 7 and the stage's 3
    assert sink.count("KafkaLatency") == 1


def test_an_open_job_the_program_drops_is_kept_and_closed_at_exit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its flusher thread keeps an open job alive, so what it recorded is delivered at exit
    rather than lost with the object (docs/OPERATIONS.md, "Exit and SIGTERM")."""
    sink = MemorySink()
    job = metricskit.Job("dropped", sink=sink, flush_interval=3600, handle_sigterm=False)
    job.processed(7)
    ref = weakref.ref(job)
    del job
    gc.collect()
    kept = ref()
    assert kept is not None
    assert kept in process_hooks.live_jobs()
    monkeypatch.setattr(process_hooks, "live_jobs", lambda: [kept])  # this test's job only
    process_hooks._close_all()
    assert kept.final_status == "interrupted"
    assert sink.sum(catalog.RECORDS_PROCESSED) == 7


@pytest.mark.parametrize("flushed", [False, True], ids=["closed", "flushed-then-closed"])
def test_a_closed_job_is_collected_once_the_program_drops_it(flushed: bool) -> None:
    """Nothing metricskit runs (flusher, helper threads, exit and fork hooks) keeps a closed
    job: a program that closes its jobs does not grow."""
    sink = MemorySink()
    job = metricskit.Job("collected", sink=sink, flush_interval=3600, handle_sigterm=False)
    job.stage("load").processed(3)
    if flushed:
        assert job.flush()
    assert job.close()
    ref = weakref.ref(job)
    del job
    gc.collect()
    assert ref() is None
    assert sink.sum(catalog.RECORDS_PROCESSED, Stage="load") == 3
