"""Lock-light aggregation cells: the only state the record path touches.

Each cell keeps memory bounded by its series (and, for distributions, by its buckets), never
by the number of records. The flusher reads them by *taking* what accumulated since the last
read, so a period is never counted twice and nothing recorded concurrently is lost.

Why the shapes below (measured in bench/hotpath.py):

* A counter's ``+= 1`` under a ``threading.Lock`` costs ~150 ns in CPython; calling
  ``next()`` on an ``itertools.count`` is one C call (~50 ns) and is atomic under the GIL.
  So ``processed()`` ticks a count, and the reader recovers the total from the count's own
  next value (subtracting its own reads). ``add(n)`` for n != 1 takes a lock instead.
* A distribution appends the raw value to a small ``array('d')`` (one atomic C call) and
  folds the buffer into log-spaced buckets every ``BUFFER_CAPACITY`` values, so the bucket
  maths runs without a lock per value. When numpy is importable the fold is vectorized
  (~30 ns per value instead of ~140 ns in pure Python); without it (e.g. in Lambda) the
  pure-Python fold gives identical buckets.
"""

from __future__ import annotations

import itertools
import math
import threading
from array import array
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

from metricskit import limits
from metricskit.lock_holders import holds_lock

RELATIVE_ACCURACY: Final = 0.005
"""Every bucket representative is within 0.5% of each value it stands for, which keeps
percentiles computed from the published Values/Counts within 1% of the exact ones."""
_GAMMA: Final = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
_INV_LOG_GAMMA: Final = 1.0 / math.log(_GAMMA)
_REPRESENTATIVE_FACTOR: Final = 2.0 / (1.0 + _GAMMA)
BUFFER_CAPACITY: Final = 4096
"""Raw values a distribution holds before folding them into buckets (32 KiB)."""

DropReporter = Callable[[str, object], None]
"""Called with (metric name, bad value) when a value is dropped at record time."""


_numpy: Any = None
_numpy_checked = False


def _load_numpy() -> Any:
    """numpy when installed (imported on first fold, never at import), else None."""
    global _numpy, _numpy_checked
    if not _numpy_checked:
        found: Any = None
        try:
            import numpy

            found = numpy
        except ImportError:  # pragma: no cover - depends on the install
            pass
        _numpy, _numpy_checked = found, True
    return _numpy


def _fold_positive_numpy(np: Any, values: array[float], into: dict[int, int]) -> bool:
    """Vectorized fold when every value is within [MIN_ABS_VALUE, MAX_ABS_VALUE].

    Returns False, folding nothing, when some value is not (zero, negative, NaN, inf, out of
    range): the caller then takes the per-value path, which sorts those out.
    """
    raw = np.frombuffer(values, dtype=np.float64)
    # NaN fails both comparisons, so this also rules out NaN and +/-inf.
    if not (
        np.all(raw >= limits.MIN_ABS_VALUE) and np.all(raw <= limits.MAX_ABS_VALUE)
    ):  # fmt: skip
        return False
    indices = np.ceil(np.log(raw) * _INV_LOG_GAMMA).astype(np.int64)
    lowest = int(indices.min())
    counts = np.bincount(indices - lowest)
    present = np.flatnonzero(counts)
    for index, count in zip((present + lowest).tolist(), counts[present].tolist(), strict=True):
        into[index] = into.get(index, 0) + count
    return True


def bucket_index(value: float) -> int:
    """The log-spaced bucket of a positive value: bucket i covers (gamma^(i-1), gamma^i]."""
    return math.ceil(math.log(value) * _INV_LOG_GAMMA)


def bucket_representative(index: int) -> float:
    """The value published for bucket ``index``: within RELATIVE_ACCURACY of its members.

    Kept within CloudWatch's range (limits.MIN_ABS_VALUE .. MAX_ABS_VALUE): the buckets at
    either end reach past it, and one value outside would make CloudWatch refuse a whole
    request. Clamped, a representative stays within RELATIVE_ACCURACY of its members, all of
    which are in the range.
    """
    representative = _REPRESENTATIVE_FACTOR * _GAMMA**index
    return min(limits.MAX_ABS_VALUE, max(limits.MIN_ABS_VALUE, representative))


