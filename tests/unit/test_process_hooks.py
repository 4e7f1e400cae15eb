"""What the SIGTERM hook does with live jobs, by what the application did with SIGTERM.

The end-to-end cases (a real signal to a subprocess worker) are in
tests/functional/test_faults.py; these pin the decision itself.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType

import pytest

from metricskit import process_hooks
from metricskit.flusher import PeriodicFlusher


class FakeJob:
    shutdown_timeout = 1.0

    def __init__(self) -> None:
        self.calls: list[str] = []

    def _close_at_exit(self) -> None:
        self.calls.append("close_at_exit")

    def _close_interrupted(self) -> None:
        self.calls.append("close_interrupted")

    def _flush_for_stop(self) -> None:
        self.calls.append("flush_for_stop")

    def _after_fork_in_child(self) -> None:
        self.calls.append("after_fork")

    def _run_soon(self, task: Callable[[], None]) -> bool:
        return False  # no flusher thread of its own (a job with sink "off")


@pytest.fixture
def job(monkeypatch: pytest.MonkeyPatch) -> FakeJob:
    fake = FakeJob()
    monkeypatch.setattr(process_hooks, "live_jobs", lambda: [fake])
    return fake


@pytest.fixture
def process_actions(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """What the hook did to the process: signal dispositions set and signals sent."""
    actions: list[object] = []
    monkeypatch.setattr(process_hooks.signal, "signal", lambda sig, action: actions.append(action))
    monkeypatch.setattr(process_hooks.os, "kill", lambda pid, sig: actions.append(("kill", sig)))
    return actions


def test_an_application_handler_gets_the_signal_after_the_jobs_delivered_and_stayed_open(
    job: FakeJob, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[int, list[str]]] = []

    def app_handler(signum: int, frame: FrameType | None) -> None:
        seen.append((signum, list(job.calls)))

    monkeypatch.setattr(process_hooks, "_previous_sigterm", app_handler)
    process_hooks._on_sigterm(signal.SIGTERM, None)
    assert job.calls == ["flush_for_stop"]
    assert seen == [(signal.SIGTERM, ["flush_for_stop"])]


def test_an_ignored_sigterm_closes_the_jobs_and_the_process_goes_on(
    job: FakeJob, monkeypatch: pytest.MonkeyPatch, process_actions: list[object]
) -> None:
    """Ignoring SIGTERM ends in SIGKILL at the stop timeout, which runs no exit hook: the
    jobs close now, while they can, and nothing ends the process."""
    monkeypatch.setattr(process_hooks, "_previous_sigterm", signal.SIG_IGN)
    process_hooks._on_sigterm(signal.SIGTERM, None)
    assert job.calls == ["close_interrupted"]
    assert process_actions == []


def test_the_default_action_closes_the_jobs_then_ends_the_process(
    job: FakeJob, monkeypatch: pytest.MonkeyPatch, process_actions: list[object]
) -> None:
    monkeypatch.setattr(process_hooks, "_previous_sigterm", signal.SIG_DFL)
    process_hooks._on_sigterm(signal.SIGTERM, None)
    assert job.calls == ["close_interrupted"]
    assert process_actions == [signal.SIG_DFL, ("kill", signal.SIGTERM)]


class MeetingJob(FakeJob):
    """Closing waits until every other job is closing too: only a parallel close passes."""

    def __init__(self, meeting: threading.Barrier) -> None:
        super().__init__()
        self.meeting = meeting

    def _close_at_exit(self) -> None:
        try:
            self.meeting.wait()
            self.calls.append("closed together")
        except threading.BrokenBarrierError:
            self.calls.append("closed alone")


def test_jobs_left_open_at_exit_close_in_parallel(monkeypatch: pytest.MonkeyPatch) -> None:
    """Closed one after the other, N jobs with a hung endpoint would hold the exit for N
    shutdown timeouts; ECS kills the task after 30 s."""
    meeting = threading.Barrier(4, timeout=FakeJob.shutdown_timeout / 2)
    jobs = [MeetingJob(meeting) for _ in range(4)]
    monkeypatch.setattr(process_hooks, "live_jobs", lambda: jobs)
    process_hooks._close_all()
    assert [job.calls for job in jobs] == [["closed together"]] * 4


def test_live_jobs_is_safe_while_other_threads_create_and_close_jobs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The SIGTERM handler lists the live jobs on the main thread, whatever other threads
    are doing; a WeakSet raised "Set changed size during iteration" here."""
    monkeypatch.setattr(process_hooks, "_install_once", lambda: None)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: widen every window
    stop = threading.Event()

    def churn() -> None:
        while not stop.is_set():
            jobs = [FakeJob() for _ in range(20)]
            for job in jobs:
                process_hooks.track(job)
            for job in jobs[::2]:
                process_hooks.untrack(job)
            del jobs  # the others are collected: their references die

    threads = [threading.Thread(target=churn) for _ in range(2)]
    errors: list[BaseException] = []
    try:
        for thread in threads:
            thread.start()
        for _ in range(20_000):
            try:
                process_hooks.live_jobs()
            except RuntimeError as error:
                errors.append(error)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        sys.setswitchinterval(interval)
    assert errors == []


