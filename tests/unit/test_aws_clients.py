"""Regions: boto3's own chain first, then AWS_REGION (which botocore does not read)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import boto3
import pytest

from metricskit.aws_clients import dynamodb_client, s3_client
from metricskit.errors import ConfigurationError
from metricskit.registry import JobRegistry
from metricskit.sinks.cloudwatch import CloudWatchSink

BUILDERS: list[tuple[str, Callable[[], Any]]] = [
    ("dynamodb", dynamodb_client),
    ("s3", s3_client),
    ("cloudwatch", lambda: CloudWatchSink().client),
    ("registry", lambda: JobRegistry("metricskit-jobs").client),
]


@pytest.fixture(autouse=True)
def _no_region(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")


@pytest.mark.parametrize(("what", "build"), BUILDERS)
def test_a_worker_with_only_aws_region_gets_clients_in_that_region(
    monkeypatch: pytest.MonkeyPatch, what: str, build: Callable[[], Any]
) -> None:
    assert boto3.session.Session().region_name is None  # botocore ignores AWS_REGION
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    assert build().meta.region_name == "eu-west-1"


@pytest.mark.parametrize(("what", "build"), BUILDERS)
def test_aws_default_region_wins_when_both_are_set(
    monkeypatch: pytest.MonkeyPatch, what: str, build: Callable[[], Any]
) -> None:
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-west-2")
    assert build().meta.region_name == "us-west-2"


def test_a_session_with_a_region_keeps_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    session = boto3.session.Session(region_name="ap-south-1")
    assert dynamodb_client(session).meta.region_name == "ap-south-1"
    assert CloudWatchSink(session=session).client.meta.region_name == "ap-south-1"


@pytest.mark.parametrize(("what", "build"), [b for b in BUILDERS if b[0] != "s3"])
def test_no_region_names_both_variables_and_which_wins(what: str, build: Callable[[], Any]) -> None:
    """(S3 is left out: boto3 builds an S3 client in us-east-1 when no region is set.)"""
    with pytest.raises(ConfigurationError, match="AWS_DEFAULT_REGION or AWS_REGION") as caught:
        build()
    assert "AWS_DEFAULT_REGION wins" in str(caught.value)
