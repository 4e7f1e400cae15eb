"""Helpers for testing code instrumented with metricskit.

>>> from metricskit.testing import capture
>>> with capture() as sink:                    # doctest: +SKIP
...     run_my_worker()                         # builds metricskit.Job(...) without a sink
>>> assert sink.sum("RecordsProcessed") == 100  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from metricskit.job import _capture_sink
from metricskit.sinks.memory import MemorySink


@contextmanager
def capture() -> Iterator[MemorySink]:
    """Jobs created inside the block without an explicit ``sink`` record into one MemorySink.

    Jobs still closed inside the block have flushed everything into it by the block's end.
    """
    sink = MemorySink()
    token = _capture_sink.set(sink)
    try:
        yield sink
    finally:
        _capture_sink.reset(token)


__all__ = ["MemorySink", "capture"]
