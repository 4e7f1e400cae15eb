"""count_csv_records: CSV records as csv.reader yields them, on local, compressed and moto S3
objects, with numpy and without, and its own job-table cache item."""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import lzma
import random
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from metricskit import count_csv_records, count_lines, job_table, lines
from metricskit.cli import main as cli_main
from metricskit.errors import ConfigurationError
from metricskit.lines import count_csv_records_in
from tests.functional.test_count_lines import rows

# Pieces of field text: every character RFC 4180 makes special, escaped quotes, a bare \r
# (legal inside a quoted field), a multi-byte character.
ATOMS = ("a", "bc", "7", ",", '"', '""', "\n", "\r\n", "\r", " ", "\u00e9")


@pytest.fixture(params=["numpy", "numpy-without-bitwise_count", "pure-python"])
def counters(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test with numpy's counters (also as on numpy 1.26, which has no bitwise_count)
    and with the fallback without numpy."""
    if request.param.startswith("numpy"):
        numpy = pytest.importorskip("numpy")
        if request.param == "numpy-without-bitwise_count":
            monkeypatch.delattr(numpy, "bitwise_count", raising=False)
        assert lines._counters().record_ends is not lines._record_ends_python
    else:
        monkeypatch.setitem(sys.modules, "numpy", None)  # import numpy now fails
        assert lines._counters().record_ends is lines._record_ends_python
    return str(request.param)


def csv_reader_records(data: bytes) -> int:
    """The reference: what csv.reader yields from the file opened with newline=''."""
    return sum(1 for _ in csv.reader(io.StringIO(data.decode("utf-8"), newline="")))


def random_field(rng: random.Random) -> str:
    text = "".join(rng.choice(ATOMS) for _ in range(rng.randrange(0, 5)))
    if any(c in text for c in ',"\r\n') or rng.random() < 0.2:
        return '"' + text.replace('"', '""') + '"'  # RFC 4180 quoting, sometimes unneeded
    return text


def random_csv(rng: random.Random) -> bytes:
    """A valid RFC 4180 file: empty and quoted fields, embedded newlines, blank lines, \\n or
    \\r\\n endings, with or without a final line ending."""
    ending = rng.choice(["\n", "\r\n"])
    records = [
        ",".join(random_field(rng) for _ in range(rng.randrange(0, 4)))
        for _ in range(rng.randrange(0, 12))
    ]
    text = "".join(record + ending for record in records)
    if records and rng.random() < 0.5:
        text = text[: -len(ending)]
    return text.encode("utf-8")


def csv_writer_file(rng: random.Random) -> bytes:
    """The same kind of file written by csv.writer itself, under each quoting rule."""
    out = io.StringIO()
    quoting = rng.choice([csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC])
    writer = csv.writer(out, lineterminator="\r\n", quoting=quoting)
    for _ in range(rng.randrange(0, 12)):
        fields = ["".join(rng.choice(ATOMS) for _ in range(rng.randrange(0, 4)))]
        writer.writerow(fields * rng.randrange(0, 4))
    return out.getvalue().encode("utf-8")


def test_random_files_count_as_csv_reader_reads_them(tmp_path: Path, counters: str) -> None:
    rng = random.Random(4180)
    path = tmp_path / "random.csv"
    for _ in range(1500):
        data = random_csv(rng) if rng.random() < 0.7 else csv_writer_file(rng)
        expected = csv_reader_records(data)
        path.write_bytes(data)
        # 7-byte chunks put quotes, \r\n pairs and escaped "" across chunk boundaries.
        for chunk_size in (1, 7, 1 << 16):
            counted = count_csv_records(path, header=False, use_cache=False, chunk_size=chunk_size)
            assert counted == expected, (data, chunk_size)
        assert count_csv_records_in(io.BytesIO(data), 2) == expected, data


def test_a_large_file_with_quoted_multiline_fields(tmp_path: Path, counters: str) -> None:
    rng = random.Random(7)
    data = b"".join(random_csv(rng) + b"\n" for _ in range(3000))
    path = tmp_path / "large.csv"
    path.write_bytes(data)
    expected = csv_reader_records(data)
    assert expected < data.count(b"\n")  # the fields really span lines
    for chunk_size in (7, 4096, lines.DEFAULT_CHUNK_SIZE):
        assert count_csv_records(path, header=False, chunk_size=chunk_size) == expected


@pytest.mark.parametrize(
    ("data", "records"),
    [
        (b"", 0),
        (b"h1,h2\n", 1),
        (b"h1,h2", 1),
        (b'id,text\n1,"two\nlines"\n2,plain\n', 3),
        (b'id,text\r\n1,"two\r\nlines"\r\n2,plain\r\n', 3),
        (b'id,text\n1,"say ""hi""\nthen go"\n2,""\n', 3),  # escaped quotes keep the parity
        (b'id,text\n1,"a\n"\n2,b', 3),  # the last record has no newline
        (b"id\n\n1\n\n", 4),  # csv.reader yields [] for each blank line
        (b'id\n1,"never closed\n2\n', 2),  # csv.reader yields the open field at the end
        (b'"""",""\n', 1),
    ],
)
def test_records_end_at_newlines_outside_quotes(
    tmp_path: Path, counters: str, data: bytes, records: int
) -> None:
    path = tmp_path / "rows.csv"
    path.write_bytes(data)
    assert csv_reader_records(data) == records  # the examples agree with the reference
    assert count_csv_records(path, header=False) == records
    assert count_csv_records(path) == max(0, records - 1)


