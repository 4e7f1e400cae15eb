"""Configuration: argument, then METRICSKIT_* variable, then default; bad values fall back."""

from __future__ import annotations

import json
import logging
import sys

import pytest

import metricskit
from metricskit import catalog, config
from metricskit.errors import ConfigurationError, InvalidDimensionError, InvalidMetricError
from metricskit.job import SINK_NAMES
from metricskit.sinks.base import NullSink
from metricskit.sinks.cloudwatch import CloudWatchSink
from metricskit.sinks.memory import MemorySink
from tests.conftest import FakeClock


def test_environment_fills_unset_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(config.ENV_SINK, "memory")
    monkeypatch.setenv(config.ENV_NAMESPACE, "FromEnv")
    monkeypatch.setenv(config.ENV_FLUSH_INTERVAL, "7.5")
    job = metricskit.Job("j")
    try:
        assert isinstance(job.sink, MemorySink)
        assert job.namespace == "FromEnv"
        assert job.flush_interval == 7.5
    finally:
        job.close()


def test_arguments_win_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(config.ENV_SINK, "memory")
    monkeypatch.setenv(config.ENV_NAMESPACE, "FromEnv")
    job = metricskit.Job("j", sink="off", namespace="FromArg", flush_interval=3)
    try:
        assert isinstance(job.sink, NullSink)
        assert job.namespace == "FromArg"
        assert job.flush_interval == 3.0
    finally:
        job.close()


def test_defaults_apply_without_environment() -> None:
    job = metricskit.Job("j", sink="off")
    try:
        assert job.namespace == config.DEFAULT_NAMESPACE
        assert job.flush_interval == config.DEFAULT_FLUSH_INTERVAL
        assert job.shutdown_timeout == config.DEFAULT_SHUTDOWN_TIMEOUT
        assert job.storage_resolution == 60
    finally:
        job.close()


def test_defaults_are_the_documented_values(aws: str, clock: FakeClock) -> None:
    """README's configuration table, as literals: a default that moves is a changed contract
    (comparing with config.DEFAULT_* would follow the constant wherever it went)."""
    job = metricskit.Job("j")  # no argument, no METRICSKIT_* variable: every default
    try:
        assert job.namespace == "metricskit"
        assert isinstance(job.sink, CloudWatchSink)
        assert job.flush_interval == 60.0
        assert job.shutdown_timeout == 10.0
        assert job.storage_resolution == 60  # high resolution off
        assert job.dimensions == (("JobId", "j"),)  # no WorkerId
        assert job.registration is None  # no job registry
    finally:
        job.close()
    # max_queued_periods: an outage keeps 60 periods queued, merging the oldest beyond that.
    sink = MemorySink()
    sink.fail_exports = True
    job = metricskit.Job("j", sink=sink, clock=clock, flush_interval=3600)
    try:
        for _ in range(65):
            job.processed()
            clock.advance(60)
            job.flush()
        assert job._delivery.queued == 60
    finally:
        sink.fail_exports = False
        job.close()
    assert sink.sum(catalog.RECORDS_PROCESSED) == 65


@pytest.mark.parametrize(
    ("variable", "raw", "attribute", "expected"),
    [
        (config.ENV_FLUSH_INTERVAL, "soon", "flush_interval", config.DEFAULT_FLUSH_INTERVAL),
        (config.ENV_FLUSH_INTERVAL, "-5", "flush_interval", config.DEFAULT_FLUSH_INTERVAL),
        (config.ENV_SHUTDOWN_TIMEOUT, "nan", "shutdown_timeout", config.DEFAULT_SHUTDOWN_TIMEOUT),
        (config.ENV_HIGH_RESOLUTION, "maybe", "storage_resolution", 60),
    ],
)
def test_unparsable_values_warn_and_fall_back(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    variable: str,
    raw: str,
    attribute: str,
    expected: object,
) -> None:
    monkeypatch.setenv(variable, raw)
    with caplog.at_level(logging.WARNING, logger="metricskit"):
        job = metricskit.Job("j", sink="off")
    job.close()
    assert getattr(job, attribute) == expected
    assert variable in caplog.text
    assert repr(raw) in caplog.text


