"""The metricskit command against a moto job table."""

from __future__ import annotations

import gzip
import subprocess
import sys
import uuid
from pathlib import Path

import boto3
import pytest

import metricskit
from metricskit import job_table
from metricskit.cli import main as cli_main

REPO = Path(__file__).resolve().parents[2]


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


def test_jobs_shows_a_job_past_its_total_at_100_percent_with_its_worker_counts(
    aws: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A finished job has no active worker; the table still says how many ran it."""
    table = f"cli-{uuid.uuid4().hex[:8]}"
    job_table.create_table(boto3.client("dynamodb"), table)
    for worker in ("w1", "w2"):
        with metricskit.Job(
            "over", total=100, sink="memory", job_table=table, worker_id=worker
        ) as job:
            job.processed(60)
    assert cli_main(["jobs", "--table", table]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[0].split()[-2:] == ["workers", "active"]
    fields = next(row for row in rows if row.startswith("over")).split()
    assert fields[1:] == ["completed", "120", "100", "100.0", "2", "0"]


@pytest.mark.parametrize("value", ["-1", "0", "nan", "soon"])
def test_jobs_refuses_a_stale_after_that_is_not_a_positive_number(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["jobs", "--table", "jobs", "--stale-after", value])
    assert exit_info.value.code == 2
    assert "positive number of seconds" in capsys.readouterr().err


def test_an_unreadable_file_is_one_line_on_stderr_and_exit_status_1(tmp_path: Path) -> None:
    missing = tmp_path / "nonexistent.csv"
    done = subprocess.run(
        [sys.executable, "-m", "metricskit.cli", "count-lines", str(missing)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines() == [
        f"metricskit: error: [Errno 2] No such file or directory: '{missing}'"
    ]


def test_a_truncated_compressed_file_is_one_line_on_stderr_and_exit_status_1(
    tmp_path: Path,
) -> None:
    truncated = tmp_path / "rows.csv.gz"
    whole = gzip.compress(b"".join(b"%d,row-%d\n" % (i, i * 7) for i in range(50_000)))
    truncated.write_bytes(whole[: len(whole) // 2])
    for command in ("count-lines", "count-csv-records"):
        done = subprocess.run(
            [sys.executable, "-m", "metricskit.cli", command, str(truncated), "--no-cache"],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=60,
            check=False,
        )
        assert done.returncode == 1, done.stderr
        assert "Traceback" not in done.stderr
        (line,) = done.stderr.splitlines()
        assert line.startswith(f"metricskit: error: {truncated}: cannot decompress it")


def test_no_aws_region_is_a_configuration_error_with_exit_status_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    assert cli_main(["jobs", "--table", "foo"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("metricskit: error: no AWS region")
    assert len(err.splitlines()) == 1


def test_an_invalid_table_argument_is_exit_status_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["jobs", "--table", "ab"]) == 2
    assert "3 to 255 letters" in capsys.readouterr().err


def test_an_aws_error_is_one_line_on_stderr_and_exit_status_1(
    aws: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_main(["jobs", "--table", f"missing-{uuid.uuid4().hex[:8]}"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("metricskit: error: ")
    assert "ResourceNotFoundException" in err
    assert len(err.splitlines()) == 1


def test_help_documents_the_exit_statuses(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli_main(["--help"])
    out = capsys.readouterr().out
    assert "Exit status: 0 on success, 1 when" in out
    assert "2 for a usage or configuration error" in out