def csv_reader_records_sig(data: bytes) -> int:
    """The reference as the CSV-to-Kafka worker reads: UTF-8 with a leading byte order mark
    dropped (``utf-8-sig``)."""
    return sum(1 for _ in csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))


def inch_rows(rows: int, every: int) -> bytes:
    """The reviewer's file: every ``every``-th row describes a 12" pipe."""
    body = b"".join(
        b'%d,12" pipe,3\n' % i if i % every == every - 1 else b"%d,bolt,3\n" % i
        for i in range(rows)
    )
    return b"sku,desc,qty\n" + body


@pytest.mark.parametrize(
    ("data", "records"),
    [
        # A quote that is not at the start of a field is an ordinary character: it used to
        # open a quote that swallowed every line up to the next quote.
        (b'sku,desc\n1,12" pipe\n2,bolt\n3,nut\n', 4),
        (b'a"b\nc\n', 2),
        (b'1,"closed"then"more\n2\n', 2),  # after a closing quote the field is unquoted
        (b'1,"a""b"\n2,"x"""\n3\n', 3),  # escaped quotes, one right before the close
        # A space before a quote: the field is unquoted, so its newline ends the record.
        (b'id,text\n1, "a\nb"\n', 3),
        # Bare \r line endings (old Mac files) end records as \n and \r\n do.
        (b"id,v\r1,a\r2,b\r", 3),
        (b"id,v\r1,a\r\n2,b\n3,c", 4),
        (b'id,v\r1,"x\ry"\r2,b', 3),  # inside a quoted field a \r is text
        (b'\xef\xbb\xbf"id","v"\n1,2\n', 2),  # a quote right after the byte order mark
        (b'"a\n', 1),  # a quoted field never closed is one record
        (b'""""\n"\n', 2),  # an escaped quote, then a field left open at the end
    ],
)
def test_records_are_counted_as_csv_reader_reads_them_including_stray_quotes(
    tmp_path: Path, counters: str, data: bytes, records: int
) -> None:
    path = tmp_path / "odd.csv"
    path.write_bytes(data)
    assert csv_reader_records_sig(data) == records  # the examples agree with the reference
    for chunk_size in (1, 2, 3, 7, lines.DEFAULT_CHUNK_SIZE):
        counted = count_csv_records(path, header=False, use_cache=False, chunk_size=chunk_size)
        assert counted == records, chunk_size


