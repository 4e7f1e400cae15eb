"""Aggregation maths: exact counters under threads, bounded-error distributions, merging."""

from __future__ import annotations

import math
import random
import threading

import pytest

from metricskit import limits
from metricskit.aggregation import (
    BUFFER_CAPACITY,
    RELATIVE_ACCURACY,
    CounterCell,
    DistributionCell,
    GaugeCell,
    Timer,
    bucket_index,
    bucket_representative,
)
from metricskit.batch import MetricKind, SeriesKey, distribution


def nearest_rank(sorted_values: list[float], q: float) -> float:
    """The q-th percentile by nearest rank, as CloudWatch computes it from raw samples."""
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return sorted_values[rank - 1]


def expand(counts: dict[float, float]) -> list[float]:
    out: list[float] = []
    for value, count in sorted(counts.items()):
        out.extend([value] * int(count))
    return out


def test_counter_ticks_and_adds_are_exact_under_eight_threads() -> None:
    cell = CounterCell()
    per_thread = 1_000_000

    def work() -> None:
        tick = cell.tick
        for _ in range(per_thread):
            tick()
        cell.add(5)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert cell.total() == 8 * per_thread + 8 * 5


def test_counter_take_delta_never_counts_twice_while_threads_record() -> None:
    cell = CounterCell()
    stop = threading.Event()
    taken: list[float] = []

    def reader() -> None:
        while not stop.is_set():
            taken.append(cell.take_delta())

    thread = threading.Thread(target=reader)
    thread.start()
    for _ in range(300_000):
        cell.tick()
    stop.set()
    thread.join()
    taken.append(cell.take_delta())
    assert sum(taken) == 300_000


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf"), "3", None])
def test_counter_rejects_bad_increments(bad: object) -> None:
    cell = CounterCell()
    assert cell.add(bad) is False  # type: ignore[arg-type]
    assert cell.total() == 0


def test_bucket_representative_is_within_relative_accuracy() -> None:
    rng = random.Random(7)
    for _ in range(20_000):
        value = 10 ** rng.uniform(-6, 9)
        rep = bucket_representative(bucket_index(value))
        assert abs(rep - value) / value <= RELATIVE_ACCURACY * (1 + 1e-9)


def test_distribution_percentiles_of_lognormal_stay_within_one_percent() -> None:
    rng = random.Random(42)
    raw = [rng.lognormvariate(3.0, 1.2) for _ in range(200_000)]  # heavy-tailed latency
    cell = DistributionCell("Latency", lambda name, value: None)
    for value in raw:
        cell.record(value)
    published = expand(cell.take())
    exact = sorted(raw)
    assert len(published) == len(raw)
    for q in (50, 90, 99, 99.9):
        got, want = nearest_rank(published, q), nearest_rank(exact, q)
        assert abs(got - want) / want <= 0.01, (q, got, want)


def test_distribution_memory_is_bounded_by_buckets_not_records() -> None:
    cell = DistributionCell("Latency", lambda name, value: None)
    for i in range(100_000):
        cell.record(1.0 + (i % 1000))
    counts = cell.take()
    assert sum(counts.values()) == 100_000
    # 1..1000 ms at 1% bucket width: ~700 buckets, whatever the number of records.
    assert len(counts) < 800
    assert len(cell._buffer) == 0


def test_distribution_drops_nan_inf_and_out_of_range_but_keeps_zero_and_negatives() -> None:
    dropped: list[object] = []
    cell = DistributionCell("X", lambda name, value: dropped.append(value))
    for value in (float("nan"), float("inf"), -float("inf"), 2.0**400, "fast", 0.0, -5.0, 5.0):
        cell.record(value)  # type: ignore[arg-type]
    counts = cell.take()
    assert dropped[0] == "fast"  # non-numbers are caught at record time
    assert len(dropped) == 5
    assert counts[0.0] == 1
    assert sum(counts.values()) == 3
    assert any(v < 0 and abs(v + 5) / 5 <= RELATIVE_ACCURACY for v in counts)


def test_distribution_take_is_exact_under_concurrent_records() -> None:
    cell = DistributionCell("X", lambda name, value: None)
    stop = threading.Event()
    total = 0.0

    def reader() -> None:
        nonlocal total
        while not stop.is_set():
            total += sum(cell.take().values())

    thread = threading.Thread(target=reader)
    thread.start()
    writers = [
        threading.Thread(target=lambda: [cell.record(3.0) for _ in range(BUFFER_CAPACITY * 40)])
        for _ in range(4)
    ]
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    stop.set()
    thread.join()
    total += sum(cell.take().values())
    assert total == 4 * BUFFER_CAPACITY * 40


