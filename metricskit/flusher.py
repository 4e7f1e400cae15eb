"""The background flusher: a named daemon thread that calls ``flush`` every interval.

It waits on an Event (so stopping is immediate, never a sleep loop), survives any exception
from ``flush``, and is restarted in a forked child by the job that owns it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

logger = logging.getLogger("metricskit")


class PeriodicFlusher:
    """Calls ``flush()`` every ``interval`` seconds on a daemon thread until stopped."""

    def __init__(self, flush: Callable[[], object], interval: float, name: str) -> None:
        self._flush = flush
        self._interval = interval
        self._name = name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._flush()
            except Exception:  # the flusher must outlive any bug below it
                logger.exception("metricskit: periodic flush failed; will try again")

    def stop(self, timeout: float | None) -> bool:
        """Stop the thread; returns False if it was still busy after ``timeout`` seconds."""
        self._stop.set()
        thread = self._thread
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def restart_after_fork(self) -> None:
        """In a forked child the thread is gone; start a fresh one."""
        self._thread = None
        self.start()
