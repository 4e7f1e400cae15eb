"""Sinks' and counters' arguments: the wrong type or out of range raises ConfigurationError
saying what is allowed, at once, never a bare TypeError or a failure later."""

from __future__ import annotations

import io
import logging
import math
import re
from pathlib import Path
from typing import Any

import pytest

import metricskit
from metricskit import config
from metricskit.errors import ConfigurationError
from metricskit.lines import count_lines
from metricskit.sinks.cloudwatch import CloudWatchSink
from metricskit.sinks.emf import EMFSink


@pytest.mark.parametrize(
    ("kwargs", "allowed"),
    [
        ({"max_attempts": "3"}, "max_attempts must be an int >= 1"),
        ({"max_attempts": 1.5}, "max_attempts must be an int >= 1"),
        ({"max_attempts": 0}, "max_attempts must be an int >= 1"),
        ({"max_attempts": True}, "max_attempts must be an int >= 1"),
        ({"connect_timeout": -1}, "connect_timeout must be a finite number of seconds > 0"),
        ({"connect_timeout": math.nan}, "connect_timeout must be a finite number of seconds"),
        ({"read_timeout": "x"}, "read_timeout must be a finite number of seconds > 0"),
        ({"read_timeout": 0}, "read_timeout must be a finite number of seconds > 0"),
        ({"client": "x"}, "client must be a boto3 CloudWatch client"),
        ({"session": "x"}, "session must be a boto3.session.Session"),
    ],
)
def test_cloudwatch_sink_refuses_a_bad_argument(kwargs: dict[str, Any], allowed: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(allowed)):
        CloudWatchSink(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "allowed"),
    [
        ({"stream": "file.log"}, "stream must be an open text stream with write()"),
        ({"stream": 5}, "stream must be an open text stream with write()"),
        ({"max_document_bytes": "x"}, "max_document_bytes must be an int from 8192"),
        ({"max_document_bytes": 9000.5}, "max_document_bytes must be an int from 8192"),
        ({"max_document_bytes": True}, "max_document_bytes must be an int from 8192"),
        ({"max_distribution_samples": True}, "max_distribution_samples must be an int >= 1"),
        ({"max_distribution_samples": 1.5}, "max_distribution_samples must be an int >= 1"),
        ({"socket_timeout": True}, "socket_timeout must be > 0 seconds"),
        ({"service_name": 5}, "service_name must be a non-empty string or None"),
    ],
)
def test_emf_sink_refuses_a_bad_argument(kwargs: dict[str, Any], allowed: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(allowed)):
        EMFSink(**kwargs)


def test_emf_sink_takes_any_object_with_write_as_its_stream() -> None:
    buffer = io.StringIO()
    sink = EMFSink(stream=buffer, service_name="loader")
    with metricskit.Job("emf-stream", sink=sink, handle_sigterm=False) as emf_job:
        emf_job.processed()
    assert '"ServiceName":"loader"' in buffer.getvalue()


def test_a_bad_emf_endpoint_variable_is_named_in_its_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(config.ENV_EMF_AGENT_ENDPOINT, "bogus")
    with caplog.at_level(logging.WARNING, logger="metricskit"):
        sink = EMFSink()
    assert sink.endpoint is None
    assert f"{config.ENV_EMF_AGENT_ENDPOINT}='bogus'" in caplog.text


@pytest.mark.parametrize("uri", [123, None, 1.5, ["rows.csv"]])
def test_count_lines_refuses_a_uri_that_is_not_a_path(uri: object) -> None:
    with pytest.raises(ConfigurationError, match="uri must be a local path"):
        count_lines(uri)  # type: ignore[arg-type]


@pytest.mark.parametrize("chunk_size", [0, True, 1.5, "4096"])
def test_count_lines_refuses_a_bad_chunk_size(tmp_path: Path, chunk_size: object) -> None:
    path = tmp_path / "rows.csv"
    path.write_text("a\nb\n")
    with pytest.raises(ConfigurationError, match="chunk_size must be a positive int"):
        count_lines(path, chunk_size=chunk_size)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "profile",
    [
        "fargate:4vcpu:8gb",
        "fargate-spot:0.25vcpu:0.5gb",
        "batch-fargate:1vcpu:2gb",
        "batch-fargate-spot:2vcpu:4gb",
        "ec2:g5.xlarge",
        "ec2-spot:g4dn.xlarge",
        "batch-ec2:m5.large",
        "batch-ec2-spot:c5.2xlarge",
        "ec2:c7i.metal-24xl",
        "ec2:u-6tb1.metal",
        "ec2:c7i.metal-",
        "EC2:G5.XLARGE",
        " fargate:1vcpu:2gb ",
        "fargate:0vcpu:2gb",
        "fargate:1vcpu:0gb",
        "fargate:0.0vcpu:1gb",
        "fargate:1vcpu",
        "fargate:1cpu:2gb",
        "ec2:g5",
        "ec2:",
        "ec2:g5.xlarge:extra",
        "ec2-spot-spot:g5.xlarge",
        "gpu:a100",
        "tpu:v4",
        "nonsense",
        "",
    ],
)
def test_compute_profile_rule_matches_what_the_cost_tracker_prices(profile: str) -> None:
    """metricskit checks compute_profile without importing the tracker: the two must agree."""
    from cost_tracker.pricing import UnknownProfileError, parse_profile
    from metricskit.validation import check_compute_profile

    try:
        parse_profile(profile)
        priced = True
    except UnknownProfileError:
        priced = False
    try:
        check_compute_profile(profile)
        accepted = True
    except ConfigurationError:
        accepted = False
    assert accepted == priced
