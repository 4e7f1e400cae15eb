"""The background flusher: a named daemon thread that calls ``flush`` on a fixed schedule.

Flushes are due at ``start + k x interval`` (a :class:`Schedule`), however long each one
takes: waiting a full interval *after* each flush would make every period the interval plus
the flush's duration, so now and then a CloudWatch minute would get no datapoint, and the
stalled alarm would count it as a stall. A flush that overran is followed by the next
deadline still ahead, never by a burst of catch-up flushes.

The thread waits on an Event (so stopping is immediate, never a sleep loop), survives any
exception from ``flush``, and is restarted in a forked child by the job that owns it. It
also runs work handed to it (:meth:`PeriodicFlusher.run_soon`), for where Python starts no
new thread: 3.12.0 to 3.12.2 refuse one inside exit handlers, where a job's last delivery
must still be bounded by its shutdown timeout (see :mod:`metricskit.handoff`).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable

logger = logging.getLogger("metricskit")

Wait = Callable[[threading.Event, float], object]
"""How the thread waits for ``timeout`` seconds or until the event is set."""


def _wait_on_event(event: threading.Event, timeout: float) -> object:
    return event.wait(timeout)


class Schedule:
    """Flush deadlines ``start + k * interval``; after a flush, the first one still ahead.

    >>> schedule = Schedule(start=0.0, interval=60.0)
    >>> schedule.due
    60.0
    >>> schedule.flushed(now=61.5)  # a 1.5 s flush: the next one is still due at 120
    >>> schedule.due
    120.0
    >>> schedule.flushed(now=250.0)  # one that overran skips to the next deadline ahead
    >>> schedule.due
    300.0
    """

    def __init__(self, start: float, interval: float) -> None:
        self._start = start
        self._interval = interval
        self._count = 1

    @property
    def due(self) -> float:
        """When the next flush is due, on the clock ``start`` was read from."""
        return self._start + self._count * self._interval

    def flushed(self, now: float) -> None:
        """A flush ended at ``now``: move to the next deadline after it."""
        count = max(self._count + 1, math.floor((now - self._start) / self._interval) + 1)
        while self._start + count * self._interval <= now:  # floating-point rounding
            count += 1
        self._count = count


class PeriodicFlusher:
    """Calls ``flush()`` every ``interval`` seconds on a daemon thread until stopped.

    >>> flusher = PeriodicFlusher(job_flush, 60.0, name="metricskit-flusher-x")  # doctest: +SKIP
    >>> flusher.start(); ...; flusher.stop(timeout=10.0)                          # doctest: +SKIP

    ``clock`` (monotonic seconds) and ``wait`` are injectable so the schedule can be tested
    without waiting; they are not the job's clock, which tests move by hand.
    """

    def __init__(
        self,
        flush: Callable[[], object],
        interval: float,
        name: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        wait: Wait = _wait_on_event,
    ) -> None:
        self._flush = flush
        self._interval = interval
        self._name = name
        self._clock = clock
        self._wait = wait
        self._forget_thread()

    def _forget_thread(self) -> None:
        self._stop = threading.Event()
        self._wake = threading.Event()  # set by stop() and run_soon()
        self._tasks: list[Callable[[], None]] = []
        self._tasks_lock = threading.Lock()
        self._accepting = False  # whether the thread will still run tasks handed to it
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._forget_thread()
        self._accepting = True
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        schedule = Schedule(self._clock(), self._interval)
        try:
            while True:
                self._run_tasks()
                if self._stop.is_set():
                    return
                delay = schedule.due - self._clock()
                if delay > 0:
                    self._wait(self._wake, delay)
                    # Cleared before the tasks and the stop flag are looked at again, so a
                    # wake-up set meanwhile is never lost.
                    self._wake.clear()
                    continue
                try:
                    self._flush()
                except Exception:  # the flusher must outlive any bug below it
                    logger.exception("metricskit: periodic flush failed; will try again")
                schedule.flushed(self._clock())
        finally:
            with self._tasks_lock:
                self._accepting = False
            self._run_tasks()  # handed over before the thread stopped accepting

    def _run_tasks(self) -> None:
        with self._tasks_lock:
            tasks, self._tasks = self._tasks, []
        for task in tasks:
            try:
                task()
            except Exception:
                logger.exception("metricskit: work handed to the flusher failed")

    def run_soon(self, task: Callable[[], None]) -> bool:
        """Run ``task`` on the flusher's thread once it is free (after a flush under way).

        False when there is no such thread to run it: never started, stopped, or the caller
        is that thread itself (it would wait for itself). The caller waits for ``task``
        itself, with its own bound.
        """
        thread = self._thread
        if thread is None or thread is threading.current_thread() or not thread.is_alive():
            return False
        with self._tasks_lock:
            if not self._accepting:
                return False
            self._tasks.append(task)
        self._wake.set()
        return True

    def stop(self, timeout: float | None) -> bool:
        """Stop the thread; returns False if it was still busy after ``timeout`` seconds.

        A flush under way and the tasks already handed over are finished first.
        """
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def restart_after_fork(self) -> None:
        """In a forked child the thread is gone; start a fresh one."""
        self.start()

    def forget_thread_after_fork(self) -> None:
        """In a forked child that will not flush: drop the parent's thread and locks."""
        self._forget_thread()
