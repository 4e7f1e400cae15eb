"""Progress by bytes (no counting pass) and the terminal progress bar."""

from __future__ import annotations

import gzip
import io
import os
import threading
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest

from metricskit import Job, catalog
from metricskit.errors import ConfigurationError
from metricskit.progress import ByteProgressReader, TerminalProgress, progress_bar_wanted
from metricskit.recorder import JobStatus
from metricskit.sinks.memory import MemorySink

BODY = b"".join(b"%d,row\n" % i for i in range(10_000))


def test_reading_a_file_reports_bytes_against_its_size(tmp_path: Path, clock: Any) -> None:
    path = tmp_path / "rows.csv"
    path.write_bytes(BODY)
    sink = MemorySink()
    with Job("bytes-1", sink=sink, clock=clock) as job:
        reading = job.stage("read")
        with open(path, "rb") as raw, io.BufferedReader(ByteProgressReader(raw, reading)) as f:
            assert reading.total == len(BODY)
            half = 0
            for line in f:
                half += len(line)
                if half >= len(BODY) // 2:
                    break
            clock.advance(10)
            status = reading.status()
            assert 0 < status.done <= len(BODY)
            assert status.percent is not None
            assert 45 <= status.percent <= 100
            rest = f.read()
        assert half + len(rest) == len(BODY)
        assert reading.status().done == len(BODY)
        assert job.status().done == 0  # the job's own count stays in records
    assert sink.last(catalog.RECORDS_TOTAL, Stage="read") == len(BODY)
    assert sink.last(catalog.PROGRESS_PERCENTAGE, Stage="read") == 100


def test_compressed_object_counts_compressed_bytes(tmp_path: Path, clock: Any) -> None:
    packed = gzip.compress(BODY)
    path = tmp_path / "rows.csv.gz"
    path.write_bytes(packed)
    with Job("bytes-gz", sink=MemorySink(), clock=clock) as job:
        with open(path, "rb") as raw:
            tracked = ByteProgressReader(raw, job)
            lines = sum(1 for _ in gzip.GzipFile(fileobj=tracked))
        assert lines == 10_000
        assert job.total == len(packed)
        assert job.status().done == len(packed)


def test_unsized_stream_takes_an_explicit_size_and_keeps_a_given_total(clock: Any) -> None:
    class Pipe(io.RawIOBase):  # not seekable, no file descriptor
        def __init__(self) -> None:
            self._data = io.BytesIO(BODY)

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: Any) -> int:
            return self._data.readinto(buffer)

    with Job("bytes-pipe", sink=MemorySink(), clock=clock) as job:
        assert ByteProgressReader(Pipe(), job).size is None
        assert job.total is None
        reader = ByteProgressReader(Pipe(), job, size=len(BODY))
        assert job.total == len(BODY)
        first = reader.read(100)
        assert first == BODY[:100]
        assert reader.readline() == BODY[100 : BODY.index(b"\n", 100) + 1]
        assert reader.bytes_read == BODY.index(b"\n", 100) + 1
        assert job.status().done == reader.bytes_read
    with Job("bytes-total", total=5, sink=MemorySink(), clock=clock) as job:
        ByteProgressReader(io.BytesIO(BODY), job)
        assert job.total == 5  # a total the caller set is not replaced


def test_s3_object_through_smart_open(aws: str, clock: Any) -> None:
    from smart_open import open as smart_open

    s3 = boto3.client("s3")
    bucket = f"bytes-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="rows.csv", Body=BODY)
    with Job("bytes-s3", sink=MemorySink(), clock=clock) as job:
        with smart_open(f"s3://{bucket}/rows.csv", "rb", transport_params={"client": s3}) as raw:
            reader = ByteProgressReader(raw, job)
            assert job.total == len(BODY)
            assert reader.read() == BODY
        assert job.status().percent == 100


def test_bad_arguments_are_refused(clock: Any) -> None:
    with Job("bytes-bad", sink=MemorySink(), clock=clock) as job:
        with pytest.raises(ConfigurationError, match="binary file object"):
            ByteProgressReader(object(), job)
        with pytest.raises(ConfigurationError, match="size"):
            ByteProgressReader(io.BytesIO(b""), job, size=-1)


