"""count_lines on local, compressed and moto S3 objects, with the job-table cache."""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import uuid
from collections.abc import Callable
from pathlib import Path

import boto3
import pytest

from metricskit import count_csv_records, count_lines, job_table
from metricskit.errors import ConfigurationError, UnreadableInputError
from metricskit.lines import count_newlines_in
from tests.conftest import UNREACHABLE_ENDPOINT, use_fake_aws


def rows(n: int, *, trailing_newline: bool = True) -> bytes:
    body = b"\n".join(b"%d,value-%d" % (i, i * 7) for i in range(n))
    return body + (b"\n" if trailing_newline else b"")


def test_local_file_counts_every_line(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_bytes(rows(12_345))
    assert count_lines(path) == 12_345
    assert count_lines(str(path)) == 12_345
    assert count_lines(f"file://{path}") == 12_345


def test_last_line_without_newline_counts(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_bytes(rows(10, trailing_newline=False))
    assert count_lines(path) == 10


def test_empty_file_has_no_lines(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    assert count_lines(path) == 0


def test_small_chunks_give_the_same_count(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_bytes(rows(1000, trailing_newline=False))
    for chunk in (1, 7, 4096):
        assert count_lines(path, chunk_size=chunk) == 1000


def test_gzip_and_bz2_are_counted_decompressed(tmp_path: Path) -> None:
    gz = tmp_path / "rows.csv.gz"
    gz.write_bytes(gzip.compress(rows(5000)))
    bz = tmp_path / "rows.csv.bz2"
    bz.write_bytes(bz2.compress(rows(777, trailing_newline=False)))
    assert count_lines(gz) == 5000
    assert count_lines(bz) == 777


def test_count_newlines_in_without_numpy_matches(monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import sys

    monkeypatch.setitem(sys.modules, "numpy", None)  # import numpy now fails
    assert count_newlines_in(io.BytesIO(rows(321, trailing_newline=False)), 10) == 321


def test_bad_uris_and_chunks_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="s3://"):
        count_lines("http://example.com/rows.csv")
    with pytest.raises(ConfigurationError, match="s3://bucket/key"):
        count_lines("s3://only-a-bucket")
    with pytest.raises(ConfigurationError, match="chunk_size"):
        count_lines(tmp_path, chunk_size=0)
    with pytest.raises(FileNotFoundError):
        count_lines(tmp_path / "missing.csv")


def _truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


@pytest.mark.parametrize(
    ("suffix", "body"),
    [
        (".gz", _truncated(gzip.compress(rows(50_000)))),  # EOFError from gzip
        (".gz", b"not gzip at all, but named .gz\n"),  # gzip.BadGzipFile
        (".bz2", _truncated(bz2.compress(rows(50_000)))),  # EOFError from bz2
        (".bz2", b"BZh9" + b"\x00" * 64),  # OSError: invalid data stream
        (".xz", _truncated(lzma.compress(rows(50_000)))),  # EOFError from lzma
        (".xz", b"\xfd7zXZ\x00" + b"\x01" * 64),  # lzma.LZMAError
    ],
)
@pytest.mark.parametrize("count", [count_lines, count_csv_records])
def test_a_truncated_or_corrupt_compressed_file_is_a_typed_error_naming_it(
    tmp_path: Path, suffix: str, body: bytes, count: Callable[..., int]
) -> None:
    path = tmp_path / f"rows.csv{suffix}"
    path.write_bytes(body)
    with pytest.raises(UnreadableInputError, match="cannot decompress it to its end") as raised:
        count(path, use_cache=False)
    assert str(path) in str(raised.value)
    assert isinstance(raised.value, OSError)  # callers catching read failures still do


@pytest.mark.parametrize("suffix", [".zst", ".LZ4", ".br", ".snappy"])
@pytest.mark.parametrize("count", [count_lines, count_csv_records])
def test_a_local_file_compressed_in_a_format_it_cannot_read_is_refused(
    tmp_path: Path, suffix: str, count: Callable[..., int]
) -> None:
    # smart-open decompresses these for a worker when the codec is installed: counting the
    # compressed bytes would give a total that matches nothing the worker reads.
    path = tmp_path / f"rows.csv{suffix}"
    path.write_bytes(b"a\n1\n" * 10)
    with pytest.raises(UnreadableInputError, match=r"cannot decompress .*\.gz, \.bz2, \.xz"):
        count(path, use_cache=False)


def test_a_truncated_compressed_s3_object_is_a_typed_error(aws: str) -> None:
    s3 = boto3.client("s3")
    bucket = f"lines-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="in/rows.csv.gz", Body=_truncated(gzip.compress(rows(9000))))
    with pytest.raises(UnreadableInputError, match="s3://"):
        count_lines(f"s3://{bucket}/in/rows.csv.gz", s3=s3, use_cache=False)


def test_s3_plain_and_gzip_objects(aws: str) -> None:
    s3 = boto3.client("s3")
    bucket = f"lines-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="in/rows.csv", Body=rows(2500))
    s3.put_object(Bucket=bucket, Key="in/rows.csv.gz", Body=gzip.compress(rows(4000)))
    assert count_lines(f"s3://{bucket}/in/rows.csv") == 2500
    assert count_lines(f"s3://{bucket}/in/rows.csv.gz", s3=s3) == 4000


def test_s3_count_is_cached_by_etag_and_recounted_when_replaced(aws: str, table: str) -> None:
    s3 = boto3.client("s3")
    dynamodb = boto3.client("dynamodb")
    bucket = f"lines-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    uri = f"s3://{bucket}/rows.csv"
    s3.put_object(Bucket=bucket, Key="rows.csv", Body=rows(100))
    assert count_lines(uri, table=table) == 100
    key = {job_table.HASH_KEY: {"S": job_table.linecount_key(uri)}}
    item = dynamodb.get_item(TableName=table, Key=key)["Item"]
    assert item[job_table.ITEM_TYPE]["S"] == job_table.TYPE_LINECOUNT
    assert item[job_table.LINES]["N"] == "100"
    etag = s3.head_object(Bucket=bucket, Key="rows.csv")["ETag"].strip('"')
    assert item[job_table.VERSION]["S"] == etag

    # A cache hit: the (doctored) cached value comes back without a read of the object.
    dynamodb.update_item(
        TableName=table,
        Key=key,
        UpdateExpression="SET #l = :n",
        ExpressionAttributeNames={"#l": job_table.LINES},
        ExpressionAttributeValues={":n": {"N": "99999"}},
    )
    assert count_lines(uri, table=table) == 99999

    # The object is replaced: new ETag, so it is counted again and the cache updated.
    s3.put_object(Bucket=bucket, Key="rows.csv", Body=rows(250))
    assert count_lines(uri, table=table) == 250
    assert dynamodb.get_item(TableName=table, Key=key)["Item"][job_table.LINES]["N"] == "250"


def test_an_object_replaced_while_it_is_read_is_not_cached_under_the_old_etag(
    aws: str, table: str
) -> None:
    """The ETag comes from HeadObject and the bytes from GetObject: a replacement in between
    must fail the count rather than store the new object's count as the old one's."""
    s3 = boto3.client("s3")
    other = boto3.client("s3")
    bucket = f"lines-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    uri = f"s3://{bucket}/rows.csv"
    s3.put_object(Bucket=bucket, Key="rows.csv", Body=rows(100))

    def replace_first(**_: object) -> None:
        s3.meta.events.unregister("before-call.s3.GetObject", replace_first)
        other.put_object(Bucket=bucket, Key="rows.csv", Body=rows(250))

    s3.meta.events.register("before-call.s3.GetObject", replace_first)
    with pytest.raises(OSError, match=r"PreconditionFailed|412"):
        count_lines(uri, table=table, s3=s3)
    key = {job_table.HASH_KEY: {"S": job_table.linecount_key(uri)}}
    assert "Item" not in boto3.client("dynamodb").get_item(TableName=table, Key=key)
    assert count_lines(uri, table=table, s3=s3) == 250


def test_file_uris_are_decoded_as_path_as_uri_writes_them(tmp_path: Path) -> None:
    path = tmp_path / "my rows%.csv"
    path.write_bytes(rows(7))
    assert count_lines(path.as_uri()) == 7
    assert count_lines(f"file://localhost{path}".replace(" ", "%20").replace("%.", "%25.")) == 7
    with pytest.raises(ConfigurationError, match="local file"):
        count_lines("file://otherhost/rows.csv")


def test_local_cache_uses_size_and_mtime_from_the_env_table(
    tmp_path: Path, aws: str, table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("METRICSKIT_JOB_TABLE", table)
    path = tmp_path / "rows.csv"
    path.write_bytes(rows(40))
    assert count_lines(path) == 40
    dynamodb = boto3.client("dynamodb")
    key = {job_table.HASH_KEY: {"S": job_table.linecount_key(str(path))}}
    item = dynamodb.get_item(TableName=table, Key=key)["Item"]
    stat = path.stat()
    assert item[job_table.VERSION]["S"] == f"{stat.st_size}:{stat.st_mtime_ns}"
    path.write_bytes(rows(41))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert count_lines(path) == 41
    assert count_lines(path, use_cache=False) == 41


def test_unreachable_cache_still_counts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_fake_aws(monkeypatch, UNREACHABLE_ENDPOINT)
    path = tmp_path / "rows.csv"
    path.write_bytes(rows(3))
    assert count_lines(path, table="jobs") == 3
