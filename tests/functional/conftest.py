"""Fixtures shared by the functional tests of the counters (count_lines, count_csv_records)."""

from __future__ import annotations

import uuid

import boto3
import pytest

from metricskit import job_table


@pytest.fixture
def table(aws: str) -> str:
    """A fresh job table on the moto server (tests with their own ``table`` fixture keep it)."""
    name = f"jobs-{uuid.uuid4().hex[:8]}"
    job_table.create_table(boto3.client("dynamodb"), name)
    return name
