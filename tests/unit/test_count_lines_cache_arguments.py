"""count_lines' cache: a bad table argument raises like Job(job_table=); a job table in the
environment with no AWS region only costs the cache (a warning), never the count."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from metricskit import config
from metricskit.errors import ConfigurationError
from metricskit.lines import count_csv_records, count_lines


@pytest.fixture
def rows(tmp_path: Path) -> Path:
    path = tmp_path / "rows.csv"
    path.write_text("h\n1\n2\n")
    return path


@pytest.fixture
def no_region(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")


@pytest.mark.parametrize("table", ["x y", "ab", "", 5])
def test_a_bad_table_argument_raises_as_job_table_does(rows: Path, table: object) -> None:
    with pytest.raises(ConfigurationError, match=re.escape("3 to 255 letters, digits and _ - .")):
        count_lines(rows, table=table)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="3 to 255 letters"):
        count_csv_records(rows, table=table)  # type: ignore[arg-type]


@pytest.mark.usefixtures("no_region")
def test_a_local_file_is_counted_without_the_cache_when_there_is_no_region(
    rows: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(config.ENV_JOB_TABLE, "metricskit-jobs")
    with caplog.at_level(logging.WARNING, logger="metricskit"):
        assert count_lines(rows) == 3
        assert count_csv_records(rows) == 2
        assert count_lines(rows, table="metricskit-jobs") == 3
    assert "no AWS region" in caplog.text
    assert "counting" in caplog.text


def test_a_bad_table_variable_warns_and_counts_without_the_cache(
    rows: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(config.ENV_JOB_TABLE, "x y")
    with caplog.at_level(logging.WARNING, logger="metricskit"):
        assert count_lines(rows) == 3
    assert config.ENV_JOB_TABLE in caplog.text
