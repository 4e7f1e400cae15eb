"""Configuration: argument, then METRICSKIT_* variable, then default; bad values fall back."""

from __future__ import annotations

import logging

import pytest

import metricskit
from metricskit import config
from metricskit.errors import ConfigurationError
from metricskit.sinks.base import NullSink
from metricskit.sinks.memory import MemorySink


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
    with pytest.raises(ConfigurationError, match="positive number"):
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