def test_gauge_keeps_last_value_and_rejects_non_finite() -> None:
    cell = GaugeCell("Loss")
    assert cell.set(0.5)
    assert cell.set(0.25)
    assert not cell.set(float("nan"))
    assert cell.take() == 0.25
    assert cell.take() is None


def test_distribution_merge_adds_counts_exactly() -> None:
    key = SeriesKey("L", "Milliseconds", (("JobId", "j"),))
    a = distribution(key, {1.0: 2.0, 5.0: 1.0})
    b = distribution(key, {5.0: 3.0, 9.0: 1.0})
    merged = a.merged_with(b)
    assert merged.kind is MetricKind.DISTRIBUTION
    assert dict(zip(merged.values, merged.counts, strict=True)) == {1.0: 2.0, 5.0: 4.0, 9.0: 1.0}


def test_vectorized_and_pure_python_folds_give_identical_buckets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from metricskit import aggregation

    rng = random.Random(11)
    values = [rng.lognormvariate(1.0, 2.0) for _ in range(3 * BUFFER_CAPACITY + 17)]
    vectorized = DistributionCell("X", lambda name, value: None)
    for value in values:
        vectorized.record(value)
    monkeypatch.setattr(aggregation, "_load_numpy", lambda: None)
    pure = DistributionCell("X", lambda name, value: None)
    for value in values:
        pure.record(value)
    assert vectorized.take() == pure.take()


class StepClock:
    """Advances by ``step`` seconds on every read, so every timed block lasts ``step``."""

    def __init__(self, step: float) -> None:
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def test_timers_are_exact_across_folds_and_concurrent_takes() -> None:
    cell = DistributionCell("X", lambda name, value: None)
    timer = cell.timer_type(StepClock(0.002))  # every block: 2 ms
    stop = threading.Event()
    taken: list[dict[float, float]] = []

    def reader() -> None:
        while not stop.is_set():
            taken.append(cell.take())

    def writer() -> None:
        for _ in range(BUFFER_CAPACITY * 10 + 7):
            with timer():
                pass

    thread = threading.Thread(target=reader)
    thread.start()
    writers = [threading.Thread(target=writer) for _ in range(4)]
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    stop.set()
    thread.join()
    taken.append(cell.take())
    counts: dict[float, float] = {}
    for period in taken:
        for value, count in period.items():
            counts[value] = counts.get(value, 0.0) + count
    assert sum(counts.values()) == 4 * (BUFFER_CAPACITY * 10 + 7)
    # Threads interleave clock reads, so a block may span several steps: all are positive
    # multiples of 2 ms, each within the buckets' relative accuracy.
    for value in counts:
        steps = round(value / 2.0)
        assert steps >= 1
        assert abs(value - 2.0 * steps) <= 2.0 * steps * RELATIVE_ACCURACY


def test_a_timer_records_a_block_that_raises_and_lets_the_exception_through() -> None:
    cell = DistributionCell("X", lambda name, value: None)
    timer = cell.timer_type(StepClock(0.5))
    with pytest.raises(KeyError), timer():
        raise KeyError("boom")
    (value,) = cell.take()
    assert abs(value - 500.0) <= 500.0 * RELATIVE_ACCURACY


def test_a_timer_type_made_before_a_fork_records_into_the_childs_cell() -> None:
    """The child empties the cell in place, so the timer type it inherited still counts."""
    cell = DistributionCell("X", lambda name, value: None)
    timer = cell.timer_type(StepClock(0.001))
    with timer():
        pass  # buffered in the parent at fork time: the parent reports it, not the child
    cell.reset_after_fork()
    for _ in range(3):
        with timer():
            pass
    assert sum(cell.take().values()) == 3


def test_the_public_timer_passes_milliseconds_to_any_callback() -> None:
    seen: list[float] = []
    with Timer(seen.append, StepClock(0.25)) as timer:
        assert isinstance(timer, Timer)
    assert seen == [250.0]


def test_representatives_stay_within_what_cloudwatch_accepts() -> None:
    for value in (limits.MAX_ABS_VALUE, 2.34e108, limits.MIN_ABS_VALUE, 5e-109):
        assert bucket_representative(bucket_index(value)) >= limits.MIN_ABS_VALUE
        assert bucket_representative(bucket_index(value)) <= limits.MAX_ABS_VALUE
    cell = DistributionCell("Big", lambda name, value: None, "None")
    cell.record(limits.MAX_ABS_VALUE)  # the largest accepted value: its bucket reaches past
    cell.record(2.348e108)  # beyond the range: dropped
    ((value, count),) = cell.take().items()
    assert count == 1
    assert limits.MAX_ABS_VALUE * 0.995 <= value <= limits.MAX_ABS_VALUE
