"""JobStatus as its docstring describes it: percent stays while stalled (the ETA goes), and
is None for a total of 0 as for no total."""

from __future__ import annotations

import metricskit
from tests.conftest import FakeClock


def test_a_stalled_job_keeps_its_percent_and_loses_its_eta(clock: FakeClock) -> None:
    job = metricskit.Job("stall", sink="off", total=1000, clock=clock, handle_sigterm=False)
    first = job.status()
    assert first.percent == 0.0
    assert first.rate is None  # one sample: no rate yet
    assert first.eta_seconds is None
    for _ in range(5):
        clock.advance(1)
        job.processed(100)
        running = job.status()
    assert running.percent == 50.0
    assert running.eta_seconds is not None
    clock.advance(1000)  # nothing done for a long time
    stalled = job.status()
    assert stalled.percent == 50.0
    assert stalled.rate == 0.0
    assert stalled.eta_seconds is None
    job.close()


def test_a_total_of_zero_has_no_percent(clock: FakeClock) -> None:
    job = metricskit.Job("zero", sink="off", total=0, clock=clock, handle_sigterm=False)
    assert job.status().percent is None
    job.close()
    assert job.status().percent is None
    assert job.status().eta_seconds == 0.0  # closed as completed: nothing left to wait for
