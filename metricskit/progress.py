"""Progress without a counting pass, and the terminal progress bar.

``ByteProgressReader`` wraps a binary file object and counts the bytes consumed as
processed, against the object's size as the total: no line count needed. On a recorder fed
this way, RecordsDone/RecordsTotal/RecordsProcessed are *bytes* (CloudWatch still says
``Count``), ProgressPercentage is the share of bytes read and ETASeconds the time to read the
rest. Use a stage (``job.stage("read")``) so the job's own counters stay in records.
For a compressed object, wrap the *compressed* stream and decompress on top of the wrapper,
so the total (the object's size) and the bytes counted are in the same unit.

``TerminalProgress`` draws a tqdm bar from ``job.status()`` twice a second on its own daemon
thread: the same done, total, rate and ETA as the metrics, and nothing on the record path.
"""

from __future__ import annotations

import io
import logging
import os
import stat
import sys
import threading
from collections.abc import Iterator
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any

from metricskit.errors import ConfigurationError

if TYPE_CHECKING:
    from metricskit.recorder import JobStatus, Recorder

logger = logging.getLogger("metricskit")

DEFAULT_REFRESH_SECONDS = 0.5


class ByteProgressReader(io.RawIOBase):
    """A read-only binary stream that reports the bytes read to ``recorder.processed``.

    >>> reading = job.stage("read")                                          # doctest: +SKIP
    >>> with open("rows.csv", "rb") as raw:                                  # doctest: +SKIP
    ...     for line in io.BufferedReader(ByteProgressReader(raw, reading)):
    ...         handle(line)

    ``size`` (bytes) is the total; when omitted it is what is left to read from the current
    position (a regular file's ``fstat`` size, or a seek to the end for seekable streams; a
    pipe or socket has none), set on the recorder unless it has a total.
    """

    def __init__(
        self, fileobj: IO[bytes] | Any, recorder: Recorder, *, size: int | None = None
    ) -> None:
        super().__init__()
        if not callable(getattr(fileobj, "read", None)):
            raise ConfigurationError(f"fileobj must be a binary file object, got {fileobj!r}")
        self._file = fileobj
        self._processed = recorder.processed
        self.size = size if size is not None else _size_of(fileobj)
        if size is not None and (not isinstance(size, int) or size < 0):
            raise ConfigurationError(f"size must be a number of bytes >= 0, got {size!r}")
        if self.size is not None and recorder.total is None:
            recorder.set_total(self.size)
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        readinto = getattr(self._file, "readinto", None)
        if callable(readinto):
            got = readinto(view) or 0
        else:
            data = self._file.read(len(view))
            got = len(data)
            view[:got] = data
        self._count(got)
        return int(got)

    def read(self, size: int = -1) -> bytes:
        data: bytes = self._file.read(size)
        self._count(len(data))
        return data

    def readline(self, size: int | None = -1) -> bytes:
        data: bytes = self._file.readline(-1 if size is None else size)
        self._count(len(data))
        return data

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line

    def _count(self, n: int) -> None:
        if n:
            self.bytes_read += n
            self._processed(n)

    def close(self) -> None:
        try:
            self._file.close()
        finally:
            super().close()


def _size_of(fileobj: Any) -> int | None:
    try:
        info = os.fstat(fileobj.fileno())
        # Only a regular file's st_size is its length; a pipe's or socket's 0 means unknown.
        if stat.S_ISREG(info.st_mode):
            # What is left from here: the reader counts only the bytes it reads.
            return max(0, info.st_size - int(fileobj.tell()))
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        pass
    try:
        if fileobj.seekable():
            here = fileobj.tell()
            end = int(fileobj.seek(0, io.SEEK_END))
            fileobj.seek(here)
            return end - int(here)
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        pass
    return None


def progress_bar_wanted(setting: bool | None, stream: Any = None) -> bool:
    """The bar is on when asked for, else only when ``stream`` (stderr) is a terminal."""
    if setting is not None:
        return setting
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class TerminalProgress:
    """A tqdm bar refreshed from ``status()`` on a daemon thread (about twice a second).

    >>> bar = TerminalProgress(job.status, desc="csv-job-1")   # doctest: +SKIP
    >>> bar.start(); ...; bar.close()                          # doctest: +SKIP
    """

    def __init__(
        self,
        status: Any,
        *,
        desc: str,
        interval: float = DEFAULT_REFRESH_SECONDS,
        file: Any = None,
    ) -> None:
        try:
            from tqdm import tqdm
        except ImportError as exc:
            raise ConfigurationError(
                "the progress bar needs tqdm: install metricskit's progress extra "
                "(pip install '.[progress]' in a checkout)"
            ) from exc
        self._status = status
        self._interval = interval
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._bar = tqdm(
            total=None,
            desc=desc,
            file=file if file is not None else sys.stderr,
            leave=True,
            dynamic_ncols=True,
            mininterval=0,
            smoothing=0,
        )
        self._thread = threading.Thread(
            target=self._run, name=f"metricskit-progress-{desc}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.refresh()

    def refresh(self) -> None:
        """Draw the bar from a fresh ``status()``. Never raises."""
        try:
            status: JobStatus = self._status()
            with self._lock:
                render(self._bar, status)
        except Exception:  # a display problem must never reach the worker
            logger.debug("metricskit: progress bar refresh failed", exc_info=True)

    def close(self) -> None:
        """Stop the thread, draw the final state and release the terminal line."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=2 * self._interval + 1)
        self.refresh()
        with self._lock:
            self._bar.close()

    def __enter__(self) -> TerminalProgress:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def render(bar: Any, status: JobStatus) -> None:
    """Put ``status`` on a tqdm ``bar``: its numbers, not tqdm's own rate or ETA."""
    rate = "?" if status.rate is None else f"{status.rate:,.1f}/s"
    eta = "?" if status.eta_seconds is None else bar.format_interval(status.eta_seconds)
    if status.total:
        # tqdm forgets the total (an empty bar, no percentage) once n passes it, which
        # happens when a resume re-does rows or the total was an estimate: the bar stops
        # full and the count shows the real number.
        count = "{n_fmt}" if status.done <= status.total else f"{_whole(status.done)}"
        bar.bar_format = "{l_bar}{bar}| " + count + "/{total_fmt} [{elapsed}{postfix}]"
        bar.total = _whole(status.total)
        bar.n = _whole(min(status.done, status.total))
    else:
        bar.bar_format = "{desc}: {n_fmt} [{elapsed}{postfix}]"
        bar.total = None
        bar.n = _whole(status.done)
    bar.set_postfix_str(f"{rate}, ETA {eta}", refresh=False)
    bar.refresh()


def _whole(value: float) -> float | int:
    """Counts are floats inside metricskit; show 4 rather than 4.0."""
    return int(value) if float(value).is_integer() else value


__all__ = ["ByteProgressReader", "TerminalProgress", "progress_bar_wanted", "render"]
