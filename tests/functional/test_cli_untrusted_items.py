"""``metricskit jobs`` prints what the job table holds, and anyone with write access to the
table can put anything there: job ids and stage names with control characters are printed
escaped (no escape sequence reaches the terminal), honest ones exactly as before."""

from __future__ import annotations

import time
import uuid

import boto3
import pytest

import metricskit
from metricskit import job_table
from metricskit.cli import main as cli_main


def test_control_characters_in_job_ids_and_stage_names_are_printed_escaped(
    aws: str, capsys: pytest.CaptureFixture[str]
) -> None:
    table = f"cli-{uuid.uuid4().hex[:8]}"
    client = boto3.client("dynamodb")
    job_table.create_table(client, table)
    with metricskit.Job("honest-job", total=10, sink="memory", job_table=table) as job:
        job.stage("read").processed(3)
    client.put_item(
        TableName=table,
        Item={
            job_table.HASH_KEY: {"S": "evil\x1b[2J\x1b[1;31mFAKE\rjob-ok\u202e"},
            job_table.ITEM_TYPE: {"S": job_table.TYPE_JOB},
            job_table.STATUS: {"S": job_table.STATUS_RUNNING},
            job_table.STARTED_AT: {"N": str(time.time())},
            job_table.stage_done_attribute("\x1b]0;pwned\x07x"): {"N": "1"},
        },
    )
    assert cli_main(["jobs", "--table", table]) == 0
    out = capsys.readouterr().out
    assert all(ch.isprintable() or ch == "\n" for ch in out), repr(out)
    assert r"evil\x1b[2J\x1b[1;31mFAKE\rjob-ok\u202e" in out
    assert r"stage \x1b]0;pwned\x07x" in out
    rows = out.splitlines()
    honest = next(row for row in rows if row.startswith("honest-job"))
    assert honest.split()[1] == "completed"
    assert rows[rows.index(honest) + 1].split() == ["stage", "read", "3"]
