"""Helpers for testing code instrumented with metricskit.

>>> from metricskit.testing import capture
>>> with capture() as sink:                    # doctest: +SKIP
...     run_my_worker()                         # builds metricskit.Job(...) without a sink
>>> assert sink.sum("RecordsProcessed") == 100  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from metricskit.job import _capture_sink, pop_capture, push_capture
from metricskit.sinks.memory import MemorySink


@contextmanager
def capture() -> Iterator[MemorySink]:
    """Jobs created inside the block without an explicit ``sink`` record into one MemorySink.

    That holds on every thread, including threads started inside the block (a
    ``ThreadPoolExecutor``'s workers) and threads already running, as long as the block is
    open. Nested blocks: the innermost wins. Blocks open on several threads at once: a job
    built in a block's own context (its thread, or a task that copied its context) records
    into that block's sink; a job on any other thread into the block opened last.
    Jobs still closed inside the block have flushed everything into it by the block's end.
    """
    sink = MemorySink()
    token = _capture_sink.set(sink)
    push_capture(sink)
    try:
        yield sink
    finally:
        pop_capture(sink)
        _capture_sink.reset(token)


__all__ = ["MemorySink", "capture"]
