"""The flusher's schedule and its thread, on an injected clock: no test here waits."""

from __future__ import annotations

import doctest
import threading

import pytest

from metricskit import flusher as flusher_module
from metricskit.flusher import PeriodicFlusher
from tests.conftest import FakeClock

INTERVAL = 60.0


def fake_wait(clock: FakeClock) -> flusher_module.Wait:
    """Waiting moves the fake clock by the whole timeout unless woken first."""

    def wait(event: threading.Event, timeout: float) -> bool:
        if event.is_set():
            return True
        clock.advance(timeout)
        return False

    return wait


def run_flushes(durations: list[float]) -> tuple[float, list[float]]:
    """Run a flusher on a fake clock whose flushes take ``durations`` (in intervals); the
    clock's start and when each flush began."""
    clock = FakeClock()
    start = clock.now
    began: list[float] = []

    def flush() -> None:
        began.append(clock.now)
        clock.advance(durations[len(began) - 1] * INTERVAL)
        if len(began) == len(durations):
            flusher.stop(timeout=None)  # from the flusher's own thread: returns at once

    flusher = PeriodicFlusher(flush, INTERVAL, "test-flusher", clock=clock, wait=fake_wait(clock))
    flusher.start()
    assert flusher._thread is not None
    flusher._thread.join(30)  # a liveness bound: fake time makes it instant
    assert not flusher.running
    return start, began


def test_schedule_examples() -> None:
    result = doctest.testmod(flusher_module, report=False)
    assert result.attempted > 0
    assert result.failed == 0


def test_flushes_stay_on_the_interval_grid_however_long_each_takes() -> None:
    """Waiting a full interval after each flush made every period interval + flush time:
    with 60 s flushes taking 40% of it, a CloudWatch minute went empty every few minutes."""
    start, began = run_flushes([0.4] * 6)
    assert began == [start + k * INTERVAL for k in range(1, 7)]


def test_a_flush_that_overran_is_followed_by_the_next_deadline_ahead_not_a_burst() -> None:
    start, began = run_flushes([2.5, 0.1, 0.1])
    # The first ran from 1 to 3.5 intervals: deadlines 2 and 3 are skipped, not caught up.
    assert began == [start + INTERVAL, start + 4 * INTERVAL, start + 5 * INTERVAL]


def test_a_flush_that_ends_exactly_on_a_deadline_waits_for_the_next_one() -> None:
    start, began = run_flushes([1.0, 0.0])
    assert began == [start + INTERVAL, start + 3 * INTERVAL]


def test_stop_wakes_the_waiting_thread_and_tasks_run_on_it() -> None:
    flushes: list[float] = []
    flusher = PeriodicFlusher(lambda: flushes.append(1.0), 3600.0, "test-flusher")
    flusher.start()
    ran_on: list[str] = []
    ran = threading.Event()

    def task() -> None:
        ran_on.append(threading.current_thread().name)
        ran.set()

    assert flusher.run_soon(task)
    assert ran.wait(30)
    assert ran_on == ["test-flusher"]
    assert flusher.stop(timeout=30)
    assert flushes == []  # woken, never due
    assert not flusher.run_soon(task)  # no thread left to run it


def test_a_task_handed_over_from_the_flushers_own_thread_is_refused() -> None:
    """It would wait for itself: the caller runs it in place instead."""
    answers: list[bool] = []
    flusher: PeriodicFlusher

    def task() -> None:
        answers.append(flusher.run_soon(lambda: None))

    flusher = PeriodicFlusher(lambda: None, 3600.0, "test-flusher")
    flusher.start()
    assert flusher.run_soon(task)
    assert flusher.stop(timeout=30)
    assert answers == [False]


def test_a_flush_that_raises_does_not_end_the_schedule(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    calls: list[float] = []

    def flush() -> None:
        calls.append(clock.now)
        if len(calls) == 3:
            flusher.stop(timeout=None)
        raise RuntimeError("a bug below the flusher")

    flusher = PeriodicFlusher(flush, INTERVAL, "test-flusher", clock=clock, wait=fake_wait(clock))
    flusher.start()
    assert flusher._thread is not None
    flusher._thread.join(30)
    assert len(calls) == 3
    assert "periodic flush failed" in caplog.text