def test_bar_shows_the_status_numbers() -> None:
    out = io.StringIO()
    status = JobStatus(done=250, total=1000, percent=25.0, rate=12.5, eta_seconds=60.0)
    bar = TerminalProgress(lambda: status, desc="csv-job", file=out, interval=3600)
    bar.refresh()
    bar.close()
    text = out.getvalue()
    assert "csv-job" in text
    assert "250/1000" in text
    assert "25%" in text
    assert "12.5/s" in text
    assert "ETA 01:00" in text


def test_bar_past_its_total_stays_full_and_shows_the_real_count() -> None:
    """A resume that re-does rows, or an estimated total, can leave done above total; tqdm
    alone would then draw an empty bar with no percentage."""
    out = io.StringIO()
    status = JobStatus(done=1001, total=1000, percent=100.0, rate=2.0, eta_seconds=0.0)
    bar = TerminalProgress(lambda: status, desc="over", file=out, interval=3600)
    bar.close()
    last = out.getvalue().rstrip("\n").split("\r")[-1]
    assert "100%" in last
    assert "1001/1000" in last
    assert "/?" not in last


def test_bar_with_unknown_total_shows_count_and_rate_only() -> None:
    out = io.StringIO()
    status = JobStatus(done=42, total=None, percent=None, rate=3.0, eta_seconds=None)
    bar = TerminalProgress(lambda: status, desc="open-ended", file=out, interval=3600)
    bar.close()
    text = out.getvalue()
    assert "42" in text
    assert "3.0/s" in text
    assert "ETA ?" in text
    assert "%" not in text


def test_bar_survives_a_failing_status() -> None:
    def broken() -> JobStatus:
        raise RuntimeError("status exploded")

    bar = TerminalProgress(broken, desc="x", file=io.StringIO(), interval=3600)
    bar.refresh()
    bar.close()


def test_job_bar_default_follows_the_terminal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], clock: Any
) -> None:
    assert progress_bar_wanted(None, io.StringIO()) is False
    assert progress_bar_wanted(True, io.StringIO()) is True

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert progress_bar_wanted(None, Tty()) is True
    with Job("no-bar", sink=MemorySink(), clock=clock) as job:  # stderr is captured: no TTY
        job.processed()
    assert "no-bar" not in capsys.readouterr().err
    monkeypatch.setenv("METRICSKIT_PROGRESS_BAR", "true")
    with Job("env-bar", total=10, sink=MemorySink(), clock=clock) as job:
        job.processed(4)
        clock.advance(2)
    err = capsys.readouterr().err
    assert "env-bar" in err
    assert "4/10" in err
    with Job("arg-bar", total=10, sink=MemorySink(), clock=clock, progress_bar=False) as job:
        job.processed(4)
    assert "arg-bar" not in capsys.readouterr().err


def test_a_pipe_has_an_unknown_size_not_zero(clock: Any) -> None:
    """fstat reports 0 bytes for a pipe (unknown, not empty): no total, no ETA of 0."""
    read_end, write_end = os.pipe()
    chunk = BODY[:10_000]  # fits in the pipe's buffer: the writer never waits for the reader
    writer = threading.Thread(target=lambda: (os.write(write_end, chunk), os.close(write_end)))
    writer.start()
    with Job("pipe-1", sink="memory", clock=clock) as job, open(read_end, "rb") as raw:
        reader = ByteProgressReader(raw, job)
        assert reader.size is None
        assert job.total is None
        clock.advance(5)
        assert len(reader.read(1000)) > 0
        clock.advance(5)
        status = job.status()
        assert status.total is None
        assert status.eta_seconds is None
    writer.join()


def test_an_empty_regular_file_still_has_size_zero(tmp_path: Path, clock: Any) -> None:
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    with Job("empty-1", sink="memory", clock=clock) as job, open(path, "rb") as raw:
        assert ByteProgressReader(raw, job).size == 0
        assert job.total == 0


def test_a_partly_read_file_counts_only_the_bytes_left(tmp_path: Path, clock: Any) -> None:
    """Bytes are counted from where the reader starts (past a header the caller already
    read, or a resumed offset), so the total is what is left: done reaches it at the end."""
    path = tmp_path / "rows.csv"
    path.write_bytes(BODY)
    with Job("partly-1", sink="memory", clock=clock) as job, open(path, "rb") as raw:
        raw.read(100)
        reader = ByteProgressReader(raw, job)
        assert reader.size == len(BODY) - 100
        while reader.read(65536):
            pass
        assert job.status().percent == 100
