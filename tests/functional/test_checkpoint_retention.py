"""A completed shard's checkpoint expires with its job (the table's TTL attribute); an
interrupted one stays, so the same command resumes after it."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import boto3
import pytest

from examples.csv_to_kafka import DynamoCheckpoints
from metricskit import config, job_table
from metricskit.job_table import SECONDS_PER_DAY


def _checkpoint(table: str, job_id: str, shard: str) -> dict[str, str] | None:
    reply = boto3.client("dynamodb").get_item(
        TableName=table,
        Key={job_table.HASH_KEY: {"S": job_table.checkpoint_key(job_id, shard)}},
        ConsistentRead=True,
    )
    item = reply.get("Item")
    return None if item is None else {k: next(iter(v.values())) for k, v in item.items()}


def test_expire_sets_the_ttl_attribute_and_a_later_save_drops_it(table: str) -> None:
    store = DynamoCheckpoints(table, "load-1", "0/2", retention_days=90)
    assert store.save(41)
    assert store.expire(1_000.5)
    item = _checkpoint(table, "load-1", "0/2")
    assert item is not None
    assert item[job_table.POSITION] == "41"
    assert int(item[job_table.EXPIRES_AT]) == math.ceil(1_000.5 + 90 * SECONDS_PER_DAY)
    assert store.save(42)  # a rerun writes the checkpoint anew: kept until it completes again
    again = _checkpoint(table, "load-1", "0/2")
    assert again is not None
    assert job_table.EXPIRES_AT not in again


def test_expire_creates_no_item_and_retention_0_writes_none(table: str) -> None:
    assert DynamoCheckpoints(table, "load-2", "0/1", retention_days=90).expire(1_000.0)
    assert _checkpoint(table, "load-2", "0/1") is None  # nothing saved: nothing to expire
    kept = DynamoCheckpoints(table, "load-3", "0/1", retention_days=0)
    assert kept.save(7)
    assert kept.expire(1_000.0)
    item = _checkpoint(table, "load-3", "0/1")
    assert item is not None
    assert job_table.EXPIRES_AT not in item


def test_the_cli_expires_a_completed_shards_checkpoint(
    table: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from examples.csv_to_kafka.cli import main

    monkeypatch.setenv(config.ENV_FINISHED_JOB_RETENTION_DAYS, "30")
    source = tmp_path / "rows.csv"
    source.write_text("id,name,value\n" + "".join(f"{i},n{i},{i}.5\n" for i in range(50)))
    before = time.time()
    args = [str(source), "--job-id", "expiring", "--table", table, "--sink", "off"]
    assert main([*args, "--checkpoint-every", "10"]) == 0
    after = time.time()
    result = json.loads(capsys.readouterr().out.splitlines()[-1])["result"]
    assert result["delivered"] == 50
    item = _checkpoint(table, "expiring", "0/1")
    assert item is not None
    expires_at = int(item[job_table.EXPIRES_AT])
    assert math.ceil(before + 30 * SECONDS_PER_DAY) <= expires_at
    assert expires_at <= math.ceil(after + 30 * SECONDS_PER_DAY)