def is_publishable(value: float) -> bool:
    """True when CloudWatch accepts ``value``'s magnitude: finite and at most
    limits.MAX_ABS_VALUE (one closer to zero than MIN_ABS_VALUE goes out as 0)."""
    return -limits.MAX_ABS_VALUE <= value <= limits.MAX_ABS_VALUE


class CounterCell:
    """A monotonically growing count; the flusher takes deltas.

    ``tick`` is the record path for n=1: a bound ``itertools.count.__next__``.
    """

    __slots__ = ("_added", "_lock", "_reads", "_reported", "tick")

    def __init__(self) -> None:
        self.tick: Callable[[], int] = itertools.count().__next__
        self._lock = threading.Lock()
        self._added = 0.0
        self._reads = 0
        self._reported = 0.0

    @holds_lock
    def add(self, n: float) -> bool:
        """Add ``n`` (finite, >= 0). Returns False, recording nothing, for a bad ``n``."""
        try:
            if not 0 <= n <= limits.MAX_ABS_VALUE:
                return False
            n = float(n)  # a Decimal (boto3's DynamoDB numbers) adds to a float only as one
        except (TypeError, ValueError, ArithmeticError):  # Decimal NaN raises on comparison
            return False
        with self._lock:
            self._added += n
        return True

    @holds_lock
    def total(self) -> float:
        """Everything counted so far (ticks plus adds)."""
        with self._lock:
            # next() returns how many ticks came before it, our own earlier reads included.
            ticks = self.tick() - self._reads
            self._reads += 1
            return ticks + self._added

    def take_delta(self) -> float:
        """What was counted since the previous take_delta()."""
        total = self.total()
        delta = total - self._reported
        self._reported = total
        return delta

    def reset_after_fork(self) -> None:
        """In a forked child: drop the parent's unreported counts (the parent reports them)."""
        self._lock = threading.Lock()
        self._reported = self.total()


