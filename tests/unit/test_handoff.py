"""Handoff: work run off the caller's thread, waited for with a bound."""

from __future__ import annotations

import signal
import sys
import threading
import time
from types import FrameType

import pytest

from metricskit.handoff import Handoff

WAIT = 1.0


def no_fallback(task: object) -> bool:
    return False


def test_a_wait_that_a_signal_handler_outlasts_still_sees_the_finished_work() -> None:
    main = threading.get_ident()
    release = threading.Event()
    run = Handoff("work")

    def work() -> bool:
        # Signal main once it waits (see tests/functional/test_close_interrupted.py).
        while sys._current_frames()[main].f_code.co_name != "wait":
            time.sleep(0.01)
        time.sleep(0.05)
        signal.pthread_kill(main, signal.SIGUSR1)
        return release.wait(30)

    def handler(signum: int, frame: FrameType | None) -> None:
        # Like an application's handler that closes or flushes: it lets the work finish,
        # then takes longer than the whole time the interrupted wait had.
        release.set()
        while not run.finished:
            time.sleep(0.01)
        time.sleep(WAIT + 0.2)

    previous = signal.signal(signal.SIGUSR1, handler)
    try:
        run.launch(work, no_fallback)
        assert run.wait(WAIT) is True
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert run.result is True


def test_an_abandoned_handoff_that_never_launched_stops_its_waiters() -> None:
    run = Handoff("never launched")
    assert not run.launched
    run.abandon()
    assert run.wait(30.0) is True  # at once: no work will ever finish it
    assert run.result is None


def test_abandon_leaves_launched_work_to_finish_on_its_own() -> None:
    release = threading.Event()
    run = Handoff("launched")
    run.launch(lambda: release.wait(30), no_fallback)
    run.abandon()
    assert not run.finished
    release.set()
    assert run.wait(30.0) is True
    assert run.result is True


@pytest.mark.parametrize("can_start", [True, False])
def test_launched_is_set_wherever_the_work_runs(
    monkeypatch: pytest.MonkeyPatch, can_start: bool
) -> None:
    if not can_start:

        def refuse(self: threading.Thread) -> None:
            raise RuntimeError("can't create new thread at interpreter shutdown")

        monkeypatch.setattr(threading.Thread, "start", refuse)
    run = Handoff("work")
    run.launch(lambda: True, no_fallback)  # without a thread: on the caller's
    assert run.launched
    assert run.wait(30.0) is True
