"""The cost tracker reads METRICSKIT_* variables like a worker: a bad one warns and falls back."""

from __future__ import annotations

import datetime as dt
import json
import logging

import pytest

from cost_tracker import handler as tracker
from metricskit.errors import ConfigurationError
from tests.functional.test_cost_tracker_handler import (
    CountingCE,
    _empty_cost_explorer_queue,  # noqa: F401 - the autouse fixture applies here too
    ce_page,
    month_bounds,
    queue_ce,
    seed_jobs,
    unique_noon,
)


def test_a_bad_namespace_or_sink_variable_warns_and_the_run_publishes_anyway(
    aws: str,
    table: str,
    namespace: str,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = unique_noon()
    seed_jobs(table, now, namespace)
    queue_ce(aws, ce_page(*month_bounds(now), [("train-1", "Training", 0.5)]))
    with caplog.at_level(logging.WARNING, logger="metricskit"):
        report = tracker.run(
            {"time": dt.datetime.fromtimestamp(now, tz=dt.UTC).isoformat()},
            table=table,
            ce_client=CountingCE().client,
            environ={"METRICSKIT_NAMESPACE": "CSV To Kafka", "METRICSKIT_SINK": "kafka"},
        )
    assert report["export_ok"] is True
    assert "ignoring METRICSKIT_NAMESPACE='CSV To Kafka'" in caplog.text
    assert "ignoring METRICSKIT_SINK='kafka'" in caplog.text
    documents = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    monthly = [d for d in documents if "MonthlyCost" in d]
    assert monthly  # the default sink (EMF on stdout) published, in the default namespace
    namespaces = {m["Namespace"] for d in monthly for m in d["_aws"]["CloudWatchMetrics"]}
    assert namespaces == {"metricskit"}


def test_a_bad_job_table_variable_warns_and_says_to_set_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with (
        caplog.at_level(logging.WARNING, logger="metricskit"),
        pytest.raises(ConfigurationError, match="set METRICSKIT_JOB_TABLE"),
    ):
        tracker.run({}, environ={"METRICSKIT_JOB_TABLE": "ab"})
    assert "ignoring METRICSKIT_JOB_TABLE='ab'" in caplog.text