def test_unknown_sink_in_environment_warns_and_uses_default(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(config.ENV_SINK, "carrier-pigeon")
    with caplog.at_level(logging.WARNING, logger="metricskit"):
        assert config.env_choice(config.ENV_SINK, frozenset({"off", "memory"}), "off") == "off"
    assert "one of memory, off" in caplog.text


def test_high_resolution_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(config.ENV_HIGH_RESOLUTION, "true")
    job = metricskit.Job("j", sink="off")
    job.close()
    assert job.storage_resolution == 1


@pytest.mark.parametrize("kwargs", [{"flush_interval": 0}, {"shutdown_timeout": -1}])
def test_bad_arguments_raise_configuration_error(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigurationError, match="a number of seconds"):
        metricskit.Job("j", sink="off", **kwargs)  # type: ignore[arg-type]


def test_unknown_sink_argument_lists_the_allowed_names() -> None:
    with pytest.raises(ConfigurationError, match="cloudwatch, emf, memory, off"):
        metricskit.Job("j", sink="kafka")


def test_configuration_is_not_read_at_import() -> None:
    import importlib
    import inspect

    source = inspect.getsource(importlib.import_module("metricskit.config"))
    module_level = [line for line in source.splitlines() if line.startswith(("os.environ", "_ENV"))]
    assert module_level == []


@pytest.mark.parametrize(
    ("variable", "raw", "allowed"),
    [
        (config.ENV_NAMESPACE, "CSV To Kafka", "letters, digits and . - _ / # :"),
        (config.ENV_NAMESPACE, "AWS/EC2", "not starting with : or AWS/"),
        (config.ENV_WORKER_ID, "wörker-1", "printable ASCII"),
        (config.ENV_JOB_TABLE, "ab", "3 to 255 letters, digits and _ - ."),
        (config.ENV_JOB_TABLE, "my jobs", "3 to 255 letters, digits and _ - ."),
        (config.ENV_DIMENSIONS, "Env=prod", "a JSON object of dimension names"),
        (config.ENV_DIMENSIONS, '["Env", "prod"]', "a JSON object of dimension names"),
        (config.ENV_DIMENSIONS, '{"Env": 5}', "that Job(dimensions=...) accepts"),
        (config.ENV_DIMENSIONS, '{"JobId": "x"}', "that Job(dimensions=...) accepts"),
        (config.ENV_DIMENSIONS, '{"RecordsProcessed": "x"}', "that Job(dimensions=...) accepts"),
        (config.ENV_DIMENSIONS, json.dumps({f"D{n}": "v" for n in range(29)}), "accepts"),
    ],
)
def test_invalid_names_from_the_environment_warn_once_and_fall_back(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    variable: str,
    raw: str,
    allowed: str,
) -> None:
    """A variable CloudWatch or DynamoDB would refuse never stops the worker at Job()."""
    monkeypatch.setenv(variable, raw)
    with caplog.at_level(logging.WARNING, logger="metricskit"):
        job = metricskit.Job("j", sink="off")
    job.close()
    assert job.namespace == config.DEFAULT_NAMESPACE
    assert [name for name, _ in job.dimensions] == ["JobId"]
    assert job.registration is None
    warnings = [r.getMessage() for r in caplog.records if variable in r.getMessage()]
    assert len(warnings) == 1
    assert repr(raw) in warnings[0]
    assert allowed in warnings[0]
    assert "instead" in warnings[0]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"namespace": "CSV To Kafka"}, InvalidMetricError),
        ({"worker_id": "wörker-1"}, InvalidDimensionError),
        ({"job_table": "ab"}, ConfigurationError),
        ({"job_table": "my jobs"}, ConfigurationError),
        # Empty is a bad value too, not "unset": it must not fall back to the environment.
        ({"worker_id": ""}, InvalidDimensionError),
        ({"job_table": ""}, ConfigurationError),
    ],
)
def test_invalid_names_as_arguments_still_raise(
    kwargs: dict[str, str], error: type[Exception]
) -> None:
    with pytest.raises(error):
        metricskit.Job("j", sink="off", **kwargs)  # type: ignore[arg-type]


def test_valid_names_from_the_environment_are_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(config.ENV_NAMESPACE, "CSVToKafka")
    monkeypatch.setenv(config.ENV_WORKER_ID, "worker-1")
    job = metricskit.Job("j", sink="off")
    job.close()
    assert job.namespace == "CSVToKafka"
    assert ("WorkerId", "worker-1") in job.dimensions


