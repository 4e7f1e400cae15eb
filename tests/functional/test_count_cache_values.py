"""A cached count is believed only when it is one: anyone who can write the job table can
write the cache item, so a value that is not a non-negative integer is a cache miss with a
warning, the source is counted again and the item replaced (never an exception, never -7)."""

from __future__ import annotations

import logging
import uuid

import boto3
import pytest

from metricskit import count_csv_records, count_lines, job_table


@pytest.mark.parametrize("cached", ["1.5", "-7"])
@pytest.mark.parametrize("kind", ["lines", "csv records"])
def test_a_cached_count_that_is_not_a_non_negative_integer_is_counted_again(
    aws: str, table: str, cached: str, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    s3 = boto3.client("s3")
    dynamodb = boto3.client("dynamodb")
    bucket = f"cache-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="f.csv", Body=b"h\na\nb\n")
    uri = f"s3://{bucket}/f.csv"
    if kind == "lines":
        key, item_type, count, expected = (
            job_table.linecount_key(uri),
            job_table.TYPE_LINECOUNT,
            lambda: count_lines(uri, table=table),
            3,
        )
    else:
        key, item_type, count, expected = (
            job_table.csvrecords_key(uri),
            job_table.TYPE_CSVRECORDS,
            lambda: count_csv_records(uri, table=table),
            2,
        )
    etag = s3.head_object(Bucket=bucket, Key="f.csv")["ETag"].strip('"')
    dynamodb.put_item(
        TableName=table,
        Item={
            job_table.HASH_KEY: {"S": key},
            job_table.ITEM_TYPE: {"S": item_type},
            job_table.LINES: {"N": cached},
            job_table.VERSION: {"S": etag},
            job_table.COUNTED_AT: {"N": "1"},
        },
    )
    with caplog.at_level(logging.WARNING, logger="metricskit"):
        assert count() == expected
    assert "is not a non-negative integer" in caplog.text
    stored = dynamodb.get_item(TableName=table, Key={job_table.HASH_KEY: {"S": key}})["Item"]
    assert stored[job_table.LINES]["N"] == "3"  # replaced by the real count (header included)
    caplog.clear()
    assert count() == expected  # now a good cache hit
    assert "non-negative integer" not in caplog.text
