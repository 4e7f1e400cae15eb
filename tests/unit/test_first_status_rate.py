"""The job's start is a progress sample: the first status() after some work has a rate."""

from __future__ import annotations

import pytest

import metricskit
from metricskit.sinks.memory import MemorySink
from tests.conftest import FakeClock


def test_the_first_status_after_progress_has_a_rate_and_an_eta(clock: FakeClock) -> None:
    job = metricskit.Job(
        "first", sink=MemorySink(), total=10_400, clock=clock, handle_sigterm=False
    )
    clock.advance(3.0)
    job.processed(5200)
    status = job.status()  # the first call: before, rate and ETA were None here
    assert status.rate == pytest.approx(5200 / 3.0, rel=0.01)
    assert status.eta_seconds == pytest.approx(3.0, rel=0.05)
    job.close()


def test_a_stage_starts_its_own_rate_at_its_creation(clock: FakeClock) -> None:
    job = metricskit.Job("first", sink=MemorySink(), clock=clock, handle_sigterm=False)
    clock.advance(10.0)
    stage = job.stage("load", total=100)
    clock.advance(2.0)
    stage.processed(50)
    assert stage.status().rate == pytest.approx(25.0, rel=0.01)  # 50 in 2 s, not in 12
    job.close()
