"""Sink objects: shutdown() is optional, and a shared sink is shut down by the last job out."""

from __future__ import annotations

import logging
import os
import threading

import pytest

import metricskit
from metricskit import catalog, sink_users
from metricskit.batch import MetricBatch
from metricskit.errors import ConfigurationError
from metricskit.sinks.base import ExportResult


class ExportOnly:
    """A user's sink: export() and nothing else."""

    def __init__(self) -> None:
        self.batches: list[MetricBatch] = []

    def export(self, batch: MetricBatch) -> ExportResult:
        self.batches.append(batch)
        return ExportResult.ok()


class CountingSink(ExportOnly):
    """Counts shutdowns and refuses exports after one, as a sink that closed its socket would."""

    def __init__(self) -> None:
        super().__init__()
        self.shutdowns = 0
        self.exports_after_shutdown = 0
        self._lock = threading.Lock()

    def export(self, batch: MetricBatch) -> ExportResult:
        with self._lock:
            if self.shutdowns:
                self.exports_after_shutdown += 1
                return ExportResult.failed(batch)
        return super().export(batch)

    def shutdown(self) -> None:
        with self._lock:
            self.shutdowns += 1


def job(name: str, sink: object) -> metricskit.Job:
    return metricskit.Job(
        name,
        sink=sink,  # type: ignore[arg-type]
        flush_interval=3600,
        shutdown_timeout=5,
        handle_sigterm=False,
    )


def records(sink: ExportOnly, job_id: str) -> float:
    return sum(
        m.value
        for b in sink.batches
        for m in b.metrics
        if m.key.name == catalog.RECORDS_PROCESSED and ("JobId", job_id) in m.key.dimensions
    )


def test_a_sink_without_shutdown_closes_without_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink = ExportOnly()
    with caplog.at_level(logging.ERROR, logger="metricskit"), job("plain", sink) as plain:
        plain.processed(3)
    assert records(sink, "plain") == 3
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


def test_a_shared_sink_is_shut_down_once_by_the_last_job_to_close() -> None:
    sink = CountingSink()
    first, second = job("first", sink), job("second", sink)
    assert sink_users.users(sink) == 2
    first.processed(1)
    assert first.close()
    assert sink.shutdowns == 0  # the second job still runs on it
    second.processed(2)
    assert second.flush()
    assert second.close()
    assert sink.shutdowns == 1
    assert sink.exports_after_shutdown == 0
    assert (records(sink, "first"), records(sink, "second")) == (1, 2)
    assert sink_users.users(sink) == 0


def test_closing_a_job_twice_releases_its_sink_once() -> None:
    sink = CountingSink()
    first, second = job("twice", sink), job("other", sink)
    first.close()
    first.close()
    assert sink.shutdowns == 0
    second.close()
    assert sink.shutdowns == 1


def test_a_job_that_fails_to_build_does_not_count_as_a_user() -> None:
    sink = CountingSink()
    with pytest.raises(ConfigurationError):
        metricskit.Job("bad", sink=sink, job_table="ab")  # type: ignore[arg-type]
    assert sink_users.users(sink) == 0


def test_jobs_opened_and_closed_from_many_threads_shut_the_shared_sink_down_once() -> None:
    sink = CountingSink()
    anchor = job("anchor", sink)  # open throughout: no thread's close may shut the sink down

    def churn(worker: int) -> None:
        for i in range(15):
            with job(f"w{worker}-{i}", sink) as each:
                each.processed()

    threads = [threading.Thread(target=churn, args=(w,)) for w in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sink.shutdowns == 0
    assert sink_users.users(sink) == 1
    anchor.close()
    assert sink.shutdowns == 1
    assert sink.exports_after_shutdown == 0
    assert sum(records(sink, f"w{w}-{i}") for w in range(6) for i in range(15)) == 90


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_shuts_down_its_own_copy_after_its_last_inherited_job() -> None:
    sink = CountingSink()
    first, second = job("fork-1", sink), job("fork-2", sink)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report (shutdowns after its first close, after its second)
        try:
            first.close()
            after_first = sink.shutdowns
            second.close()
            os.write(write_end, f"{after_first},{sink.shutdowns}".encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as report:
        child = report.read()
    os.waitpid(pid, 0)
    assert child == "0,1"
    assert sink.shutdowns == 0  # the parent's jobs are still open
    first.close()
    assert sink.shutdowns == 0
    second.close()
    assert sink.shutdowns == 1
