"""What dates a batch: the wall clock at collect with the default clock, the injected clock's
own readings otherwise. Periods and rates keep the monotonic clock either way.

A machine that is suspended (EC2 hibernation, Spot hibernate, a paused VM) resumes with its
wall clock moved on and CLOCK_MONOTONIC (time.monotonic) not; NTP stepping a wrong start
clock moves the wall clock alone too. Patching ``time.time`` makes either happen here.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

import metricskit
from metricskit import catalog
from metricskit.sinks.memory import MemorySink
from tests.conftest import FakeClock

HOUR = 3600.0


def shift_wall_clock(monkeypatch: pytest.MonkeyPatch, seconds: float) -> Callable[[], float]:
    """Move ``time.time`` by ``seconds`` from now on (time.monotonic stays as it is)."""
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + seconds)
    return real


def default_clock_job(sink: MemorySink) -> metricskit.Job:
    return metricskit.Job(
        "dated", namespace="Test", sink=sink, flush_interval=3600, handle_sigterm=False
    )


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (0.0, 3 * HOUR),  # hibernated for 3 h: the data would land 3 h in the past
        (0.0, 15 * 24 * HOUR),  # 15 days: older than CloudWatch keeps, refused with 400
        (3 * HOUR, 0.0),  # started 3 h fast, then NTP stepped it back: refused as future
    ],
    ids=["suspended-3h", "suspended-15d", "fast-start-clock-corrected"],
)
def test_with_the_default_clock_each_batch_is_dated_by_the_wall_clock_at_collect(
    monkeypatch: pytest.MonkeyPatch, before: float, after: float
) -> None:
    shift_wall_clock(monkeypatch, before)
    sink = MemorySink()
    job = default_clock_job(sink)
    job.processed()
    assert job.flush()
    shift_wall_clock(monkeypatch, after - before)  # time.time is now real + after
    job.processed(5)
    earliest = time.time()
    assert job.flush()
    latest = time.time()
    batch = sink.batches[-1]
    assert earliest <= batch.timestamp <= latest
    # The period and the rate are the monotonic clock's: the jump is not 3 h of work.
    assert batch.period_seconds < HOUR
    assert sink.last(catalog.RECORDS_PER_SECOND) == pytest.approx(5 / batch.period_seconds)
    job.close()
    assert earliest <= sink.batches[-1].timestamp <= time.time()


def test_wall_time_with_the_default_clock_is_the_wall_clock(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What the job item's heartbeat_at and finished_at get (Job.wall_time) moves with it."""
    job = default_clock_job(MemorySink())
    shift_wall_clock(monkeypatch, 5 * HOUR)
    earliest = time.time()
    dated = job.wall_time(job.clock())
    assert earliest <= dated <= time.time()
    job.close()


def test_an_injected_clock_dates_batches_from_its_own_readings(
    monkeypatch: pytest.MonkeyPatch, clock: FakeClock
) -> None:
    """A test's clock keeps timestamps deterministic: start plus what the clock moved."""
    sink = MemorySink()
    job = metricskit.Job("dated", namespace="Test", sink=sink, clock=clock, flush_interval=3600)
    job.processed()
    assert job.flush()
    start = sink.batches[-1].timestamp
    shift_wall_clock(monkeypatch, 3 * HOUR)  # ignored: the injected clock decides
    clock.advance(60)
    job.processed()
    assert job.flush()
    assert sink.batches[-1].timestamp == start + 60
    assert sink.batches[-1].period_seconds == 60
    job.close()


def test_time_monotonic_passed_explicitly_counts_as_the_default_clock(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sink = MemorySink()
    job = metricskit.Job(
        "dated", namespace="Test", sink=sink, clock=time.monotonic, handle_sigterm=False
    )
    shift_wall_clock(monkeypatch, 3 * HOUR)
    job.processed()
    earliest = time.time()
    assert job.flush()
    assert earliest <= sink.batches[-1].timestamp <= time.time()
    job.close()
