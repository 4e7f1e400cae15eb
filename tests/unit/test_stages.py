"""A ten-stage pipeline: each stage has its own progress, errors and latency, by ``Stage``."""

from __future__ import annotations

from typing import Any

import pytest

from metricskit import Job, catalog
from metricskit.batch import MetricKind
from metricskit.errors import ConfigurationError
from metricskit.sinks.memory import MemorySink

STAGES = (
    "file-distribution",
    "denoise",
    "ivr",
    "language-id",
    "speech-to-text",
    "llm-pass-1",
    "llm-pass-2",
    "triage",
    "metadata",
    "publish",
)


def test_ten_stages_report_separately(clock: Any) -> None:
    sink = MemorySink()
    with Job("audio-pipeline", total=1000, sink=sink, clock=clock) as job:
        stages = [job.stage(name, total=100 * (i + 1)) for i, name in enumerate(STAGES)]
        for i, stage in enumerate(stages):
            stage.processed(10 * (i + 1))  # stage i did 10*(i+1) of 100*(i+1): 10 %
            stage.failed(i)
            stage.observe("StageLatency", 5.0 * (i + 1))
        job.processed(7)
        clock.advance(60)
        job.flush()
        for i, stage in enumerate(stages):
            status = stage.status()
            assert status.done == 10 * (i + 1)
            assert status.total == 100 * (i + 1)
            assert status.percent == pytest.approx(10.0)
            assert status.errors == i
    for i, name in enumerate(STAGES):
        assert sink.sum(catalog.RECORDS_PROCESSED, Stage=name) == 10 * (i + 1)
        assert sink.sum(catalog.ERROR_COUNT, Stage=name) == i
        assert sink.last(catalog.RECORDS_DONE, Stage=name) == 10 * (i + 1)
        assert sink.last(catalog.RECORDS_TOTAL, Stage=name) == 100 * (i + 1)
        assert sink.last(catalog.PROGRESS_PERCENTAGE, Stage=name) == pytest.approx(10.0)
        assert sink.values("StageLatency", Stage=name) == [pytest.approx(5.0 * (i + 1), rel=0.01)]
        dims = {m.key.dimensions for m in sink.metrics(catalog.RECORDS_PROCESSED, Stage=name)}
        assert dims == {(("JobId", "audio-pipeline"), ("Stage", name))}
    # The job's own series carry no Stage and count only the job's records.
    job_series = [
        m
        for m in sink.metrics(catalog.RECORDS_PROCESSED)
        if all(d[0] != "Stage" for d in m.key.dimensions)
    ]
    assert sum(m.value for m in job_series if m.kind is MetricKind.COUNTER) == 7
    assert job.status().done == 7


def test_same_stage_name_returns_the_same_stage_and_updates_its_total(clock: Any) -> None:
    with Job("pipeline-2", sink=MemorySink(), clock=clock) as job:
        first = job.stage("denoise", total=10)
        again = job.stage("denoise", total=20)
        assert first is again
        assert again.total == 20
        assert job.stage("denoise") is first


def test_a_stage_asked_for_after_close_never_raises_into_the_worker(
    clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Instrumentation never raises after construction: a worker still finishing its batch
    after the job closed gets a stage (what it records is not sent) and one warning."""
    job = Job("closed-early", sink=MemorySink(), clock=clock)
    job.close()
    with caplog.at_level("WARNING", logger="metricskit"):
        late = job.stage("commit", total=5)
        late.processed()
        assert job.stage("commit") is late
    assert late.status().done == 1
    warnings = [r for r in caplog.records if "is closed; stage 'commit'" in r.getMessage()]
    assert len(warnings) == 1


@pytest.mark.parametrize("bad", ["1000", float("nan"), float("inf"), -1, True])
def test_a_bad_total_is_refused_wherever_it_is_given(clock: Any, bad: object) -> None:
    """A total that is not a finite number >= 0 would break every later flush."""
    sink = MemorySink()
    with Job("totals", sink=sink, clock=clock) as job:
        stage = job.stage("parse", total=10)
        with pytest.raises(ConfigurationError, match="total must be a finite number >= 0"):
            job.stage("load", total=bad)  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError, match="total must be a finite number >= 0"):
            stage.set_total(bad)  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError, match="total must be a finite number >= 0"):
            job.set_total(bad)  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError, match="total must be a finite number >= 0"):
            Job("other", total=bad, sink=MemorySink())  # type: ignore[arg-type]
        stage.processed(4)
        assert stage.status().percent == pytest.approx(40.0)
    assert sink.sum(catalog.RECORDS_PROCESSED, Stage="parse") == 4  # the flushes still work