def test_a_stray_inch_mark_in_every_thousandth_row(tmp_path: Path, counters: str) -> None:
    """The reviewer's files: 10,000 rows with one ``12"`` counted 11, and 100,000 rows with
    one every 1000th row counted 50,000. The count is cached by ETag, so it must be right."""
    path = tmp_path / "inch.csv"
    path.write_bytes(inch_rows(10_000, 10_000))
    assert count_csv_records(path, use_cache=False) == 10_000
    data = inch_rows(100_000, 1000)
    path.write_bytes(data)
    assert csv_reader_records_sig(data) - 1 == 100_000
    for chunk_size in (4096, 65_536, lines.DEFAULT_CHUNK_SIZE):
        assert count_csv_records(path, use_cache=False, chunk_size=chunk_size) == 100_000


# Pieces of files that are not RFC 4180: stray quotes in unquoted fields, spaces before
# quotes, bare \r line ends, quotes after a closing quote, a byte order mark.
STRAY_ATOMS = (b"a", b'"', b'""', b",", b"\n", b"\r", b"\r\n", b" ", b'12"', b'x"y', b"\xc3\xa9")


def test_random_files_with_stray_quotes_count_as_csv_reader_reads_them(
    tmp_path: Path, counters: str
) -> None:
    rng = random.Random(20261124)
    path = tmp_path / "stray.csv"
    for _ in range(1500):
        data = b"".join(rng.choice(STRAY_ATOMS) for _ in range(rng.randrange(0, 16)))
        if rng.random() < 0.2:
            data = b"\xef\xbb\xbf" + data
        expected = csv_reader_records_sig(data)
        path.write_bytes(data)
        for chunk_size in (1, 2, 5, 1 << 16):
            counted = count_csv_records(path, header=False, use_cache=False, chunk_size=chunk_size)
            assert counted == expected, (data, chunk_size)
        assert count_csv_records_in(io.BytesIO(data), 3) == expected, data


def test_a_large_file_mixing_valid_and_stray_quotes(tmp_path: Path, counters: str) -> None:
    """Large chunks where some need the exact rule and others do not, with quote runs and
    \r\n pairs cut by chunk boundaries."""
    rng = random.Random(12)
    records = []
    for i in range(20_000):
        kind = rng.random()
        if kind < 0.6:
            records.append(b'%d,"quoted, ""x""\nline two",y\r\n' % i)
        elif kind < 0.9:
            records.append(b"%d,plain,z\n" % i)
        else:
            records.append(b'%d,12" pipe, "b\r' % i)
    data = b"".join(records)
    path = tmp_path / "mixed.csv"
    path.write_bytes(data)
    expected = csv_reader_records_sig(data)
    for chunk_size in (4093, 65_536, lines.DEFAULT_CHUNK_SIZE):
        assert count_csv_records(path, header=False, chunk_size=chunk_size) == expected


