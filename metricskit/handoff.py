"""Work run off the caller's thread, so the caller's wait for it can be bounded.

A network call cannot be interrupted, so a bound on the caller's wait is the only bound that
holds when AWS hangs (ECS sends SIGKILL 30 s after SIGTERM). The work runs on a new daemon
thread. Where Python starts none (3.12.0 to 3.12.2 inside exit handlers: "can't create new
thread at interpreter shutdown"), it is handed to a thread that already runs, a job's
flusher, which daemon threads still are at exit; only when there is no such thread either
does it run on the caller's thread, unbounded.

>>> run = Handoff.start(deliver, name="flush", fallback=flusher.run_soon)  # doctest: +SKIP
>>> run.wait(10.0) and run.result                                      # doctest: +SKIP
True
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

logger = logging.getLogger("metricskit")

Fallback = Callable[[Callable[[], None]], bool]
"""Runs a task on some thread that already exists; False when it cannot take it."""


class Handoff:
    """One piece of work started elsewhere: whether it has finished, and what it returned."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.result: object = None
        """What the work returned; None while it runs, or when it raised."""
        self._finished = threading.Event()
        self._launched = False

    @classmethod
    def start(cls, work: Callable[[], object], *, name: str, fallback: Fallback) -> Handoff:
        """Start ``work`` on a new daemon thread called ``name`` (see the module's docstring
        for where none can start)."""
        handoff = cls(name)
        handoff.launch(work, fallback)
        return handoff

    def launch(self, work: Callable[[], object], fallback: Fallback) -> None:
        """Start ``work`` (once per Handoff): see :meth:`start`."""

        def run() -> None:
            try:
                self.result = work()
            except Exception:  # e.g. a sink's fault: logged, never a dead thread's traceback
                logger.exception("metricskit: %s failed", self.name)
            finally:
                self._finished.set()

        thread = threading.Thread(target=run, name=self.name, daemon=True)
        try:
            thread.start()
            self._launched = True
            return
        except RuntimeError:  # no new thread at interpreter shutdown (3.12.0 to 3.12.2)
            pass
        self._launched = True
        if not fallback(run):
            run()

    @property
    def launched(self) -> bool:
        """True once :meth:`launch` handed the work on (False: an exception, typically from a
        signal handler, cut the caller short before that)."""
        return self._launched

    def abandon(self) -> None:
        """Called when the caller was cut short before (or while) launching: if the work was
        never handed on, count it as finished (result None), so those waiting for it stop
        waiting instead of waiting their whole timeout for work that never runs."""
        if not self._launched:
            self._finished.set()

    @property
    def finished(self) -> bool:
        return self._finished.is_set()

    def wait(self, timeout: float) -> bool:
        """Wait at most ``timeout`` seconds; True when the work has finished.

        Looks once more after the wait: a timed wait that a signal handler interrupted for
        longer than the time left gives up without looking (CPython), although the work may
        have finished meanwhile."""
        return self._finished.wait(max(0.0, timeout)) or self._finished.is_set()
