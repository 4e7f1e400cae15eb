"""Rate and ETA estimation from (time, done) samples.

The original plan divided what remains by the overall average rate: slow to notice a
slowdown and fooled by a slow warm-up. tqdm's default smooths the rate between screen
refreshes (an EMA over ~0.1 s steps): it follows a slowdown at once but swings with every
stall and burst. Neither is what "when will it finish" needs, which is the *average rate of
the regime the job is in now*.

The estimator below finds that regime with an adaptive window (ADWIN, Bifet & Gavaldà 2007):

* progress is spread over equal time slots (linear between samples, so a job fed once a
  minute by the flusher and one fed twice a second by a progress bar look alike; slots are
  kept at least an eighth of the usual time between samples);
* the window of slots is cut where the rate before and after a split differs by more than
  the noise of the slot rates allows (ADWIN's Bernstein bound: the window's variance plus a
  range term), at the likeliest change point (largest CUSUM statistic), so a real change
  (warm-up ending, a slowdown) starts a new window within tens of slots, while periodic
  stalls and bursts, which look like noise over a long window, do not;
* the rate is the average over the window; the ETA is what remains divided by it;
* a job with no progress for much longer than any gap seen before is *stalled*: no ETA
  rather than a misleadingly near one; while shorter, the ETA is at least the stall so far.

Memory is bounded: at most ``max_slots`` slots; when full, neighbours merge (twice as wide).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MIN_SUBWINDOW_SLOTS = 8
"""Neither side of a cut may be shorter: a handful of slots is too noisy to call a change."""
FEED_GAP_SLOTS = 8.0
"""Slots per usual gap between samples at most (see _adapt_slot_to_feed)."""
FEED_GAP_SMOOTHING = 0.1
"""Weight of the newest gap in the running average of the time between samples."""
STALL_FLOOR_SECONDS = 30.0
"""Never call a job stalled before this long without progress."""
STALL_GAP_FACTOR = 4.0
"""...nor before this many times the longest pause the job has shown so far."""


@dataclass(frozen=True, slots=True)
class Estimate:
    """A rate (records/s, None until measurable) and an ETA (s, None when unknown)."""

    rate: float | None
    eta_seconds: float | None


class EtaEstimator:
    """Estimates the current rate and the time remaining from progress samples.

    >>> est = EtaEstimator()
    >>> est.update(0.0, 0); est.update(10.0, 100)
    >>> est.estimate(remaining=900).eta_seconds
    90.0
    """

    def __init__(
        self,
        *,
        slot_seconds: float = 1.0,
        max_slots: int = 512,
        confidence: float = 0.002,
    ) -> None:
        if slot_seconds <= 0 or max_slots < 4 * MIN_SUBWINDOW_SLOTS or not 0 < confidence < 1:
            raise ValueError("slot_seconds > 0, max_slots >= 32 and 0 < confidence < 1 required")
        self._initial_slot = slot_seconds
        self._max_slots = max_slots
        self._confidence = confidence
        self.reset()

    def reset(self) -> None:
        """Forget everything (a new job, or a forked child)."""
        self._slot = self._initial_slot
        self._slots: list[float] = []  # records done in each full slot of the window
        self._origin: float | None = None  # time at which the window's first slot starts
        self._origin_done = 0.0
        self._slot_start = 0.0  # start time of the slot being filled
        self._partial = 0.0  # records in the slot being filled
        self._last_t: float | None = None
        self._last_done = 0.0
        self._last_progress_t = 0.0
        self._longest_gap = 0.0
        self._typical_feed_gap = 0.0

    # -- feeding ---------------------------------------------------------------------------

    def update(self, now: float, done: float) -> None:
        """Record that ``done`` records were finished at monotonic time ``now``."""
        if self._last_t is None:
            self._origin = self._slot_start = self._last_t = self._last_progress_t = now
            self._origin_done = self._last_done = done
            return
        if now <= self._last_t:
            # Same instant (or a clock that went back): keep the newest count, no new time.
            if done > self._last_done:
                self._partial += done - self._last_done
                self._last_done = done
                self._note_progress(self._last_t)
            return
        self._adapt_slot_to_feed(now - self._last_t)
        delta = max(0.0, done - self._last_done)
        if done < self._last_done:
            # A smaller count (a job item deleted by hand, then registered again): rebase.
            self._origin_done -= self._last_done - done
        self._spread(self._last_t, now, delta)
        self._last_t = now
        self._last_done = done
        if delta > 0:
            self._note_progress(now)

    def _adapt_slot_to_feed(self, gap: float) -> None:
        """Keep slots at least as wide as the usual time between samples.

        Slots filled by interpolating one sample are not independent observations; counted as
        such, they would make noise look significant (a job fed once a minute by the flusher
        would be cut at every burst).
        """
        if self._typical_feed_gap == 0.0:
            self._typical_feed_gap = gap
        else:
            self._typical_feed_gap += FEED_GAP_SMOOTHING * (gap - self._typical_feed_gap)
        while self._slot < self._typical_feed_gap / FEED_GAP_SLOTS and self._slots:
            self._coarsen()

    def _note_progress(self, now: float) -> None:
        self._longest_gap = max(self._longest_gap, now - self._last_progress_t)
        self._last_progress_t = now

    def _spread(self, t0: float, t1: float, records: float) -> None:
        """Spread ``records`` evenly over [t0, t1), closing the slots it crosses."""
        while (t1 - self._slot_start) / self._slot > 2 * self._max_slots:
            self._coarsen()
        rate = records / (t1 - t0)
        t = t0
        closed = False
        while t1 >= self._slot_start + self._slot:
            end = self._slot_start + self._slot
            self._partial += rate * (end - t)
            self._slots.append(self._partial)
            self._partial = 0.0
            self._slot_start = end
            t = end
            closed = True
            if len(self._slots) >= self._max_slots:
                self._coarsen()
        self._partial += rate * (t1 - t)
        if closed:
            self._cut_on_change()

    def _coarsen(self) -> None:
        """Merge neighbouring slots so the window fits in half the slots."""
        slots = self._slots
        if len(slots) % 2:
            # An odd oldest slot leaves the window: keep the pairs aligned to the present.
            assert self._origin is not None
            self._origin += self._slot
            self._origin_done += slots[0]
            slots = slots[1:]
        self._slots = [slots[i] + slots[i + 1] for i in range(0, len(slots), 2)]
        # The slot being filled doubles too; its start stays where the pairs end.
        self._slot *= 2
        self._slot_start = (self._origin or 0.0) + len(self._slots) * self._slot

    def _cut_on_change(self) -> None:
        """Drop the older part of the window while it differs significantly from the rest."""
        while True:
            split = self._significant_split()
            if split is None:
                return
            assert self._origin is not None
            self._origin += split * self._slot
            self._origin_done += sum(self._slots[:split])
            del self._slots[:split]

    def _significant_split(self) -> int | None:
        """The split whose two sides differ most beyond the window's noise, if any does.

        ADWIN's Bernstein bound: a variance term plus a range term. The range term is what
        keeps a stall or a burst (a run of extreme slots, strongly correlated in time) from
        passing for a new regime in a short window.
        """
        slots = self._slots
        n = len(slots)
        if n < 2 * MIN_SUBWINDOW_SLOTS:
            return None
        total = sum(slots)
        mean = total / n
        variance = sum((x - mean) ** 2 for x in slots) / n
        spread = max(slots) - min(slots)
        if spread <= 0:
            return None
        shortest = MIN_SUBWINDOW_SLOTS
        log_term = math.log(2.0 * n / self._confidence)
        best: tuple[float, int] | None = None
        head = 0.0
        for k in range(1, n - shortest + 1):
            head += slots[k - 1]
            if k < shortest:
                continue
            old_mean, new_mean = head / k, (total - head) / (n - k)
            m = 1.0 / (1.0 / k + 1.0 / (n - k))
            bound = math.sqrt(2.0 / m * variance * log_term) + 2.0 / (3.0 * m) * spread * log_term
            gap = abs(old_mean - new_mean)
            # Of the significant splits, the likeliest change point maximizes m * gap^2 (CUSUM).
            score = m * gap * gap
            if gap > bound and (best is None or score > best[0]):
                best = (score, k)
        return None if best is None else best[1]

    # -- reading ---------------------------------------------------------------------------

    def rate(self) -> float | None:
        """Records per second over the current regime, or None with too little data."""
        if self._last_t is None or self._origin is None or self._last_t <= self._origin:
            return None
        return max(0.0, (self._last_done - self._origin_done) / (self._last_t - self._origin))

    def stalled_seconds(self) -> float:
        """Seconds since the count last grew (0 before the first sample)."""
        return 0.0 if self._last_t is None else self._last_t - self._last_progress_t

    def is_stalled(self) -> bool:
        """True when the pause is far longer than any the job has shown so far."""
        threshold = max(STALL_FLOOR_SECONDS, STALL_GAP_FACTOR * self._longest_gap)
        return self.stalled_seconds() > threshold

    def estimate(self, remaining: float | None) -> Estimate:
        """Rate and seconds to finish ``remaining`` records (None when it cannot be told)."""
        rate = self.rate()
        if remaining is None or rate is None:
            return Estimate(rate, None)
        if remaining <= 0:
            return Estimate(rate, 0.0)
        if rate <= 0 or not math.isfinite(rate) or self.is_stalled():
            return Estimate(rate, None)
        return Estimate(rate, max(remaining / rate, self.stalled_seconds()))
