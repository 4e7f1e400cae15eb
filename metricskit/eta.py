"""Rate and ETA estimation from (time, done) samples.

The original plan divided what remains by the overall average rate, which is slow to notice
a slowdown and stays optimistic through stalls. This estimator blends a recent window with
the overall average so that a rate change shows within a window, and it reports no ETA while
the job is stalled rather than a misleadingly near one.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Estimate:
    """A rate (records/s, None until measurable) and an ETA (s, None when unknown)."""

    rate: float | None
    eta_seconds: float | None


class EtaEstimator:
    """Keeps a bounded window of progress samples and estimates rate and time remaining.

    >>> est = EtaEstimator(window_seconds=60)
    >>> est.update(0.0, 0); est.update(10.0, 100)
    >>> est.estimate(remaining=900).eta_seconds
    90.0
    """

    def __init__(self, *, window_seconds: float = 120.0, max_samples: int = 512) -> None:
        self._window = window_seconds
        self._samples: deque[tuple[float, float]] = deque(maxlen=max_samples)
        self._start: tuple[float, float] | None = None

    def update(self, now: float, done: float) -> None:
        """Record that ``done`` records were finished at monotonic time ``now``."""
        if self._start is None:
            self._start = (now, done)
        if self._samples and now <= self._samples[-1][0]:
            self._samples[-1] = (self._samples[-1][0], done)
            return
        self._samples.append((now, done))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self._window:
            self._samples.popleft()

    def rate(self) -> float | None:
        """Records per second over the recent window, or None with too little data."""
        if len(self._samples) < 2:
            return None
        (t0, d0), (t1, d1) = self._samples[0], self._samples[-1]
        if t1 <= t0:
            return None
        return max(0.0, (d1 - d0) / (t1 - t0))

    def estimate(self, remaining: float | None) -> Estimate:
        """Rate and seconds to finish ``remaining`` records (None when it cannot be told)."""
        rate = self.rate()
        if remaining is None or rate is None:
            return Estimate(rate, None)
        if remaining <= 0:
            return Estimate(rate, 0.0)
        if rate <= 0 or not math.isfinite(rate):
            return Estimate(rate, None)
        return Estimate(rate, remaining / rate)

    def reset(self) -> None:
        self._samples.clear()
        self._start = None
