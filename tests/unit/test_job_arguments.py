"""Job's arguments: the wrong type or out of range raises a typed metricskit error that says
what is allowed, at once; the same values from METRICSKIT_* variables warn and fall back."""

from __future__ import annotations

import logging
import math
from typing import Any

import pytest

import metricskit
from metricskit import config
from metricskit.errors import ConfigurationError, InvalidDimensionError, MetricsKitError
from metricskit.sinks.memory import MemorySink

INTERVALS = "a number of seconds from 1 to 86400"
TIMEOUTS = "a number of seconds above 0 and at most 3600"


def job(**kwargs: Any) -> metricskit.Job:
    return metricskit.Job("args", **{"sink": "off", "handle_sigterm": False, **kwargs})


@pytest.mark.parametrize(
    ("kwargs", "error", "allowed"),
    [
        # flush_interval: at least CloudWatch's 1 s resolution, at most a day
        ({"flush_interval": 1e10}, ConfigurationError, INTERVALS),
        ({"flush_interval": 86_400.5}, ConfigurationError, INTERVALS),
        ({"flush_interval": 1e-6}, ConfigurationError, INTERVALS),
        ({"flush_interval": 0.5}, ConfigurationError, INTERVALS),
        ({"flush_interval": True}, ConfigurationError, INTERVALS),
        ({"flush_interval": "5"}, ConfigurationError, INTERVALS),
        ({"flush_interval": math.nan}, ConfigurationError, INTERVALS),
        ({"flush_interval": math.inf}, ConfigurationError, INTERVALS),
        # shutdown_timeout: above 0, at most an hour
        ({"shutdown_timeout": 1e10}, ConfigurationError, TIMEOUTS),
        ({"shutdown_timeout": 1e308}, ConfigurationError, TIMEOUTS),
        ({"shutdown_timeout": 3600.5}, ConfigurationError, TIMEOUTS),
        ({"shutdown_timeout": 0}, ConfigurationError, TIMEOUTS),
        ({"shutdown_timeout": True}, ConfigurationError, TIMEOUTS),
        ({"high_resolution": "no"}, ConfigurationError, "True, False or None"),
        ({"high_resolution": 1}, ConfigurationError, "True, False or None"),
        ({"progress_bar": "yes"}, ConfigurationError, "True, False or None"),
        ({"clock": 5}, ConfigurationError, "a callable returning monotonic seconds"),
        ({"clock": lambda: "x"}, ConfigurationError, "a callable returning monotonic seconds"),
        ({"clock": lambda: math.nan}, ConfigurationError, "a callable returning monotonic"),
        ({"registry": "tbl"}, ConfigurationError, "JobRegistry"),
        ({"compute_profile": 5}, ConfigurationError, "fargate[-spot]:<N>vcpu:<M>gb"),
        ({"compute_profile": "nonsense"}, ConfigurationError, "ec2[-spot]:<instance-type>"),
        ({"compute_profile": "fargate:0vcpu:2gb"}, ConfigurationError, "fargate[-spot]"),
        ({"compute_profile": "tpu:v4"}, ConfigurationError, "hourly_rate="),
        ({"hourly_rate": -1}, ConfigurationError, "USD per hour >= 0"),
        ({"hourly_rate": "1"}, ConfigurationError, "USD per hour >= 0"),
        ({"hourly_rate": True}, ConfigurationError, "USD per hour >= 0"),
        ({"dimensions": "Env=prod"}, InvalidDimensionError, "a mapping of names to values"),
        ({"dimensions": 5}, InvalidDimensionError, "a mapping of names to values"),
        ({"dimensions": ["Env"]}, InvalidDimensionError, "(name, value) pairs"),
    ],
)
def test_job_refuses_a_bad_argument_saying_what_is_allowed(
    kwargs: dict[str, Any], error: type[MetricsKitError], allowed: str
) -> None:
    with pytest.raises(error) as raised:
        job(**kwargs).close()
    message = str(raised.value)
    assert allowed in message
    (value,) = kwargs.values()
    if not callable(value):
        assert repr(value) in message  # the whole value, not one character of a string


@pytest.mark.parametrize(
    "kwargs",
    [
        {"flush_interval": 1},
        {"flush_interval": 86_400},
        {"shutdown_timeout": 3600},
        {"shutdown_timeout": 0.5},
        {"high_resolution": False, "progress_bar": False},
        {"clock": lambda: 7},
        {"hourly_rate": 0},
        {"dimensions": [("Env", "prod")]},
    ],
)
def test_job_accepts_the_edges_of_what_is_allowed(kwargs: dict[str, Any]) -> None:
    built = job(**kwargs)
    assert built.close()


def test_the_longest_interval_and_timeout_still_close_at_once() -> None:
    """Before, 1e10 s overflowed the thread waits: the flusher died, close() raised."""
    sink = MemorySink()
    built = job(sink=sink, flush_interval=86_400, shutdown_timeout=3600)
    built.processed(4)
    assert built._flusher.running
    assert built.flush(timeout=3600)
    assert built.close()
    assert not built._flusher.running
    assert sink.sum("RecordsProcessed") == 4


@pytest.mark.parametrize("timeout", ["x", -1, 0, 1e10, 3600.5, True, math.nan, math.inf])
def test_flush_refuses_a_bad_timeout(timeout: object) -> None:
    built = job()
    try:
        with pytest.raises(ConfigurationError, match=TIMEOUTS):
            built.flush(timeout=timeout)  # type: ignore[arg-type]
        assert built.flush(timeout=0.5)  # a good one still flushes
    finally:
        built.close()


@pytest.mark.parametrize(
    ("variable", "raw", "attribute", "default", "allowed"),
    [
        (config.ENV_FLUSH_INTERVAL, "0.5", "flush_interval", 60.0, INTERVALS),
        (config.ENV_FLUSH_INTERVAL, "1e-6", "flush_interval", 60.0, INTERVALS),
        (config.ENV_FLUSH_INTERVAL, "1e10", "flush_interval", 60.0, INTERVALS),
        (config.ENV_SHUTDOWN_TIMEOUT, "1e308", "shutdown_timeout", 10.0, TIMEOUTS),
        (config.ENV_SHUTDOWN_TIMEOUT, "3601", "shutdown_timeout", 10.0, TIMEOUTS),
    ],
)
def test_an_out_of_range_variable_warns_and_uses_the_default(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    variable: str,
    raw: str,
    attribute: str,
    default: float,
    allowed: str,
) -> None:
    monkeypatch.setenv(variable, raw)
    with caplog.at_level(logging.WARNING, logger="metricskit"):
        built = job()
    assert built.close()
    assert getattr(built, attribute) == default
    assert f"{variable}={raw!r}" in caplog.text
    assert allowed in caplog.text


@pytest.mark.parametrize(
    ("variable", "raw", "attribute"),
    [
        (config.ENV_FLUSH_INTERVAL, "1", "flush_interval"),
        (config.ENV_FLUSH_INTERVAL, "86400", "flush_interval"),
        (config.ENV_SHUTDOWN_TIMEOUT, "3600", "shutdown_timeout"),
    ],
)
def test_a_variable_at_the_edge_is_used(
    monkeypatch: pytest.MonkeyPatch, variable: str, raw: str, attribute: str
) -> None:
    monkeypatch.setenv(variable, raw)
    built = job()
    built.close()
    assert getattr(built, attribute) == float(raw)
