"""The metricskit command against a moto job table."""

from __future__ import annotations

import uuid

import boto3
import pytest

import metricskit
from metricskit import job_table
from metricskit.cli import main as cli_main


def test_jobs_lists_registered_jobs_with_status_and_progress(
    aws: str, capsys: pytest.CaptureFixture[str]
) -> None:
    table = f"cli-{uuid.uuid4().hex[:8]}"
    job_table.create_table(boto3.client("dynamodb"), table)
    with metricskit.Job("cli-job", total=200, sink="memory", job_table=table) as job:
        job.processed(50)
        job.stage("read").processed(1234)
    assert cli_main(["jobs", "--table", table]) == 0
    rows = capsys.readouterr().out.splitlines()
    line = next(row for row in rows if row.startswith("cli-job"))
    assert "completed" in line
    assert " 50 " in line
    assert "25.0" in line
    assert rows[rows.index(line) + 1].split() == ["stage", "read", "1,234"]