def test_without_quotes_it_is_count_lines_minus_the_header(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_bytes(rows(12_345, trailing_newline=False))
    assert count_csv_records(path) == count_lines(path) - 1 == 12_344
    assert count_csv_records(path, header=False) == 12_345


def quoted_rows(n: int) -> bytes:
    """A header and ``n`` records, every third with a field spanning two lines."""
    body = b"".join(
        b'%d,"note\nline two",x\n' % i if i % 3 == 0 else b"%d,plain,x\n" % i for i in range(n)
    )
    return b"id,note,flag\n" + body


def test_compressed_files_are_counted_decompressed(tmp_path: Path, counters: str) -> None:
    data = quoted_rows(3000)
    for suffix, compress in (
        (".gz", gzip.compress),
        (".bz2", bz2.compress),
        (".xz", lzma.compress),
    ):
        path = tmp_path / f"rows.csv{suffix}"
        path.write_bytes(compress(data))
        assert count_csv_records(path, chunk_size=7) == 3000
        assert count_csv_records(path) == 3000


def test_s3_plain_and_gzip_objects(aws: str) -> None:
    s3 = boto3.client("s3")
    bucket = f"records-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="in/rows.csv", Body=quoted_rows(2500))
    s3.put_object(Bucket=bucket, Key="in/rows.csv.gz", Body=gzip.compress(quoted_rows(4000)))
    assert count_csv_records(f"s3://{bucket}/in/rows.csv") == 2500
    assert count_csv_records(f"s3://{bucket}/in/rows.csv.gz", s3=s3, chunk_size=7) == 4000


def refuse_to_read(*args: object) -> Iterator[bytes]:
    raise AssertionError("the object was read although its count was cached")


def test_s3_count_has_its_own_cache_item_and_is_recounted_when_replaced(
    aws: str, table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3 = boto3.client("s3")
    dynamodb = boto3.client("dynamodb")
    bucket = f"records-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    uri = f"s3://{bucket}/rows.csv"
    s3.put_object(Bucket=bucket, Key="rows.csv", Body=quoted_rows(90))  # 121 lines, 91 records
    assert count_lines(uri, table=table) == 121
    assert count_csv_records(uri, table=table) == 90

    key = {job_table.HASH_KEY: {"S": job_table.csvrecords_key(uri)}}
    item = dynamodb.get_item(TableName=table, Key=key)["Item"]
    assert item[job_table.ITEM_TYPE]["S"] == job_table.TYPE_CSVRECORDS
    assert item[job_table.LINES]["N"] == "91"  # the header is in the cached count
    etag = s3.head_object(Bucket=bucket, Key="rows.csv")["ETag"].strip('"')
    assert item[job_table.VERSION]["S"] == etag
    line_key = {job_table.HASH_KEY: {"S": job_table.linecount_key(uri)}}
    assert dynamodb.get_item(TableName=table, Key=line_key)["Item"][job_table.LINES]["N"] == "121"

    # A cache hit: the cached value comes back, for either header setting, without a read.
    with monkeypatch.context() as hidden:
        hidden.setattr(lines, "_s3_chunks", refuse_to_read)
        assert count_csv_records(uri, table=table) == 90
        assert count_csv_records(uri, table=table, header=False) == 91
        assert count_lines(uri, table=table) == 121

    # The object is replaced: new ETag, so it is counted again and the cache updated.
    s3.put_object(Bucket=bucket, Key="rows.csv", Body=quoted_rows(30))
    assert count_csv_records(uri, table=table) == 30
    assert dynamodb.get_item(TableName=table, Key=key)["Item"][job_table.LINES]["N"] == "31"


def test_local_cache_from_the_env_table_is_recounted_after_a_change(
    tmp_path: Path, aws: str, table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("METRICSKIT_JOB_TABLE", table)
    path = tmp_path / "rows.csv"
    path.write_bytes(quoted_rows(40))
    assert count_csv_records(path) == 40
    with monkeypatch.context() as hidden:
        hidden.setattr(lines, "_file_chunks", refuse_to_read)
        assert count_csv_records(path) == 40
    stat = path.stat()
    path.write_bytes(quoted_rows(41))
    assert path.stat().st_size != stat.st_size  # a new version, whatever the mtime resolution
    assert count_csv_records(path) == 41
    assert count_csv_records(path, use_cache=False) == 41


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_bytes(b"h\n1\n")
    with pytest.raises(ConfigurationError, match="count_csv_records reads local paths"):
        count_csv_records("http://example.com/rows.csv")
    with pytest.raises(ConfigurationError, match="header must be True or False"):
        count_csv_records(path, header="yes")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="chunk_size"):
        count_csv_records(path, chunk_size=0)
    with pytest.raises(FileNotFoundError):
        count_csv_records(tmp_path / "missing.csv")


def test_cli_counts_csv_records(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "rows.csv"
    path.write_bytes(quoted_rows(10))
    assert cli_main(["count-csv-records", str(path), "--no-cache"]) == 0
    assert cli_main(["count-csv-records", str(path), "--no-cache", "--no-header"]) == 0
    assert capsys.readouterr().out.split() == ["10", "11"]
