"""metricskit.testing.capture() sees jobs built on any thread while its block is open."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import threading
from typing import TYPE_CHECKING

import pytest

import metricskit
from metricskit import catalog, config
from metricskit import job as job_module
from metricskit.sinks.base import NullSink
from metricskit.testing import capture

if TYPE_CHECKING:
    from metricskit.sinks.base import Exporter


def run_worker(job_id: str, records: int = 100) -> Exporter:
    """A user's worker: builds its Job without a sink, as production code does."""
    with metricskit.Job(job_id, flush_interval=3600, handle_sigterm=False) as job:
        job.processed(records)
        return job.sink


def on_thread(job_id: str, records: int = 100) -> Exporter:
    found: list[Exporter] = []
    thread = threading.Thread(target=lambda: found.append(run_worker(job_id, records)))
    thread.start()
    thread.join()
    return found[0]


@pytest.fixture(autouse=True)
def _no_cloudwatch(monkeypatch: pytest.MonkeyPatch) -> None:
    # A job that escapes the capture gets the environment's sink: off, not a real CloudWatch.
    monkeypatch.setenv(config.ENV_SINK, "off")


def test_a_job_on_a_new_thread_records_into_the_capture() -> None:
    with capture() as sink:
        assert on_thread("threaded") is sink
    assert sink.sum(catalog.RECORDS_PROCESSED, JobId="threaded") == 100


def test_jobs_in_a_thread_pool_record_into_the_capture() -> None:
    with capture() as sink:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            used = list(pool.map(run_worker, ["p1", "p2", "p3"]))
        assert run_worker("same-thread") is sink
    assert all(s is sink for s in used)
    assert sink.sum(catalog.RECORDS_PROCESSED) == 400


def test_the_innermost_capture_wins_on_every_thread() -> None:
    with capture() as outer:
        with capture() as inner:
            assert on_thread("in-inner") is inner
            assert run_worker("in-inner-here") is inner
        assert on_thread("in-outer") is outer
        assert run_worker("in-outer-here") is outer
    assert inner.sum(catalog.RECORDS_PROCESSED) == 200
    assert outer.sum(catalog.RECORDS_PROCESSED) == 200


def test_after_the_block_a_thread_gets_the_configured_sink_again() -> None:
    with capture() as sink:
        pass
    assert isinstance(on_thread("after"), NullSink)
    assert sink.batches == []


def test_a_capture_on_another_thread_keeps_its_own_jobs() -> None:
    """Two test threads each in their own capture: each one's jobs stay in its sink, while a
    thread that belongs to neither gets the capture opened last."""
    opened = threading.Event()
    done = threading.Event()
    seen: dict[str, Exporter] = {}

    def other_test() -> None:
        with capture() as theirs:
            seen["theirs"] = theirs
            opened.set()
            done.wait(10)
            seen["their job"] = run_worker("theirs")

    thread = threading.Thread(target=other_test)
    thread.start()
    assert opened.wait(10)
    try:
        with capture() as mine:  # opened last
            assert run_worker("mine") is mine
            assert on_thread("neither") is mine
    finally:
        done.set()
        thread.join()
    assert seen["their job"] is seen["theirs"]


def test_a_child_forked_while_another_thread_opens_a_capture_can_build_jobs() -> None:
    """Another thread inside push_capture/pop_capture at fork time holds the captures lock
    in the child, where that thread does not exist: the child must get a fresh lock, or
    ``Job(sink=None)`` (which looks for an open capture) waits on it for ever."""
    held, release = threading.Event(), threading.Event()

    def inside_capture_bookkeeping() -> None:
        with job_module._captures_lock:
            held.set()
            release.wait()

    holder = threading.Thread(target=inside_capture_bookkeeping)
    holder.start()
    try:
        assert held.wait(10)
        pid = os.fork()
        if pid == 0:  # the child: never return into pytest
            status = 1
            try:
                signal.alarm(20)  # a deadlocked child ends instead of hanging the test run
                with capture() as sink:
                    run_worker("forked-child", records=3)
                status = 0 if sink.sum(catalog.RECORDS_PROCESSED) == 3 else 2
            finally:
                os._exit(status)
    finally:
        release.set()
        holder.join()
    _, wait_status = os.waitpid(pid, 0)
    assert not os.WIFSIGNALED(wait_status), "the child hung on the captures lock"
    assert os.waitstatus_to_exitcode(wait_status) == 0
