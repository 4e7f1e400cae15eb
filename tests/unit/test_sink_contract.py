"""A user's sink: export() alone is enough (at run time and for mypy --strict), and one that
breaks the contract (returns no ExportResult, or faults at close) never duplicates data nor
kills a metricskit thread."""

from __future__ import annotations

import logging
import textwrap
import threading
from pathlib import Path

import pytest

import metricskit
from metricskit import catalog
from metricskit.batch import MetricBatch
from metricskit.sinks.base import ExportResult
from metricskit.sinks.memory import MemorySink


class ReturnsNone:
    """Forgets to return: export() gives None for the first ``broken`` calls."""

    def __init__(self, broken: int = 10**9) -> None:
        self.broken = broken
        self.exported: list[MetricBatch] = []
        self.delivered: list[MetricBatch] = []

    def export(self, batch: MetricBatch) -> ExportResult | None:
        self.exported.append(batch)
        if len(self.exported) <= self.broken:
            return None
        self.delivered.append(batch)
        return ExportResult.ok()


@pytest.fixture
def thread_errors(monkeypatch: pytest.MonkeyPatch) -> list[threading.ExceptHookArgs]:
    """Exceptions that ended a thread (a dead flusher or close helper)."""
    seen: list[threading.ExceptHookArgs] = []
    monkeypatch.setattr(threading, "excepthook", seen.append)
    return seen


def job_on(sink: object, name: str = "own") -> metricskit.Job:
    return metricskit.Job(
        name,
        sink=sink,  # type: ignore[arg-type]
        flush_interval=3600,
        shutdown_timeout=2,
        handle_sigterm=False,
    )


def test_a_sink_returning_none_is_never_sent_the_same_batch_twice(
    caplog: pytest.LogCaptureFixture, thread_errors: list[threading.ExceptHookArgs]
) -> None:
    sink = ReturnsNone()
    job = job_on(sink)
    with caplog.at_level(logging.ERROR, logger="metricskit"):
        for _ in range(3):
            job.processed(2)
            job.flush()
        job.close()
    assert len(sink.exported) == 4  # three flushes and the close, each period once
    assert len({id(b) for b in sink.exported}) == len(sink.exported)
    assert job._delivery.queued == 0
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1  # once, not at every flush
    assert "must return an ExportResult" in errors[0]
    assert "returned None" in errors[0]
    assert thread_errors == []


def test_a_dropped_batch_is_counted_in_failed_exports() -> None:
    sink = ReturnsNone(broken=1)
    job = job_on(sink)
    job.processed(5)
    job.flush()  # returns None: dropped, counted
    job.processed(1)
    assert job.flush()
    job.close()
    failed = sum(
        m.value for b in sink.delivered for m in b.metrics if m.name == catalog.FAILED_EXPORTS
    )
    assert failed == 1
    records = sum(
        m.value for b in sink.delivered for m in b.metrics if m.name == catalog.RECORDS_PROCESSED
    )
    assert records == 1  # the dropped period is not sent again


def test_close_survives_a_fault_while_it_retries_delivery(
    thread_errors: list[threading.ExceptHookArgs], caplog: pytest.LogCaptureFixture
) -> None:
    """The retry loop at close: a fault there is logged; close returns False, never a dead
    helper thread."""
    sink = MemorySink()
    sink.fail_exports = True
    job = job_on(sink, "faulty-close")
    job.processed(1)

    first = job._delivery.deliver
    calls: list[bool] = []

    def deliver(*, force: bool = False) -> bool:
        calls.append(force)
        if len(calls) == 1:  # the final flush: the sink fails as usual
            return first(force=force)
        raise RuntimeError("a sink's fault")  # then every retry at close faults

    job._delivery.deliver = deliver  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR, logger="metricskit"):
        assert job.close() is False
    assert len(calls) >= 2  # the loop went on after the fault
    assert thread_errors == []
    assert "failed at close" in caplog.text


def test_an_export_only_sink_is_enough_for_mypy_strict(tmp_path: Path) -> None:
    from mypy import api

    good = tmp_path / "good.py"
    good.write_text(
        textwrap.dedent(
            """
            import metricskit
            from metricskit.batch import MetricBatch
            from metricskit.sinks import ExportResult


            class ExportOnly:
                def export(self, batch: MetricBatch) -> ExportResult:
                    return ExportResult.ok()


            metricskit.Job("typed", sink=ExportOnly())
            """
        )
    )
    bad = tmp_path / "bad.py"
    bad.write_text(
        textwrap.dedent(
            """
            import metricskit


            class NoResult:
                def export(self, batch: object) -> None:
                    pass


            metricskit.Job("typed", sink=NoResult())
            """
        )
    )
    out, err, status = api.run(
        [
            "--strict",
            "--no-error-summary",
            "--cache-dir",
            str(tmp_path / "cache"),
            str(good),
            str(bad),
        ]
    )
    assert err == ""
    assert status == 1, out
    assert [line for line in out.splitlines() if line.startswith(str(good))] == []
    assert any('Argument "sink" to "Job"' in line for line in out.splitlines()), out


class ReopeningSink:
    """A sink whose shutdown() closes its 'connection'; export() reopens it, as documented."""

    def __init__(self) -> None:
        self.open = False
        self.opens = 0
        self.shutdowns = 0
        self.batches: list[MetricBatch] = []

    def export(self, batch: MetricBatch) -> ExportResult:
        if not self.open:
            self.open = True
            self.opens += 1
        self.batches.append(batch)
        return ExportResult.ok()

    def shutdown(self) -> None:
        self.open = False
        self.shutdowns += 1


def test_a_sink_reused_by_jobs_run_one_after_another_is_shut_down_after_each() -> None:
    """What Sink.shutdown's docstring and OPERATIONS.md promise a sink author: shutdown()
    when the last open job using the object closes; a later job exports to it again."""
    sink = ReopeningSink()
    for name in ("first", "second", "third"):
        with job_on(sink, name) as each:
            each.processed(1)
        assert not sink.open
    assert sink.shutdowns == 3
    assert sink.opens == 3
    records = [
        m.key.dimension("JobId")
        for b in sink.batches
        for m in b.metrics
        if m.name == catalog.RECORDS_PROCESSED
    ]
    assert records == ["first", "second", "third"]