def test_dimensions_from_the_environment_apply_when_none_are_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The Terraform module's worker_environment sets METRICSKIT_DIMENSIONS to what its
    dashboard reads; an argument (even an empty one) wins."""
    monkeypatch.setenv(config.ENV_DIMENSIONS, '{"Env": "prod", "Team": "data"}')
    monkeypatch.setenv(config.ENV_WORKER_ID, "w-1")
    sink = MemorySink()
    with metricskit.Job("j", sink=sink) as job:
        job.processed()
    assert job.dimensions == (
        ("JobId", "j"),
        ("Env", "prod"),
        ("Team", "data"),
        ("WorkerId", "w-1"),
    )
    assert sink.sum("RecordsProcessed", Env="prod", Team="data", WorkerId="w-1") == 1
    for given, expected in (({}, ()), ({"Env": "dev"}, (("Env", "dev"),))):
        explicit = metricskit.Job("j", sink="off", dimensions=given)
        explicit.close()
        assert explicit.dimensions[1:-1] == expected


def test_environment_dimensions_leave_room_for_the_worker_id(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """27 own dimensions fit beside JobId, Stage and WorkerId; 28 fit only without a worker
    id, so with one the variable is refused (warned), never raised at Job()."""
    monkeypatch.setenv(config.ENV_DIMENSIONS, json.dumps({f"D{n}": "v" for n in range(28)}))
    job = metricskit.Job("j", sink="off")
    job.close()
    assert len(job.dimensions) == 29
    monkeypatch.setenv(config.ENV_WORKER_ID, "w-1")
    with caplog.at_level(logging.WARNING, logger="metricskit"):
        job = metricskit.Job("j", sink="off")
    job.close()
    assert [name for name, _ in job.dimensions] == ["JobId", "WorkerId"]
    assert any(config.ENV_DIMENSIONS in r.getMessage() for r in caplog.records)


def test_the_helpers_read_an_explicit_environment_with_the_same_fallbacks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    environ = {
        config.ENV_NAMESPACE: "CSV To Kafka",
        config.ENV_JOB_TABLE: "ab",
        config.ENV_SINK: "kafka",
    }
    with caplog.at_level(logging.WARNING, logger="metricskit"):
        assert config.env_namespace(environ) == config.DEFAULT_NAMESPACE
        assert config.env_job_table(environ) is None
        assert config.env_choice(config.ENV_SINK, SINK_NAMES, "emf", environ) == "emf"
    assert caplog.text.count("ignoring METRICSKIT_") == 3


def test_a_progress_bar_asked_for_by_the_environment_without_tqdm_warns(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm now raises ImportError
    monkeypatch.setenv(config.ENV_PROGRESS_BAR, "true")
    with caplog.at_level(logging.WARNING, logger="metricskit"):
        job = metricskit.Job("j", sink="off")
    job.close()
    assert config.ENV_PROGRESS_BAR in caplog.text
    assert "tqdm" in caplog.text
    with pytest.raises(ConfigurationError, match="tqdm"):
        metricskit.Job("j", sink="off", progress_bar=True)


@pytest.mark.parametrize("given", [0, -3, 2.5, True, "5"])
def test_max_queued_periods_must_be_a_positive_integer(given: object) -> None:
    with pytest.raises(ConfigurationError, match="max_queued_periods must be a positive integer"):
        metricskit.Job("j", sink="off", max_queued_periods=given)  # type: ignore[arg-type]


def test_max_queued_periods_argument_wins_and_a_bad_variable_falls_back(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(config.ENV_MAX_QUEUED_PERIODS, "7")
    job = metricskit.Job("j", sink="off", max_queued_periods=3)
    job.close()
    assert job._delivery._max_queued == 3
    monkeypatch.setenv(config.ENV_MAX_QUEUED_PERIODS, "-3")
    with caplog.at_level(logging.WARNING, logger="metricskit"):
        job = metricskit.Job("j", sink="off")
    job.close()
    assert job._delivery._max_queued == config.DEFAULT_MAX_QUEUED_PERIODS
    assert config.ENV_MAX_QUEUED_PERIODS in caplog.text


@pytest.mark.parametrize(
    ("raw", "days"),
    [(None, None), ("", None), ("0", None), ("90", 90.0), (" 7.5 ", 7.5), ("36500", 36500.0)],
)
def test_finished_job_retention_is_days_or_none_to_keep_forever(
    raw: str | None, days: float | None
) -> None:
    environ = {} if raw is None else {config.ENV_FINISHED_JOB_RETENTION_DAYS: raw}
    assert config.env_retention_days(environ) == days


@pytest.mark.parametrize("raw", ["-1", "36501", "nan", "inf", "ninety"])
def test_a_bad_finished_job_retention_warns_and_keeps_jobs_forever(
    caplog: pytest.LogCaptureFixture, raw: str
) -> None:
    with caplog.at_level(logging.WARNING, logger="metricskit"):
        assert config.env_retention_days({config.ENV_FINISHED_JOB_RETENTION_DAYS: raw}) is None
    (warning,) = [r.getMessage() for r in caplog.records]
    assert config.ENV_FINISHED_JOB_RETENTION_DAYS in warning
    assert "from 0 (keep forever) to 36500" in warning
    assert "keeping finished jobs forever" in warning
