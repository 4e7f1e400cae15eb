"""What close() cannot deliver is reported once as an ERROR that says it is dropped, and a
client without credentials does not spend the whole shutdown timeout retrying."""

from __future__ import annotations

import logging

import boto3
import botocore.session
import pytest
from botocore.credentials import CredentialResolver

import metricskit
from metricskit import catalog
from metricskit.sinks.cloudwatch import CloudWatchSink
from metricskit.sinks.memory import MemorySink


def _errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_failed_last_delivery_logs_one_error_with_what_is_lost(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink = MemorySink()
    sink.fail_exports = True
    job = metricskit.Job(
        "lost-at-close", sink=sink, flush_interval=3600, shutdown_timeout=0.5, handle_sigterm=False
    )
    job.processed(42)
    job.stage("load").processed(5)  # a stage's records are not the job's: not counted twice
    job.observe("Latency", 3.0)
    with caplog.at_level(logging.WARNING, logger="metricskit"):
        assert job.close() is False
    errors = [m for m in _errors(caplog) if "DROPPED" in m]
    assert len(errors) == 1, _errors(caplog)
    assert "lost-at-close closed with 1 period(s) not delivered to MemorySink" in errors[0]
    assert f"42 {catalog.RECORDS_PROCESSED}" in errors[0]
    assert "series" in errors[0]


def test_a_delivered_close_logs_no_error(caplog: pytest.LogCaptureFixture) -> None:
    job = metricskit.Job("fine", sink=MemorySink(), flush_interval=3600, handle_sigterm=False)
    job.processed(1)
    with caplog.at_level(logging.WARNING, logger="metricskit"):
        assert job.close() is True
    assert _errors(caplog) == []


def _client_without_credentials() -> object:
    # A botocore session whose credential chain finds nothing, as on a laptop without a
    # profile: the client is built (region given) and every request raises NoCredentialsError.
    core = botocore.session.Session()
    core.register_component("credential_provider", CredentialResolver(providers=[]))
    session = boto3.session.Session(botocore_session=core, region_name="us-east-1")
    return session.client("cloudwatch")


def test_no_credentials_at_close_stops_retrying_after_the_first_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink = CloudWatchSink(client=_client_without_credentials())  # type: ignore[arg-type]
    job = metricskit.Job(
        "no-creds", sink=sink, flush_interval=3600, shutdown_timeout=3.0, handle_sigterm=False
    )
    job.processed(7)
    with caplog.at_level(logging.WARNING, logger="metricskit"):
        assert job.close() is False
    # Retrying could not help (the client never gets credentials): one attempt, not one per
    # back-off step for 3 s (0.1 + 0.2 + 0.4 + 0.8 + 1.6: six attempts).
    assert sink.failed_requests == 1
    errors = [m for m in _errors(caplog) if "DROPPED" in m]
    assert len(errors) == 1
    assert "Unable to locate credentials" in errors[0]
    assert f"7 {catalog.RECORDS_PROCESSED}" in errors[0]


def test_other_failures_at_close_keep_retrying_until_the_timeout() -> None:
    sink = MemorySink()
    sink.fail_exports = True
    job = metricskit.Job(
        "outage", sink=sink, flush_interval=3600, shutdown_timeout=1.0, handle_sigterm=False
    )
    job.processed(1)
    assert job.close() is False
    assert sink.export_calls > 2  # the first attempt, then retries with back-off
