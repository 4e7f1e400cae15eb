"""Backoff shared by the delivery queue and the job registry."""

from __future__ import annotations

import pytest

from metricskit import backoff
from metricskit.backoff import MAX_BACKOFF_INTERVALS, MAX_BACKOFF_SECONDS, Backoff


@pytest.fixture
def longest(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make full jitter pick its ceiling, so the delays are deterministic."""
    monkeypatch.setattr(backoff.random, "uniform", lambda low, high: high)


@pytest.mark.usefixtures("longest")
def test_delays_double_up_to_five_intervals() -> None:
    wait = Backoff(10.0)
    assert wait.ready(0.0)
    delays = [wait.failed(0.0) for _ in range(8)]
    assert delays == [10.0, 20.0, 40.0, 50.0, 50.0, 50.0, 50.0, 50.0]
    assert max(delays) == MAX_BACKOFF_INTERVALS * 10.0
    assert wait.failures_in_a_row == 8


@pytest.mark.usefixtures("longest")
def test_long_intervals_are_capped_in_seconds() -> None:
    wait = Backoff(600.0)
    assert [wait.failed(0.0) for _ in range(3)] == [MAX_BACKOFF_SECONDS] * 3


@pytest.mark.usefixtures("longest")
def test_not_ready_until_the_delay_has_passed_and_ready_after_success() -> None:
    wait = Backoff(60.0)
    wait.failed(1000.0)
    assert not wait.ready(1059.9)
    assert wait.ready(1060.0)
    wait.failed(1060.0)
    assert not wait.ready(1100.0)
    wait.succeeded()
    assert wait.ready(1100.0)
    assert wait.failures_in_a_row == 0


def test_jitter_spreads_delays_below_the_ceiling() -> None:
    delays = []
    for _ in range(200):
        wait = Backoff(60.0)
        wait.failed(0.0)
        delays.append(wait.failed(0.0))  # second failure: ceiling 120 s
    assert all(0.0 <= delay <= 120.0 for delay in delays)
    assert len({round(delay, 3) for delay in delays}) > 150  # not all in step
