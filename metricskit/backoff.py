"""When to try a failing destination again: exponential backoff with full jitter.

Shared by the sink's delivery queue and the job registry, so a CloudWatch or DynamoDB outage
is probed a little less often each time, never less than once per ``MAX_BACKOFF_INTERVALS``
flush intervals (recovery is noticed within a few minutes), and many workers that failed at
the same moment do not retry in step.
"""

from __future__ import annotations

import random
from typing import Final

MAX_BACKOFF_SECONDS: Final = 300.0
MAX_BACKOFF_INTERVALS: Final = 5
"""Backoff never exceeds five flush intervals, so recovery is noticed within a few minutes."""


class Backoff:
    """Failures in a row and the earliest time of the next attempt (on the caller's clock).

    Not thread-safe: each owner calls it under its own lock.
    """

    __slots__ = ("_base", "failures_in_a_row", "next_attempt_at")

    def __init__(self, base_seconds: float) -> None:
        self._base = base_seconds
        self.failures_in_a_row = 0
        self.next_attempt_at = 0.0

    def ready(self, now: float) -> bool:
        """True when an attempt may be made at ``now``."""
        return now >= self.next_attempt_at

    def failed(self, now: float) -> float:
        """Note a failure at ``now``; returns the delay before the next attempt."""
        self.failures_in_a_row += 1
        # Full jitter (AWS Architecture Blog, "Exponential Backoff And Jitter").
        cap = min(MAX_BACKOFF_SECONDS, MAX_BACKOFF_INTERVALS * self._base)
        ceiling = min(cap, self._base * 2 ** min(self.failures_in_a_row - 1, 30))
        delay = random.uniform(0.0, ceiling)
        self.next_attempt_at = now + delay
        return delay

    def succeeded(self) -> None:
        """An attempt worked: the next one may come at any time."""
        self.failures_in_a_row = 0
        self.next_attempt_at = 0.0