def refuse_new_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """What Python 3.12.0 to 3.12.2 do inside exit handlers."""

    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't create new thread at interpreter shutdown")

    monkeypatch.setattr(threading.Thread, "start", refuse)


def test_where_no_thread_can_start_at_exit_jobs_without_a_flusher_close_in_place(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A job with no flusher thread (nothing to deliver) is closed on the exit hook's own."""
    jobs = [FakeJob() for _ in range(3)]
    monkeypatch.setattr(process_hooks, "live_jobs", lambda: jobs)
    refuse_new_threads(monkeypatch)
    process_hooks._close_all()
    assert [job.calls for job in jobs] == [["close_at_exit"]] * 3


class FlusherJob(MeetingJob):
    """A job with a running flusher thread, whose close meets the others' (or hangs)."""

    def __init__(self, meeting: threading.Barrier, hang: threading.Event | None = None) -> None:
        super().__init__(meeting)
        self.hang = hang
        self.closed_on: list[str] = []
        self.flusher = PeriodicFlusher(lambda: None, 3600.0, f"flusher-{id(self)}")
        self.flusher.start()

    def _run_soon(self, task: Callable[[], None]) -> bool:
        return self.flusher.run_soon(task)

    def _close_at_exit(self) -> None:
        self.closed_on.append(threading.current_thread().name)
        if self.hang is not None:
            self.hang.wait()  # an export that never answers
        super()._close_at_exit()


def test_where_no_thread_can_start_at_exit_jobs_close_in_parallel_on_their_flushers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Python 3.12.0 to 3.12.2 refuse new threads inside exit handlers. Closed in place, one
    after the other, N jobs with a hung endpoint held the exit for N times the export's own
    timeout; on their flusher threads (daemons, still running) they close together."""
    meeting = threading.Barrier(3, timeout=FakeJob.shutdown_timeout / 2)
    jobs = [FlusherJob(meeting) for _ in range(3)]
    monkeypatch.setattr(process_hooks, "live_jobs", lambda: jobs)
    refuse_new_threads(monkeypatch)
    process_hooks._close_all()
    assert [job.calls for job in jobs] == [["closed together"]] * 3
    assert [job.closed_on for job in jobs] == [[job.flusher._name] for job in jobs]
    for job in jobs:
        job.flusher.stop(timeout=30)


def test_where_no_thread_can_start_at_exit_a_hung_close_does_not_hold_the_exit(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The exit hook returns (at its deadline) while the close it handed over is still stuck
    on an endpoint that never answers: it never waited on the hung call itself."""
    hung = threading.Event()  # set by nobody until the hook has returned
    jobs = [FlusherJob(threading.Barrier(1), hang=hung) for _ in range(2)]
    monkeypatch.setattr(process_hooks, "live_jobs", lambda: jobs)
    refuse_new_threads(monkeypatch)
    try:
        with caplog.at_level(logging.WARNING, logger="metricskit"):
            process_hooks._close_all()
        assert not hung.is_set()
        assert [job.closed_on for job in jobs] == [[job.flusher._name] for job in jobs]
        assert "2 job(s) still flushing at the exit deadline" in caplog.text
    finally:
        hung.set()  # let the flusher threads go
        for job in jobs:
            job.flusher.stop(timeout=30)