class GaugeCell:
    """The last value set in the period."""

    __slots__ = ("_lock", "_value", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._value: float | None = None

    @holds_lock
    def set(self, value: float) -> bool:
        """Keep ``value`` as the period's last. Returns False, keeping nothing, when bad."""
        try:
            ok = is_publishable(value)
            number = float(value)
        except (TypeError, ValueError, ArithmeticError):  # a non-number, a Decimal NaN
            return False
        if ok:
            with self._lock:
                self._value = number
        return ok

    def take(self) -> float | None:
        """The last value since the previous take(), or None when nothing was set."""
        with self._lock:
            value, self._value = self._value, None
        return value

    def reset_after_fork(self) -> None:
        self._lock = threading.Lock()
        self._value = None


class Timer:
    """A ``with`` block's elapsed time, in milliseconds on ``clock``, passed to ``record``.

    ``job.timer(name)`` returns one that records into the distribution ``name``: an instance
    of the distribution's own subclass (:meth:`DistributionCell.timer_type`), whose methods
    hold the clock and the cell's buffer as closure variables. Creating one of those runs no
    Python ``__init__`` and leaving the block appends straight to the buffer, so
    ``with job.timer(name)`` costs ~350-360 ns against ~550 ns for this class, which carries its
    callback and clock (bench/hotpath.py). This class stays for any other callback.

    >>> with Timer(latency.observe, time.monotonic):     # doctest: +SKIP
    ...     producer.produce(row)
    """

    __slots__ = ("_clock", "_record", "_start")

    def __init__(self, record: Callable[[float], None], clock: Callable[[], float]) -> None:
        self._record = record
        self._clock = clock
        self._start = 0.0

    def __enter__(self) -> Timer:
        self._start = self._clock()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._record((self._clock() - self._start) * 1000.0)


class DistributionCell:
    """Values -> counts in log-spaced buckets with a bounded relative error."""

    __slots__ = (
        "_buffer",
        "_fold_lock",
        "_negative",
        "_on_drop",
        "_positive",
        "_zero",
        "name",
        "unit",
    )

    def __init__(self, name: str, on_drop: DropReporter, unit: str = "Milliseconds") -> None:
        self.name = name
        self.unit = unit
        self._on_drop = on_drop
        self._buffer = array("d")
        self._fold_lock = threading.Lock()
        self._positive: dict[int, int] = {}
        self._negative: dict[int, int] = {}
        self._zero = 0

    def record(self, value: float) -> None:
        """Add one observation. Never raises; a non-number is dropped and reported."""
        buffer = self._buffer
        try:
            buffer.append(value)
        except (TypeError, ValueError, ArithmeticError):  # a non-number, 10**400, Decimal sNaN
            self._on_drop(self.name, value)
            return
        if len(buffer) >= BUFFER_CAPACITY:
            self.fold()

    observe = record
    """The public name of :meth:`record` on a handle from ``job.distribution(name)``."""

    def timer_type(self, clock: Callable[[], float]) -> Callable[[], Timer]:
        """The :class:`Timer` subclass that times blocks on ``clock`` into this cell.

        Called with no arguments it makes a timer.

        The buffer keeps its identity for the cell's lifetime (folds and forks empty it in
        place), so the closure below never writes to a stale one.
        """
        buffer, fold = self._buffer, self.fold
        append = buffer.append

        class CellTimer(Timer):
            __slots__ = ()
            # object's C-level __init__: creating a timer runs no Python frame (its
            # _record and _clock slots stay unset; the closure holds both instead).
            if TYPE_CHECKING:

                def __init__(self) -> None: ...

            else:
                __init__ = object.__init__

            def __enter__(self) -> CellTimer:
                self._start = clock()
                return self

            def __exit__(
                self,
                exc_type: type[BaseException] | None,
                exc: BaseException | None,
                tb: TracebackType | None,
            ) -> None:
                # A float difference always appends, so no record()-style TypeError guard.
                append((clock() - self._start) * 1000.0)
                if len(buffer) >= BUFFER_CAPACITY:
                    fold()

        return CellTimer

    @holds_lock
    def fold(self) -> None:
        """Move buffered raw values into buckets.

        Appends that race with this stay in the buffer: only the first ``n`` values, read
        once, are folded and then deleted (both single C calls under the GIL).
        """
        with self._fold_lock:
            buffer = self._buffer
            n = len(buffer)
            if n == 0:
                return
            values = buffer[:n]
            del buffer[:n]
            positive, negative = self._positive, self._negative
            low, high = limits.MIN_ABS_VALUE, limits.MAX_ABS_VALUE
            np = _load_numpy()
            if np is not None and _fold_positive_numpy(np, values, positive):
                return
            log, ceil, inv = math.log, math.ceil, _INV_LOG_GAMMA
            for value in values:
                if low <= value <= high:
                    index = ceil(log(value) * inv)
                    positive[index] = positive.get(index, 0) + 1
                elif -high <= value <= -low:
                    index = ceil(log(-value) * inv)
                    negative[index] = negative.get(index, 0) + 1
                elif -low < value < low:
                    self._zero += 1
                else:  # NaN, +/-inf, or beyond CloudWatch's range
                    self._on_drop(self.name, value)

    def take(self) -> dict[float, float]:
        """Representative value -> count since the previous take()."""
        self.fold()
        with self._fold_lock:
            positive, self._positive = self._positive, {}
            negative, self._negative = self._negative, {}
            zero, self._zero = self._zero, 0
        counts: dict[float, float] = {}
        # Added, not set: clamped to the range's edge, two buckets could share a value.
        for index, count in positive.items():
            value = bucket_representative(index)
            counts[value] = counts.get(value, 0.0) + count
        for index, count in negative.items():
            value = -bucket_representative(index)
            counts[value] = counts.get(value, 0.0) + count
        if zero:
            counts[0.0] = float(zero)
        return counts

    def reset_after_fork(self) -> None:
        self._fold_lock = threading.Lock()
        del self._buffer[:]  # in place: timer types hold this buffer (see timer_type)
        self._positive, self._negative, self._zero = {}, {}, 0
