"""job.close(status): only completed, failed or interrupted; anything else raises at once and
leaves the job open, so a corrected close still closes it."""

from __future__ import annotations

import pytest

import metricskit
from metricskit import catalog
from metricskit.errors import ConfigurationError
from metricskit.sinks.memory import MemorySink


def open_job(sink: MemorySink) -> metricskit.Job:
    return metricskit.Job("closing", sink=sink, flush_interval=3600, handle_sigterm=False)


@pytest.mark.parametrize("status", ["bogus", "Completed", "running", "", 1, True])
def test_an_unknown_status_raises_and_leaves_the_job_open(status: object) -> None:
    sink = MemorySink()
    job = open_job(sink)
    job.processed(3)
    with pytest.raises(ConfigurationError, match="completed, failed, interrupted") as raised:
        job.close(status)  # type: ignore[arg-type]
    assert repr(status) in str(raised.value)
    assert not job.closed
    assert job.final_status is None
    assert job._flusher.running  # still delivering periodically
    assert job.close("failed")  # the corrected close works
    assert job.final_status == "failed"
    assert not job._flusher.running
    assert sink.sum(catalog.RECORDS_PROCESSED) == 3


def test_close_with_none_is_the_default_completed() -> None:
    job = open_job(MemorySink())
    assert job.close(None)
    assert job.final_status == "completed"


@pytest.mark.parametrize("status", ["completed", "failed", "interrupted"])
def test_each_final_status_is_accepted(status: str) -> None:
    job = open_job(MemorySink())
    assert job.close(status)  # type: ignore[arg-type]
    assert job.final_status == status
