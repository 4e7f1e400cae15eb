"""max_series: past the cap new metrics and stages are counted as dropped, not published;
what was defined before and the job's standard metrics keep publishing."""

from __future__ import annotations

import logging

import pytest

import metricskit
from metricskit import catalog, config
from metricskit.errors import ConfigurationError
from metricskit.recorder import STAGE_SERIES
from metricskit.sinks.memory import MemorySink


def make_job(sink: MemorySink, **kwargs: object) -> metricskit.Job:
    return metricskit.Job(
        "capped",
        sink=sink,
        flush_interval=3600,
        handle_sigterm=False,
        **kwargs,  # type: ignore[arg-type]
    )


def test_new_metrics_past_the_cap_are_counted_not_published(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink = MemorySink()
    job = make_job(sink, max_series=3)
    with caplog.at_level(logging.WARNING, logger="metricskit"):
        for i in range(5):
            job.gauge(f"G{i}", float(i))
        job.observe("Lat", 1.0)  # the 6th series: past the cap
        job.observe("Lat", 2.0)
        job.processed(10)
        job.flush()
    assert {f"G{i}" for i in range(3)} <= sink.names()
    assert not {"G3", "G4", "Lat"} & sink.names()
    assert sink.sum(catalog.RECORDS_PROCESSED) == 10  # standard metrics are never capped
    assert sink.sum(catalog.DROPPED_VALUES) == 2 + 2  # G3, G4's values, Lat's 2 observations
    warnings = [r.getMessage() for r in caplog.records if "cap of 3 series" in r.getMessage()]
    assert len(warnings) == 1
    assert config.ENV_MAX_SERIES in warnings[0]
    assert "'G3'" in warnings[0]
    # Those defined before keep working; those past the cap stay unpublished.
    job.gauge("G0", 7.0)
    job.gauge("G4", 7.0)
    job.flush()
    assert sink.last("G0") == 7.0
    assert "G4" not in sink.names()
    job.close()


def test_stages_past_the_cap_record_but_do_not_publish() -> None:
    sink = MemorySink()
    job = make_job(sink, max_series=STAGE_SERIES)
    first = job.stage("first")
    second = job.stage("second")
    assert first.published
    assert not second.published
    second.processed(4)
    first.processed(2)
    assert second.status().done == 4  # still usable in the worker
    job.flush()
    assert sink.sum(catalog.RECORDS_PROCESSED, Stage="first") == 2
    assert sink.metrics(catalog.RECORDS_PROCESSED, Stage="second") == []
    assert sink.sum(catalog.DROPPED_VALUES) > 0
    job.close()


def test_a_worker_id_counts_each_metric_twice() -> None:
    sink = MemorySink()
    job = make_job(sink, max_series=4, worker_id="w1")
    for i in range(3):
        job.gauge(f"G{i}", 1.0)
    job.flush()
    assert {"G0", "G1"} <= sink.names()
    assert "G2" not in sink.names()  # 2 x 2 series fill a cap of 4
    job.close()


def test_the_variable_sets_the_cap_and_a_bad_one_warns_and_falls_back(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(config.ENV_MAX_SERIES, "2")
    sink = MemorySink()
    job = make_job(sink)
    for i in range(3):
        job.gauge(f"G{i}", 1.0)
    job.close()
    assert "G2" not in sink.names()
    assert "G1" in sink.names()
    monkeypatch.setenv(config.ENV_MAX_SERIES, "lots")
    with caplog.at_level(logging.WARNING, logger="metricskit"):
        job = make_job(MemorySink())
    assert job._series_budget.cap == config.DEFAULT_MAX_SERIES
    assert f"ignoring {config.ENV_MAX_SERIES}='lots'" in caplog.text
    job.close()
    assert config.ENV_MAX_SERIES in config.ALL_VARIABLES


@pytest.mark.parametrize("bad", [0, -1, 2.5, "10", True])
def test_a_bad_max_series_argument_raises(bad: object) -> None:
    with pytest.raises(ConfigurationError, match="max_series must be a positive integer"):
        make_job(MemorySink(), max_series=bad)
