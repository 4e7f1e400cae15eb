"""The ETA estimator on an injected clock: steady, changing, stalled and unknown-total jobs."""

from __future__ import annotations

import random
from typing import Any

import pytest

from metricskit import Job, catalog
from metricskit.eta import STALL_FLOOR_SECONDS, EtaEstimator
from metricskit.sinks.memory import MemorySink


def feed(est: EtaEstimator, start: float, seconds: int, rate: float, done: float) -> float:
    """Feed one sample per second at ``rate`` records/s; returns the new done."""
    for s in range(1, seconds + 1):
        done += rate
        est.update(start + s, done)
    return done


def test_steady_job_eta_is_remaining_over_rate() -> None:
    est = EtaEstimator()
    est.update(0.0, 0)
    done = feed(est, 0.0, 100, 50.0, 0.0)
    estimate = est.estimate(remaining=10_000 - done)
    assert estimate.rate == pytest.approx(50.0)
    assert estimate.eta_seconds == pytest.approx((10_000 - done) / 50.0)


def test_noisy_steady_job_is_within_ten_percent() -> None:
    rng = random.Random(3)
    est = EtaEstimator()
    est.update(0.0, 0)
    done = 0.0
    for s in range(1, 601):
        done += rng.uniform(50, 150)
        est.update(float(s), done)
    eta = est.estimate(remaining=60_000).eta_seconds
    assert eta is not None
    assert abs(eta - 600.0) / 600.0 < 0.10


def test_slowdown_is_followed_within_a_window() -> None:
    est = EtaEstimator()
    est.update(0.0, 0)
    done = feed(est, 0.0, 600, 100.0, 0.0)
    done = feed(est, 600.0, 120, 25.0, done)  # four times slower for two minutes
    rate = est.rate()
    assert rate is not None
    assert rate == pytest.approx(25.0, rel=0.2), "the overall average would say ~85/s"


def test_warm_up_is_forgotten_once_the_rate_settles() -> None:
    est = EtaEstimator()
    est.update(0.0, 0)
    done = 0.0
    for s in range(1, 121):  # ramp from 1/s to 100/s
        done += s * 100 / 120
        est.update(float(s), done)
    feed(est, 120.0, 300, 100.0, done)
    rate = est.rate()
    assert rate == pytest.approx(100.0, rel=0.05)


def test_periodic_stalls_average_over_the_cycle() -> None:
    est = EtaEstimator()
    est.update(0.0, 0)
    done = 0.0
    for s in range(1, 1201):
        done += 100.0 if s % 60 < 45 else 0.0  # 15 s pause every minute
        est.update(float(s), done)
    assert est.rate() == pytest.approx(75.0, rel=0.1)
    assert not est.is_stalled()


def test_stalled_job_claims_no_near_eta() -> None:
    est = EtaEstimator()
    est.update(0.0, 0)
    done = feed(est, 0.0, 300, 100.0, 0.0)
    remaining = 60_000 - done  # five minutes at the old rate
    for s in range(1, 6):  # a pause of a few seconds: the ETA is at least the pause so far
        est.update(300.0 + s, done)
    eta = est.estimate(remaining).eta_seconds
    assert eta is not None
    assert eta >= 300.0
    for s in range(6, 25):  # a longer one: no ETA, or one no nearer than the pause so far
        est.update(300.0 + s, done)
        eta = est.estimate(remaining).eta_seconds
        assert eta is None or eta >= s
    for s in range(25, 2000):  # now it has been stuck for half an hour
        est.update(300.0 + s, done)
    assert est.is_stalled()
    assert est.stalled_seconds() > STALL_FLOOR_SECONDS
    assert est.estimate(remaining).eta_seconds is None


def test_unknown_total_gives_a_rate_but_no_eta() -> None:
    est = EtaEstimator()
    est.update(0.0, 0)
    feed(est, 0.0, 10, 5.0, 0.0)
    estimate = est.estimate(None)
    assert estimate.rate == pytest.approx(5.0)
    assert estimate.eta_seconds is None


def test_too_little_data_gives_nothing_and_finished_gives_zero() -> None:
    est = EtaEstimator()
    assert est.estimate(100).eta_seconds is None
    est.update(5.0, 0)
    assert est.rate() is None
    est.update(6.0, 10)
    assert est.estimate(0).eta_seconds == 0.0


def test_memory_stays_bounded_over_a_long_job() -> None:
    est = EtaEstimator(max_slots=64)
    est.update(0.0, 0)
    done = 0.0
    for s in range(1, 20_001):
        done += 10.0
        est.update(float(s), done)
    assert len(est._slots) <= 64
    assert est.rate() == pytest.approx(10.0)


def test_a_single_huge_gap_does_not_loop_per_second() -> None:
    est = EtaEstimator(max_slots=64)
    est.update(0.0, 0)
    est.update(1e9, 1e9)  # thirty years in one sample
    assert len(est._slots) <= 64
    assert est.rate() == pytest.approx(1.0)


def test_job_status_unknown_total_has_no_percent_and_no_eta(clock: Any) -> None:
    with Job("eta-unknown", sink=MemorySink(), clock=clock) as job:
        for _ in range(10):
            job.processed(10)
            clock.advance(1)
            status = job.status()
        assert status.total is None
        assert status.percent is None
        assert status.eta_seconds is None
        assert status.rate == pytest.approx(10.0)


def test_job_status_uses_the_estimator(clock: Any) -> None:
    with Job("eta-known", total=1000, sink=MemorySink(), clock=clock) as job:
        job.status()
        for _ in range(20):
            job.processed(10)
            clock.advance(1)
            status = job.status()
        assert status.percent == pytest.approx(20.0)
        assert status.eta_seconds == pytest.approx(80.0)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="slot_seconds"):
        EtaEstimator(slot_seconds=0)


def test_stalled_job_stops_publishing_an_eta(clock: Any) -> None:
    sink = MemorySink()
    with Job("eta-stalled", total=10_000, sink=sink, clock=clock) as job:
        for _ in range(60):
            job.processed(10)
            clock.advance(1)
            job.status()
        job.flush()
        assert job.status().eta_seconds == pytest.approx(940.0)
        assert sink.last(catalog.ETA_SECONDS) == pytest.approx(940.0)
        sink.clear()
        for _ in range(60):  # an hour with no progress at all
            clock.advance(60)
            job.status()
        job.flush()
        assert job.status().eta_seconds is None
        assert sink.metrics(catalog.ETA_SECONDS) == []
        assert sink.last(catalog.RECORDS_DONE) == 600
