"""The CSV-to-Kafka worker against librdkafka's mock cluster and a local moto server.

A mock cluster lives inside one producer, so "what reached Kafka" is read from the worker's
delivery callback (``--delivered-log``: one row index per acknowledged message).
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import replace
from pathlib import Path

import boto3
import pytest

import metricskit
from examples.csv_to_kafka import DynamoCheckpoints, RunResult, Settings, Shard, count_rows, run
from examples.csv_to_kafka.checkpoints import Checkpoints
from examples.csv_to_kafka.worker import InjectedFailureError, Progress
from examples.errors import ExampleInputError
from metricskit import job_table
from metricskit.registry import JobRegistry
from metricskit.sinks.memory import MemorySink
from tests.conftest import FakeClock

ROOT = Path(__file__).resolve().parents[2]
HEADER = "id,name,amount\n"


def write_csv(path: Path, rows: int, *, bad: Collection[int] = ()) -> set[int]:
    """``rows`` data rows; the indexes in ``bad`` have a wrong field count. Returns good ones."""
    with path.open("w", encoding="utf-8") as out:
        out.write(HEADER)
        for row in range(rows):
            out.write(f"{row},only-two\n" if row in bad else f"{row},name-{row},{row * 1.5}\n")
    return set(range(rows)) - set(bad)


def delivered(log: Path) -> Counter[int]:
    return Counter(int(line) for line in log.read_text().split())


def make_table(prefix: str = "jobs") -> str:
    """A fresh job table: tests share one moto server, so no test sees another's items."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    job_table.create_table(boto3.client("dynamodb"), name)
    return name


def make_bucket(prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    boto3.client("s3").create_bucket(Bucket=name)
    return name


def load(
    settings: Settings, job_id: str = "load", *, checkpoints: Checkpoints | None = None
) -> tuple[RunResult, MemorySink]:
    sink = MemorySink()
    with metricskit.Job(job_id, namespace="Test/CsvToKafka", sink=sink) as job:
        result = run(settings, job, checkpoints=checkpoints)
    return result, sink


def test_streams_from_s3_and_counts_each_acknowledged_row(aws: str, tmp_path: Path) -> None:
    source = tmp_path / "rows.csv"
    good = write_csv(source, 3000)
    bucket = make_bucket("input")
    boto3.client("s3").upload_file(str(source), bucket, "rows.csv")
    log = tmp_path / "delivered.log"

    settings = Settings(
        f"s3://{bucket}/rows.csv", topic="rows", delivered_log=str(log), latency_every=1
    )
    result, sink = load(settings)

    assert result.delivered == len(good) == 3000
    assert set(delivered(log)) == good
    assert sink.sum("RecordsProcessed") == 3000
    assert sink.sum("ErrorCount") == 0
    latency = list(sink.metrics("KafkaLatency"))
    assert sum(sum(m.counts) for m in latency) == 3000
    assert all(v > 0 for m in latency for v in m.values)
    assert count_rows(f"s3://{bucket}/rows.csv") == 3000


def test_an_aws_region_only_setup_reaches_s3_and_the_checkpoints(
    aws: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Some runtimes set only AWS_REGION, which botocore does not read: the worker's own
    clients fall back to it as metricskit's do, rather than stopping with NoRegionError."""
    source = tmp_path / "rows.csv"
    good = write_csv(source, 500)
    bucket = make_bucket("region")
    boto3.client("s3").upload_file(str(source), bucket, "rows.csv")
    table = make_table()
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    store = DynamoCheckpoints(table, "region-only", "0/1")

    result, sink = load(
        Settings(f"s3://{bucket}/rows.csv", topic="rows", checkpoint_every=100),
        job_id="region-only",
        checkpoints=store,
    )

    assert result.delivered == len(good) == 500
    assert sink.sum("RecordsProcessed") == 500
    assert store.load() == 499


def test_malformed_rows_are_counted_as_errors_and_skipped(tmp_path: Path) -> None:
    source = tmp_path / "rows.csv"
    bad = {3, 10, 11, 499}
    good = write_csv(source, 500, bad=bad)
    with source.open("a", encoding="utf-8") as out:
        out.write("\n")  # a blank record: no fields at all
        out.write('500,"unterminated,1\n')  # swallows the rest of the file into one field
    log = tmp_path / "delivered.log"

    result, sink = load(Settings(str(source), topic="rows", delivered_log=str(log)))

    assert result.malformed == len(bad) + 2
    assert result.delivered == len(good)
    assert set(delivered(log)) == good
    assert sink.sum("ErrorCount") == len(bad) + 2
    assert sink.sum("RecordsProcessed") == len(good)


def test_invalid_csv_records_do_not_stop_the_load(tmp_path: Path) -> None:
    from examples.csv_to_kafka.worker import CSV_FIELD_LIMIT

    source = tmp_path / "rows.csv"
    with source.open("w", encoding="utf-8") as out:
        out.write(HEADER)
        out.write("0,a,1\n")
        out.write(f"1,{'x' * (CSV_FIELD_LIMIT + 10)},2\n")  # csv.Error: over the field limit
        out.write("2,c,3\n")
    log = tmp_path / "delivered.log"

    result, sink = load(Settings(str(source), topic="rows", delivered_log=str(log)))

    assert set(delivered(log)) == {0, 2}
    assert result.malformed == 1
    assert sink.sum("ErrorCount") == 1
    assert count_rows(str(source)) == 3  # the total counts it as a row too, without raising


def _quoted_lines(lines: int, width: int) -> str:
    """A legal quoted field of ``lines`` lines of ``width`` characters each."""
    return '"' + "\n".join("y" * width for _ in range(lines)) + '"'


def test_a_quoted_field_over_csv_default_limit_is_one_row_and_the_rows_after_it_load(
    aws: str, tmp_path: Path
) -> None:
    """csv's default field limit is 131,072 characters: a legal quoted field of 3 x 70,000
    characters used to stop the parser mid-field, its closing quote then opened a new quoted
    field and swallowed the valid rows after it. Row 1 fits in a Kafka message (delivered);
    row 3 does not (over message.max.bytes: refused by produce(), one error)."""
    source = tmp_path / "rows.csv"
    with source.open("w", encoding="utf-8", newline="") as out:
        out.write(HEADER)
        out.write("0,a,1\n")
        out.write(f"1,{_quoted_lines(3, 70_000)},2\n")
        out.write("2,c,3\n")
        out.write(f"3,{_quoted_lines(3, 400_000)},4\n")  # 1.2 MB: over message.max.bytes
        out.write("4,e,5\n")
    log = tmp_path / "delivered.log"

    result, sink = load(Settings(str(source), topic="rows", delivered_log=str(log)))

    assert set(delivered(log)) == {0, 1, 2, 4}
    assert (result.malformed, result.rejected, result.delivery_errors) == (0, 1, 0)
    assert sink.sum("ErrorCount") == 1
    assert count_rows(str(source)) == 5
    assert metricskit.count_csv_records(source) == 5  # the count --count-rows uses agrees


class ResumeAt:
    """A checkpoint store that resumes after ``position`` and keeps what is saved."""

    def __init__(self, position: int) -> None:
        self.position = position
        self.saved: list[int] = []

    def load(self) -> int | None:
        return self.position

    def save(self, position: int) -> bool:
        self.saved.append(position)
        return True

    def expire(self, finished_at: float) -> bool:
        return True


def test_a_stop_is_heeded_while_skipping_to_the_checkpoint(tmp_path: Path) -> None:
    source = tmp_path / "rows.csv"
    write_csv(source, 140_000)
    stop = threading.Event()
    stop.set()  # SIGTERM arrived as the resumed worker started
    checkpoints = ResumeAt(130_000)
    with metricskit.Job("skip", sink=MemorySink()) as job:
        result = run(Settings(str(source), topic="rows"), job, checkpoints=checkpoints, stop=stop)
    assert result.stopped
    assert result.produced == 0  # it stopped while skipping, before producing anything
    assert result.position == 130_000  # and never moves the checkpoint backwards
    assert checkpoints.saved == [130_000]


@pytest.mark.parametrize(
    ("content", "message"),
    [("", "empty file"), ("a,a\n1,2\n", "name each column once")],
)
def test_a_file_without_a_usable_header_is_a_clear_error(
    tmp_path: Path, content: str, message: str
) -> None:
    source = tmp_path / "rows.csv"
    source.write_text(content)
    with pytest.raises(ExampleInputError, match=message):
        load(Settings(str(source), topic="rows"))


def test_a_full_local_queue_is_retried_and_every_row_still_delivered(tmp_path: Path) -> None:
    source = tmp_path / "rows.csv"
    good = write_csv(source, 2000)
    log = tmp_path / "delivered.log"
    settings = Settings(
        str(source),
        topic="rows",
        producer_config={"queue.buffering.max.messages": "20", "linger.ms": "20"},
        poll_every=1000,
        delivered_log=str(log),
    )

    result, sink = load(settings)

    assert 0 < result.retried < 2000  # rows that waited for room, each counted once
    assert sink.sum("RetryCount") == result.retried
    assert Counter(delivered(log)) == Counter(dict.fromkeys(good, 1))


class StopOnRetry:
    """A recorder that requests a stop the first time the worker finds the queue full, as a
    SIGTERM arriving while it waits for room would."""

    def __init__(self, job: metricskit.Job, stop: threading.Event) -> None:
        self.job = job
        self.stop = stop
        self.processed = job.processed
        self.failed = job.failed
        self.checkpointed = job.checkpointed
        self.observe = job.observe

    def retried(self, n: float = 1) -> None:
        self.job.retried(n)
        self.stop.set()


def test_a_stop_is_heeded_while_the_local_queue_is_full(tmp_path: Path) -> None:
    """The broker is down, so the full queue would drain only as rows time out
    (message.timeout.ms): the worker must stop without waiting for that."""
    source = tmp_path / "rows.csv"
    write_csv(source, 50)
    settings = Settings(
        str(source),
        topic="rows",
        bootstrap_servers="127.0.0.1:1",  # nothing listens there
        producer_config={"queue.buffering.max.messages": "10", "message.timeout.ms": "10000"},
        flush_timeout=0.2,
    )
    stop = threading.Event()
    checkpoints = ResumeAt(-1)
    sink = MemorySink()
    with metricskit.Job("full", namespace="Test/CsvToKafka", sink=sink) as job:
        result = run(settings, StopOnRetry(job, stop), checkpoints=checkpoints, stop=stop)

    assert result.stopped
    assert result.produced == 10
    assert result.position == 9  # the row that found no room was not sent
    assert result.unacknowledged == 10  # the broker is down: no checkpoint
    assert checkpoints.saved == []
    assert result.retried == 1  # one row waited for room, however many turns it took
    assert sink.sum("RetryCount") == 1


class StopDuringFlush:
    """A real producer (to a broker that is down) whose first ``flush()`` receives SIGTERM,
    as a stop arriving while a checkpoint waits for Kafka would; it keeps every timeout asked."""

    def __init__(self, settings: Settings, stop: threading.Event) -> None:
        from examples.csv_to_kafka.worker import build_producer

        self._producer = build_producer(settings)
        self.produce = self._producer.produce
        self.poll = self._producer.poll
        self._stop = stop
        self.timeouts: list[float] = []

    def flush(self, timeout: float) -> int:
        self.timeouts.append(timeout)
        self._stop.set()
        pending: int = self._producer.flush(min(timeout, 1.0))  # 1 s: the old code asked 1000
        return pending


def test_a_stop_during_a_broker_outage_cuts_every_flush_to_the_stop_flush_timeout(
    tmp_path: Path,
) -> None:
    """ECS sends SIGKILL 30 s after SIGTERM: a checkpoint's flush (and the final one) must stop
    waiting for an absent broker ``stop_flush_timeout`` after the stop, not ``flush_timeout``."""
    from examples.csv_to_kafka.worker import FLUSH_SLICE_SECONDS

    source = tmp_path / "rows.csv"
    write_csv(source, 300)
    settings = Settings(
        str(source),
        topic="rows",
        bootstrap_servers="127.0.0.1:1",  # nothing listens there
        producer_config={"message.timeout.ms": "60000"},
        checkpoint_every=20,  # at the first mark (row 100)
        flush_timeout=1000,
        stop_flush_timeout=0.3,
    )
    stop = threading.Event()
    checkpoints = ResumeAt(-1)
    producer = StopDuringFlush(settings, stop)
    with metricskit.Job("stop-flush", sink=MemorySink()) as job:
        result = run(settings, job, checkpoints=checkpoints, stop=stop, producer=producer)

    assert result.stopped
    assert result.unacknowledged == result.produced == 100  # it stopped after the first mark
    assert checkpoints.saved == []  # nothing answered: nothing stored
    # The first slice started before the stop; after it, the checkpoint's flush and the final
    # one each wait at most stop_flush_timeout in all (a slice asks only what is left).
    assert max(producer.timeouts) <= FLUSH_SLICE_SECONDS
    assert sum(producer.timeouts) <= FLUSH_SLICE_SECONDS + 2 * settings.stop_flush_timeout


def test_rows_a_broker_outage_leaves_undelivered_are_never_checkpointed(tmp_path: Path) -> None:
    """Nothing listens at the bootstrap address, so every row times out in librdkafka
    (_MSG_TIMED_OUT): the rows are undelivered, not errors, the worker stops at the next mark
    and no checkpoint covers them."""
    source = tmp_path / "rows.csv"
    write_csv(source, 200)
    settings = Settings(
        str(source),
        topic="rows",
        bootstrap_servers="127.0.0.1:1",  # nothing listens there
        producer_config={"message.timeout.ms": "300"},
        checkpoint_every=50,
    )
    checkpoints = ResumeAt(-1)

    result, sink = load(settings, checkpoints=checkpoints)

    assert (result.delivered, result.delivery_errors, result.rejected) == (0, 0, 0)
    assert result.undelivered == result.produced == 100  # stopped at the first mark after them
    assert result.position == -1
    assert checkpoints.saved == []
    assert sink.sum("ErrorCount") == 0
    assert sink.sum("RecordsProcessed") == 0
    assert sink.sum("CheckpointCount") == 0


class FailRows:
    """A mock-cluster producer that fails chosen rows: in their delivery report (``where`` =
    "report"; the row may well have reached the broker, as when an acknowledgement is lost) or
    by ``produce()`` raising (``where`` = "produce")."""

    def __init__(self, rows: Collection[int], code: int, where: str) -> None:
        from confluent_kafka import Producer

        from examples.csv_to_kafka.worker import MOCK_CLUSTER_CONFIG

        self._producer = Producer({**MOCK_CLUSTER_CONFIG, "linger.ms": 5})
        self._rows = set(rows)
        self._code = code
        self._where = where

    def produce(self, topic: str, value: str, key: str, on_delivery: Callable[..., None]) -> None:
        from confluent_kafka import KafkaError, KafkaException

        if int(key) not in self._rows:
            self._producer.produce(topic, value, key, on_delivery=on_delivery)
        elif self._where == "produce":
            raise KafkaException(KafkaError(self._code))
        else:
            error = KafkaError(self._code)

            def report(err: object, msg: object) -> None:
                on_delivery(error, msg)

            self._producer.produce(topic, value, key, on_delivery=report)

    def poll(self, timeout: float) -> int:
        return int(self._producer.poll(timeout))

    def flush(self, timeout: float) -> int:
        return int(self._producer.flush(timeout))


class Captured:
    """A mock-cluster producer that keeps every (key, JSON value) it was given."""

    def __init__(self) -> None:
        from confluent_kafka import Producer

        from examples.csv_to_kafka.worker import MOCK_CLUSTER_CONFIG

        self._producer = Producer({**MOCK_CLUSTER_CONFIG, "linger.ms": 5})
        self.rows: dict[int, dict[str, str]] = {}

    def produce(self, topic: str, value: str, key: str, on_delivery: Callable[..., None]) -> None:
        self._producer.produce(topic, value, key, on_delivery=on_delivery)
        self.rows[int(key)] = json.loads(value)

    def poll(self, timeout: float) -> int:
        return int(self._producer.poll(timeout))

    def flush(self, timeout: float) -> int:
        return int(self._producer.flush(timeout))


def test_a_utf8_byte_order_mark_is_not_part_of_the_first_column_name(tmp_path: Path) -> None:
    """Excel writes CSV as UTF-8 with a BOM: it must not end up in the first JSON key, and the
    row count and a resume see the same rows as without it."""
    source = tmp_path / "rows.csv"
    source.write_text(HEADER + "0,a,1\n1,b,2\n2,c,3\n", encoding="utf-8-sig")
    assert source.read_bytes().startswith(b"\xef\xbb\xbf")

    with metricskit.Job("bom", sink=MemorySink()) as job:
        producer = Captured()
        result = run(Settings(str(source), topic="rows"), job, producer=producer)
    assert result.delivered == 3
    assert producer.rows[0] == {"id": "0", "name": "a", "amount": "1"}
    assert count_rows(str(source)) == metricskit.count_csv_records(source) == 3

    with metricskit.Job("bom", sink=MemorySink()) as job:
        resumed = Captured()
        result = run(
            Settings(str(source), topic="rows"), job, producer=resumed, checkpoints=ResumeAt(0)
        )
    assert sorted(resumed.rows) == [1, 2]
    assert resumed.rows[2] == {"id": "2", "name": "c", "amount": "3"}


@pytest.mark.parametrize("where", ["report", "produce"])
def test_the_checkpoint_stays_before_a_row_kafka_did_not_deliver_and_a_rerun_sends_it(
    tmp_path: Path, where: str
) -> None:
    from confluent_kafka import KafkaError

    source = tmp_path / "rows.csv"
    good = write_csv(source, 1000)
    log = tmp_path / "delivered.log"
    settings = Settings(str(source), topic="rows", checkpoint_every=100, delivered_log=str(log))
    # A transport error in the report; an unknown topic refused by produce() itself.
    code = KafkaError._TRANSPORT if where == "report" else KafkaError._UNKNOWN_TOPIC
    store = ResumeAt(-1)
    sink = MemorySink()
    with metricskit.Job("outage", namespace="Test/CsvToKafka", sink=sink) as job:
        first = run(settings, job, checkpoints=store, producer=FailRows({150, 170}, code, where))

    assert first.undelivered == 2
    assert (first.delivery_errors, first.rejected) == (0, 0)
    assert first.position == 149  # the row before the lowest undelivered one
    assert store.saved[0] == 99
    assert max(store.saved) == 149
    assert first.produced == (200 if where == "report" else 198)  # it stopped at the next mark
    assert sink.sum("ErrorCount") == 0

    with metricskit.Job("outage", namespace="Test/CsvToKafka", sink=MemorySink()) as job:
        rerun = run(settings, job, checkpoints=ResumeAt(149))
    assert rerun.resumed_after == 149
    assert rerun.undelivered == 0
    assert set(delivered(log)) == good  # rows 150 and 170 included: nothing lost


@pytest.mark.parametrize("where", ["report", "produce"])
def test_a_row_kafka_refuses_for_what_it_is_is_an_error_and_skipped(
    tmp_path: Path, where: str
) -> None:
    from confluent_kafka import KafkaError

    source = tmp_path / "rows.csv"
    good = write_csv(source, 1000)
    log = tmp_path / "delivered.log"
    settings = Settings(str(source), topic="rows", checkpoint_every=100, delivered_log=str(log))
    store = ResumeAt(-1)
    sink = MemorySink()
    producer = FailRows({150}, KafkaError.MSG_SIZE_TOO_LARGE, where)
    with metricskit.Job("too-large", namespace="Test/CsvToKafka", sink=sink) as job:
        result = run(settings, job, checkpoints=store, producer=producer)

    assert result.undelivered == 0
    assert result.delivery_errors + result.rejected == 1
    assert not result.stopped
    assert store.saved[-1] == result.position == 999
    assert sink.sum("ErrorCount") == 1
    assert set(delivered(log)) == good - {150}


def test_two_shards_together_deliver_every_row_exactly_once(tmp_path: Path) -> None:
    source = tmp_path / "rows.csv"
    good = write_csv(source, 5001, bad={17, 4000})
    logs = [tmp_path / "shard0.log", tmp_path / "shard1.log"]
    results = [
        load(
            Settings(str(source), topic="rows", shard=Shard(i, 2), delivered_log=str(logs[i])),
            job_id="sharded",
        )[0]
        for i in range(2)
    ]
    first, second = delivered(logs[0]), delivered(logs[1])

    assert all(count == 1 for count in (first + second).values())
    assert set(first) | set(second) == good
    assert not set(first) & set(second)
    assert {r % 2 for r in first} == {0}
    assert {r % 2 for r in second} == {1}
    assert sum(r.delivered for r in results) == len(good)
    assert sum(r.malformed for r in results) == 2


def test_a_crashed_worker_resumes_from_its_checkpoint_without_losing_rows(
    aws: str, tmp_path: Path
) -> None:
    table = make_table()
    source = tmp_path / "rows.csv"
    good = write_csv(source, 10_000, bad={5})
    log = tmp_path / "delivered.log"
    base = Settings(str(source), topic="rows", delivered_log=str(log), checkpoint_every=1000)
    store = DynamoCheckpoints(table, "resumable", "0/1")
    crashed = MemorySink()
    job = metricskit.Job("resumable", namespace="Test/CsvToKafka", sink=crashed)
    with pytest.raises(InjectedFailureError):
        run(replace(base, fail_after=4321), job, checkpoints=store)
    job.close("failed")
    committed = store.load()
    assert committed is not None
    assert 999 <= committed < 4321

    result, resumed = load(base, job_id="resumable", checkpoints=store)

    assert result.resumed_after == committed
    seen = delivered(log)
    assert set(seen) == good  # at least once: nothing lost
    assert all(seen[r] == 1 for r in good if r <= committed)  # committed rows never resent
    assert crashed.sum("RecordsProcessed") + resumed.sum("RecordsProcessed") >= len(good)
    assert store.load() == 9_999
    item = boto3.client("dynamodb").get_item(
        TableName=table, Key={job_table.HASH_KEY: {"S": "checkpoint#resumable#0/1"}}
    )["Item"]
    assert item[job_table.ITEM_TYPE] == {"S": job_table.TYPE_CHECKPOINT}


def _worker(args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "examples.csv_to_kafka", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def _wait_for_progress(process: subprocess.Popen[str], handled: int) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        if json.loads(line).get("progress", {}).get("handled", 0) >= handled:
            return
    pytest.fail(f"the worker ended before {handled} rows: {process.stderr.read()}")  # type: ignore[union-attr]


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_a_killed_worker_process_restarts_from_the_job_table(
    aws: str, tmp_path: Path, how: str
) -> None:
    table = make_table()
    job_id = f"killed-{how.lower()}"
    source = tmp_path / "rows.csv"
    good = write_csv(source, 20_000)
    log = tmp_path / "delivered.log"
    common = [
        str(source),
        "--job-id",
        job_id,
        "--table",
        table,
        "--sink",
        "off",
        "--delivered-log",
        str(log),
        "--checkpoint-every",
        "1000",
        "--progress-lines",
        "--progress-every",
        "0",
    ]
    # Slow enough that the signal lands mid-file even if this process stalls for seconds.
    first = _worker([*common, "--max-rate", "1000"])
    try:
        _wait_for_progress(first, 3000)
        first.send_signal(getattr(signal, how))
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
        first.communicate()
    assert first.returncode == (-signal.SIGKILL if how == "SIGKILL" else 143)
    committed = DynamoCheckpoints(table, job_id, "0/1").load()
    assert committed is not None
    assert committed >= 999

    second = _worker(common)
    out, err = second.communicate(timeout=120)
    assert second.returncode == 0, err
    result = json.loads(out.splitlines()[-1])["result"]
    if how == "SIGTERM":
        assert result["resumed_after"] == committed
    else:  # a checkpoint write in flight at SIGKILL may land after `committed` was read
        assert result["resumed_after"] >= committed
    seen = delivered(log)
    assert set(seen) == good
    if how == "SIGTERM":  # a graceful stop commits everything it sent: no duplicates at all
        assert all(count == 1 for count in seen.values())


def test_shard_arguments_are_checked() -> None:
    assert Shard.parse(" 1 / 3 ") == Shard(1, 3)
    assert Shard(1, 3).rows_below(7) == 2  # rows 1 and 4
    assert Shard(0, 1).rows_below(5) == 5
    for bad in ("2/2", "1", "-1/2", "0/0", "a/b"):
        with pytest.raises(ExampleInputError, match="--shard"):
            Shard.parse(bad)


def test_cli_rejects_bad_arguments_with_exit_status_2(tmp_path: Path) -> None:
    from examples.csv_to_kafka.cli import main

    source = tmp_path / "rows.csv"
    write_csv(source, 3)
    assert main([str(source), "--job-id", "j", "--shard", "3/2", "--sink", "off"]) == 2
    assert main([str(source), "--job-id", "j", "-X", "novalue", "--sink", "off"]) == 2
    assert main([str(tmp_path / "missing.csv"), "--job-id", "j", "--count-rows"]) == 2


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing-file", "cannot read the source"),
        ("missing-file --count-rows", "cannot read the source"),
        ("missing-key", "cannot read the source"),
        ("missing-key --count-rows", "cannot read the source"),
        ("--sink bogus", "sink 'bogus' is not one of"),
        ("--flush-interval -5", "flush_interval"),
    ],
)
def test_cli_bad_input_is_one_error_line_with_exit_status_2(
    aws: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, message: str
) -> None:
    """What the docs promise (2 = bad arguments or input), not a traceback (1), and not a
    missing S3 key reported as an unreadable job table."""
    from examples.csv_to_kafka.cli import main

    source = tmp_path / "rows.csv"
    write_csv(source, 3)
    what, *flags = case.split()
    if what == "missing-file":
        uri = str(tmp_path / "missing.csv")
    elif what == "missing-key":
        uri = f"s3://{make_bucket('missing')}/no-such-key.csv"
    else:
        uri, flags = str(source), [what, *flags]
    table = make_table()

    assert main([uri, "--job-id", "bad", "--table", table, "--sink", "off", *flags]) == 2

    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert message in err
    assert "Traceback" not in err
    assert "checkpoint" not in err
    assert JobRegistry(table).get("bad") is None  # refused before the job started


def test_cli_loads_a_file_and_prints_its_result(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from examples.csv_to_kafka.cli import main

    source = tmp_path / "rows.csv"
    write_csv(source, 40, bad={1})
    assert main([str(source), "--job-id", "cli", "--sink", "memory", "--count-rows"]) == 0
    result = json.loads(capsys.readouterr().out.splitlines()[-1])["result"]
    assert result["delivered"] == 39
    assert result["malformed"] == 1


def test_rows_kafka_has_not_answered_at_the_end_leave_the_job_interrupted(
    aws: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from examples.csv_to_kafka.cli import EXIT_UNACKNOWLEDGED, main

    source = tmp_path / "rows.csv"
    write_csv(source, 20)
    table = make_table()
    args = [str(source), "--job-id", "unanswered", "--table", table, "--sink", "memory"]
    # Nothing listens there and librdkafka would keep trying for two minutes: the final
    # flush gives up first, with every row still waiting.
    args += ["--bootstrap-servers", "127.0.0.1:1", "-X", "message.timeout.ms=120000"]
    assert main([*args, "--flush-timeout", "0.5"]) == EXIT_UNACKNOWLEDGED
    out, err = capsys.readouterr()
    result = json.loads(out.splitlines()[-1])["result"]
    assert (result["unacknowledged"], result["delivered"], result["failed"]) == (20, 0, 0)
    assert "20 rows still had no answer from Kafka after --flush-timeout 0.5 s" in err
    record = JobRegistry(table).get("unanswered")
    assert record is not None
    assert record.status == job_table.STATUS_INTERRUPTED  # not completed: rows are missing
    assert DynamoCheckpoints(table, "unanswered", "0/1").load() is None  # so a rerun sends all


def test_cli_a_broker_outage_exits_4_and_a_rerun_sends_every_row(
    aws: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The reviewer's reproduction: librdkafka gives up on every row (message.timeout.ms) while
    the broker is down. The run must not end `completed` with a checkpoint past rows Kafka
    never got; the same command against a working Kafka then sends them."""
    from examples.csv_to_kafka.cli import EXIT_UNACKNOWLEDGED, main

    source = tmp_path / "rows.csv"
    good = write_csv(source, 200)
    table = make_table()
    log = tmp_path / "delivered.log"
    args = [str(source), "--job-id", "outage", "--table", table, "--sink", "memory", "--count-rows"]
    args += ["--checkpoint-every", "50", "--delivered-log", str(log)]
    down = ["--bootstrap-servers", "127.0.0.1:9", "-X", "message.timeout.ms=300"]

    assert main([*args, *down]) == EXIT_UNACKNOWLEDGED
    out, err = capsys.readouterr()
    result = json.loads(out.splitlines()[-1])["result"]
    assert (result["delivered"], result["failed"], result["undelivered"]) == (0, 0, 100)
    assert "Kafka did not deliver 100 rows" in err
    assert "no row is checkpointed" in err
    assert DynamoCheckpoints(table, "outage", "0/1").load() is None
    record = JobRegistry(table).get("outage")
    assert record is not None
    assert record.status == job_table.STATUS_INTERRUPTED

    assert main(args) == 0  # librdkafka's mock cluster: Kafka is back
    result = json.loads(capsys.readouterr().out.splitlines()[-1])["result"]
    assert result["delivered"] == 200
    assert set(delivered(log)) == good
    assert DynamoCheckpoints(table, "outage", "0/1").load() == 199
    record = JobRegistry(table).get("outage")
    assert record is not None
    assert record.status == job_table.STATUS_COMPLETED  # every row of the total is done now


def test_cli_fail_after_is_a_crash_a_rerun_resumes_and_completes(
    aws: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--fail-after stands for a crash the operator resumes: closing it `failed` would fail
    the job for good (a failed worker fails the job at once), unlike a killed worker."""
    from examples.csv_to_kafka.cli import EXIT_FAILED, main

    source = tmp_path / "rows.csv"
    write_csv(source, 300, bad={7})
    table = make_table()
    args = [str(source), "--job-id", "crashy", "--table", table, "--sink", "memory"]
    args += ["--count-rows", "--checkpoint-every", "50"]
    assert main([*args, "--fail-after", "120"]) == EXIT_FAILED
    capsys.readouterr()
    record = JobRegistry(table).get("crashy")
    assert record is not None
    assert record.status == job_table.STATUS_INTERRUPTED
    assert main(args) == 0
    record = JobRegistry(table).get("crashy")
    assert record is not None
    assert record.status == job_table.STATUS_COMPLETED  # done + the malformed row = total


def test_cli_stops_when_the_checkpoint_cannot_be_read(
    aws: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from examples.csv_to_kafka.cli import main

    source = tmp_path / "rows.csv"
    write_csv(source, 3)
    assert main([str(source), "--job-id", "j", "--table", "no-such-table", "--sink", "off"]) == 1
    assert "cannot read the checkpoint" in capsys.readouterr().err


def test_latency_can_be_sampled_while_every_row_is_still_counted(tmp_path: Path) -> None:
    source = tmp_path / "rows.csv"
    write_csv(source, 1000)

    result, sink = load(Settings(str(source), topic="rows", latency_every=16))

    assert result.delivered == 1000
    assert sink.sum("RecordsProcessed") == 1000
    assert sum(sum(m.counts) for m in sink.metrics("KafkaLatency")) == 63  # rows 1, 17, ... 993


def test_cli_shards_join_the_job_registry_with_the_cached_line_count(
    aws: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two shards, one after the other: the job item sums both (job-wide done), the total is
    the file's rows from count_csv_records (cached in the table by ETag), the profile is
    stored."""
    from examples.csv_to_kafka.cli import main
    from metricskit.registry import JobRegistry

    table = make_table("jobs-registry")
    source = tmp_path / "rows.csv"
    good = write_csv(source, 300, bad={7})
    bucket = make_bucket("registry-input")
    boto3.client("s3").upload_file(str(source), bucket, "rows.csv")
    uri = f"s3://{bucket}/rows.csv"
    common = ["--job-id", "registered", "--table", table, "--sink", "off", "--count-rows"]
    profile = ["--compute-profile", "fargate:1vcpu:2gb"]
    assert main([uri, *common, *profile, "--shard", "0/2"]) == 0
    assert main([uri, *common, "--shard", "1/2", "--hourly-rate", "0.5"]) == 0
    results = [json.loads(line)["result"] for line in capsys.readouterr().out.splitlines()]
    assert sum(r["delivered"] for r in results) == len(good)

    job = JobRegistry(table).get("registered")
    assert job is not None
    assert job.done == len(good)
    assert job.errors == 1
    assert job.total == 300  # the header line is not a row
    assert job.status == job_table.STATUS_COMPLETED
    assert job.workers == 2
    assert job.compute_profile == "fargate:1vcpu:2gb"
    assert job.hourly_rate == 0.5  # the first worker had none; if_not_exists lets the second set it
    cached = boto3.client("dynamodb").get_item(
        TableName=table, Key={job_table.HASH_KEY: {"S": job_table.csvrecords_key(uri)}}
    )["Item"]
    assert cached[job_table.LINES] == {"N": "301"}  # CSV records, the header included


def test_cli_count_rows_counts_a_quoted_field_spanning_lines_as_one_row(
    aws: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--count-rows gives the rows the worker reads, so the job reaches 100%: each of these
    rows has a field spanning two lines, so there are twice as many lines as rows."""
    from examples.csv_to_kafka.cli import main
    from metricskit.registry import JobRegistry

    table = make_table("jobs-multiline")
    source = tmp_path / "notes.csv"
    with source.open("w", encoding="utf-8", newline="") as out:
        out.write(HEADER)
        for row in range(50):
            out.write(f'{row},"name {row}\nsecond line",{row * 1.5}\n')
    argv = [str(source), "--job-id", "multiline", "--table", table, "--sink", "off"]
    assert main([*argv, "--count-rows"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["result"]["delivered"] == 50

    job = JobRegistry(table).get("multiline")
    assert job is not None
    assert (job.done, job.total, job.status) == (50, 50, job_table.STATUS_COMPLETED)
    assert metricskit.count_lines(source) == 101


def test_cli_refuses_a_negative_hourly_rate(tmp_path: Path) -> None:
    from examples.csv_to_kafka.cli import main

    source = tmp_path / "rows.csv"
    write_csv(source, 3)
    assert main([str(source), "--job-id", "j", "--sink", "off", "--hourly-rate", "-1"]) == 2


def test_cli_mock_kafka_ignores_kafka_bootstrap_servers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--mock-kafka (what the demo passes) selects librdkafka's mock cluster even when the
    shell exports a real broker (nothing listens on port 9: rows sent there never arrive)."""
    from examples.csv_to_kafka.cli import main

    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9")
    source = tmp_path / "rows.csv"
    write_csv(source, 30)
    argv = [str(source), "--job-id", "mock", "--sink", "off", "--mock-kafka"]
    assert main([*argv, "--flush-timeout", "5"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["result"]["delivered"] == 30


# --- Failures the worker knows leave the job resumable, not failed for good ----------------


def test_cli_a_producer_setting_librdkafka_refuses_is_exit_2_before_the_job_starts(
    aws: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A typo in -X used to surface from run() as a KafkaException traceback (exit 1) with the
    shared job item closed `failed`, which no corrected rerun can undo."""
    from examples.csv_to_kafka.cli import main

    source = tmp_path / "rows.csv"
    write_csv(source, 3)
    table = make_table()
    argv = [str(source), "--job-id", "typo", "--table", table, "--sink", "off"]
    assert main([*argv, "-X", "no.such.prop=1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the Kafka producer refused its settings")
    assert "no.such.prop" in err
    assert len(err.splitlines()) == 1
    assert JobRegistry(table).get("typo") is None  # no job item at all, let alone `failed`
    assert main(argv) == 0
    record = JobRegistry(table).get("typo")
    assert record is not None
    assert record.status == job_table.STATUS_COMPLETED


def test_cli_a_header_that_is_not_valid_csv_is_exit_2_before_the_job_starts(
    aws: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A header field over the CSV field limit raised csv.Error out of the loader (exit 1,
    traceback, job `failed`), where the README promises exit 2 for an unusable header."""
    from examples.csv_to_kafka import worker
    from examples.csv_to_kafka.cli import main

    monkeypatch.setattr(worker, "CSV_FIELD_LIMIT", 1000)  # a 16 MiB header is slow to write
    source = tmp_path / "rows.csv"
    source.write_text(f"id,{'h' * 1001},amount\n0,a,1\n", encoding="utf-8")
    table = make_table()
    assert main([str(source), "--job-id", "hdr", "--table", table, "--sink", "off"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert "the header row is not valid CSV" in err
    assert "Traceback" not in err
    assert JobRegistry(table).get("hdr") is None
    # The loader itself (library use) says the same, as an input error.
    with pytest.raises(ExampleInputError, match="the header row is not valid CSV"):
        load(Settings(str(source), topic="rows"))


class ScriptedSource(io.StringIO):
    """A source that returns ``text`` and then, instead of its end, fails with ``error`` or
    blocks until ``release`` is set (an S3 read that stalls)."""

    def __init__(
        self,
        text: str,
        *,
        error: BaseException | None = None,
        release: threading.Event | None = None,
    ) -> None:
        super().__init__(text)
        self.error = error
        self.release = release
        self.stalled = threading.Event()

    def __next__(self) -> str:
        line = self.readline()
        if line:
            return line
        if self.error is not None:
            raise self.error
        if self.release is not None:
            self.stalled.set()
            self.release.wait()
        raise StopIteration


def scripted_open(
    monkeypatch: pytest.MonkeyPatch, text: str, **script: object
) -> list[ScriptedSource]:
    """The worker's open_source returns a ScriptedSource of ``text``, but the real file for
    the CLI's header check (its first open); returns the scripted sources opened."""
    from examples.csv_to_kafka import worker

    real_open = worker.open_source
    opened: list[ScriptedSource] = []
    calls: list[str] = []

    def fake_open(uri: str, encoding: str = "utf-8") -> object:
        calls.append(uri)
        if len(calls) == 1 and script.pop("check_first", False):
            return real_open(uri, encoding)
        opened.append(ScriptedSource(text, **script))  # type: ignore[arg-type]
        return opened[-1]

    script.setdefault("check_first", True)
    monkeypatch.setattr(worker, "open_source", fake_open)
    return opened


S3_READ_FAILURE = OSError(
    "smart_open.s3._SeekableReader('bucket', 'rows.csv'): failed to read 8192 bytes after 5 "
    "attempts"
)


def one_line_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """The reader thread hands over one line at a time: a failure or a stall then comes after
    every line before it was handed over (with the default batches, up to one batch of lines
    read before it waits with it, never handled, so never checkpointed)."""
    from examples.csv_to_kafka import worker

    monkeypatch.setattr(worker, "SOURCE_BATCH_CHARS", 1)


def test_a_source_that_fails_mid_stream_commits_what_kafka_acknowledged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    one_line_batches(monkeypatch)
    source = tmp_path / "rows.csv"
    write_csv(source, 1000)
    first_700 = "".join(source.read_text().splitlines(keepends=True)[:701])
    scripted_open(monkeypatch, first_700, error=S3_READ_FAILURE, check_first=False)
    checkpoints = ResumeAt(-1)
    checkpoints.position = None  # type: ignore[assignment]  # a first run

    result, sink = load(Settings(str(source), topic="rows"), checkpoints=checkpoints)

    assert result.source_error is not None
    assert "failed to read 8192 bytes" in result.source_error
    assert not result.stopped
    assert result.delivered == 700
    assert result.position == 699
    assert checkpoints.saved == [699]  # the rows Kafka acknowledged are not sent again
    assert sink.sum("RecordsProcessed") == 700


def test_cli_a_source_failure_mid_stream_exits_5_interrupted_and_a_rerun_completes(
    aws: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reviewer's reproduction: an S3 read that still fails after smart-open's retries used
    to raise out of the loop, close the shared job `failed` for good and lose the rows Kafka
    had acknowledged since the last checkpoint."""
    from examples.csv_to_kafka import worker
    from examples.csv_to_kafka.cli import EXIT_SOURCE_FAILED, main

    source = tmp_path / "rows.csv"
    good = write_csv(source, 60_000)  # several of the reader's batches before the failure
    table = make_table()
    log = tmp_path / "delivered.log"
    argv = [str(source), "--job-id", "s3fail", "--table", table, "--sink", "memory"]
    argv += ["--checkpoint-every", "5000", "--count-rows", "--delivered-log", str(log)]
    first_rows = "".join(source.read_text().splitlines(keepends=True)[:40_001])
    with monkeypatch.context() as failing:
        real_open = worker.open_source
        scripted_open(failing, first_rows, error=S3_READ_FAILURE)
        assert main(argv) == EXIT_SOURCE_FAILED
        assert worker.open_source is not real_open
    out, err = capsys.readouterr()
    assert err.startswith("error: reading the source failed mid-stream")
    assert "failed to read 8192 bytes" in err
    assert "Traceback" not in err
    result = json.loads(out.splitlines()[-1])["result"]
    # What was handed over before the failing batch was sent, acknowledged and committed.
    assert 0 < result["delivered"] == result["position"] + 1 <= 40_000
    assert set(delivered(log)) == set(range(result["delivered"]))
    assert DynamoCheckpoints(table, "s3fail", "0/1").load() == result["position"]
    record = JobRegistry(table).get("s3fail")
    assert record is not None
    assert record.status == job_table.STATUS_INTERRUPTED  # not failed: a rerun can finish it

    assert main(argv) == 0
    record = JobRegistry(table).get("s3fail")
    assert record is not None
    assert record.status == job_table.STATUS_COMPLETED
    assert set(delivered(log)) == good
    assert all(count == 1 for count in delivered(log).values())  # nothing sent twice


def test_a_stop_during_a_stalled_source_read_is_heeded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stalled S3 read (botocore's 60 s read timeout, then smart-open's retries) used to hold
    the row loop, and a SIGTERM with it, for about a minute. The source here never answers."""
    one_line_batches(monkeypatch)
    source = tmp_path / "rows.csv"
    write_csv(source, 500)
    release = threading.Event()
    opened = scripted_open(monkeypatch, source.read_text(), release=release, check_first=False)
    stop = threading.Event()
    checkpoints = ResumeAt(-1)
    checkpoints.position = None  # type: ignore[assignment]
    all_handled = threading.Event()

    def stop_when_all_handled(progress: Progress) -> None:
        if progress.handled >= 500:
            all_handled.set()

    def stop_once_stalled() -> None:
        # SIGTERM arrives while the read is stalled and every row before it is handled.
        if all_handled.wait(timeout=120) and opened[0].stalled.wait(timeout=120):
            stop.set()

    threading.Thread(target=stop_once_stalled, daemon=True).start()

    outcome: list[RunResult] = []

    def load_in_thread() -> None:
        with metricskit.Job("stall", sink=MemorySink()) as job:
            outcome.append(
                run(
                    Settings(str(source), topic="rows"),
                    job,
                    checkpoints=checkpoints,
                    stop=stop,
                    on_progress=stop_when_all_handled,
                )
            )

    loader = threading.Thread(target=load_in_thread, daemon=True)
    loader.start()
    try:
        loader.join(timeout=120)  # a guard against a hang, not a measure of speed
        assert not loader.is_alive(), "the loader kept waiting for the stalled source"
    finally:
        release.set()
    (result,) = outcome
    assert result.stopped
    assert (result.delivered, result.position) == (500, 499)
    assert checkpoints.saved == [499]


def test_cli_sigterm_during_a_stalled_source_read_exits_143_with_its_checkpoint(
    aws: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from examples.csv_to_kafka.cli import EXIT_STOPPED, main

    one_line_batches(monkeypatch)
    source = tmp_path / "rows.csv"
    write_csv(source, 400)
    table = make_table()
    release = threading.Event()
    opened = scripted_open(monkeypatch, source.read_text(), release=release)
    argv = [str(source), "--job-id", "stalled", "--table", table, "--sink", "memory"]
    argv += ["--total-rows", "1000", "--progress-lines", "--progress-every", "0"]

    all_handled = threading.Event()

    def sigterm_once_stalled() -> None:
        # The source stalls after row 399: SIGTERM once every row is handled and it stalls.
        if all_handled.wait(timeout=120) and opened[0].stalled.wait(timeout=120):
            os.kill(os.getpid(), signal.SIGTERM)

    from examples.csv_to_kafka import cli

    real_printer = cli._ProgressPrinter.__call__

    def watch(self: cli._ProgressPrinter, progress: Progress) -> None:
        real_printer(self, progress)
        if progress.handled >= 400:
            all_handled.set()

    monkeypatch.setattr(cli._ProgressPrinter, "__call__", watch)
    killer = threading.Thread(target=sigterm_once_stalled, daemon=True)
    killer.start()
    try:
        assert main(argv) == EXIT_STOPPED
    finally:
        release.set()
        killer.join(timeout=10)
    result = json.loads(capsys.readouterr().out.splitlines()[-1])["result"]
    assert result["stopped"]
    assert result["position"] == 399
    assert DynamoCheckpoints(table, "stalled", "0/1").load() == 399
    record = JobRegistry(table).get("stalled")
    assert record is not None
    assert record.status == job_table.STATUS_INTERRUPTED


# --- Encodings: a row the worker cannot read is an error, never loaded altered -------------

CP1252_ROWS = "id,city,amount\n0,Berlin,1\n1,M\u00fcnchen,2\n2,K\u00f6ln,3\n3,Hamburg,4\n"


def test_rows_not_valid_in_the_encoding_are_malformed_not_loaded_altered(
    tmp_path: Path,
) -> None:
    """A cp1252 file read as UTF-8 used to load "M\ufffdnchen" with exit 0 and no error."""
    source = tmp_path / "cities.csv"
    source.write_bytes(CP1252_ROWS.encode("cp1252"))
    sink = MemorySink()
    producer = Captured()
    with metricskit.Job("encoding", sink=sink) as job:
        result = run(Settings(str(source), topic="rows"), job, producer=producer)

    assert sorted(producer.rows) == [0, 3]  # ü and ö are not UTF-8 in this file
    assert not any("\ufffd" in value for row in producer.rows.values() for value in row.values())
    assert (result.delivered, result.malformed, result.undecodable) == (2, 2, 2)
    assert sink.sum("ErrorCount") == 2

    with metricskit.Job("encoding", sink=MemorySink()) as job:
        right = Captured()
        result = run(Settings(str(source), topic="rows", encoding="cp1252"), job, producer=right)
    assert result.delivered == 4
    assert result.malformed == 0
    assert right.rows[1]["city"] == "M\u00fcnchen"


def test_cli_encoding_flag_and_an_undecodable_header(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from examples.csv_to_kafka.cli import main

    source = tmp_path / "cities.csv"
    source.write_bytes(CP1252_ROWS.encode("cp1252"))
    argv = [str(source), "--job-id", "enc", "--sink", "off", "--count-rows"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out.splitlines()[-1])["result"]
    assert (result["delivered"], result["failed"], result["undecodable"]) == (2, 2, 2)
    assert main([*argv, "--encoding", "cp1252"]) == 0
    result = json.loads(capsys.readouterr().out.splitlines()[-1])["result"]
    assert (result["delivered"], result["failed"]) == (4, 0)

    assert main([*argv, "--encoding", "no-such-codec"]) == 2
    assert "is not a text encoding" in capsys.readouterr().err
    header = tmp_path / "header.csv"
    header.write_bytes("id,Stra\u00dfe\n0,a\n".encode("cp1252"))
    assert main([str(header), "--job-id", "enc", "--sink", "off"]) == 2
    err = capsys.readouterr().err
    assert "the header row is not valid utf-8" in err
    assert "--encoding" in err


# --- --max-rate: a token bucket whose clock starts at the first row ------------------------


def test_rate_limit_never_runs_more_than_one_burst_ahead(clock: FakeClock) -> None:
    """After a pause (a long skip to the checkpoint, a stalled source) the bucket holds one
    burst, not the pause's worth of rows: in every second at most rate + burst rows pass."""
    from examples.csv_to_kafka.worker import RateLimit

    rate, burst, step = 1000.0, 100.0, 100
    limit = RateLimit(rate, burst=burst, clock=clock)
    handled_at: list[float] = []
    for turn in range(300):
        if turn in (50, 170):
            clock.advance(30.0)  # the pause
        clock.advance(0.001)  # the rows' own work
        handled_at.append(clock())
        clock.advance(limit.take(step))
    for start in handled_at:
        in_window = sum(step for t in handled_at if start <= t < start + 1.0)
        assert in_window <= rate + burst + step
    assert limit.take(0) == 0.0


def test_max_rate_after_a_long_pause_before_the_first_row_does_not_burst(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker started its rate clock at the start of the run, before skipping to the
    checkpoint: 2M rows skipped in 0.84 s let 18,300 rows through in the first second at
    --max-rate 10000. Here the first row comes 20 s after the start, on the worker's clock
    (its ``time.monotonic``, replaced by the test's clock)."""
    from types import SimpleNamespace

    from examples.csv_to_kafka import worker
    from examples.csv_to_kafka.worker import MOCK_CLUSTER_CONFIG

    monkeypatch.setattr(worker, "time", SimpleNamespace(monotonic=clock))

    class ClockedProducer:
        """The mock cluster; poll() lets the injected clock run, produce() notes the time."""

        def __init__(self) -> None:
            from confluent_kafka import Producer

            self._producer = Producer({**MOCK_CLUSTER_CONFIG, "linger.ms": 5})
            self.produced_at: list[float] = []

        def produce(
            self, topic: str, value: str, key: str, on_delivery: Callable[..., None]
        ) -> None:
            if not self.produced_at:
                clock.advance(20.0)
            self.produced_at.append(clock())
            self._producer.produce(topic, value, key, on_delivery=on_delivery)

        def poll(self, timeout: float) -> int:
            clock.advance(timeout)
            return int(self._producer.poll(0))

        def flush(self, timeout: float) -> int:
            return int(self._producer.flush(timeout))

    source = tmp_path / "rows.csv"
    write_csv(source, 3000)
    producer = ClockedProducer()
    settings = Settings(str(source), topic="rows", max_rate=1000.0)
    with metricskit.Job("rate", sink=MemorySink()) as job:
        result = run(settings, job, producer=producer)
    assert result.delivered == 3000
    first = producer.produced_at[0]
    in_first_second = sum(1 for t in producer.produced_at if t < first + 1.0)
    assert in_first_second <= 1000 + 2 * settings.poll_every
    assert producer.produced_at[-1] - first >= 2.5  # and the rate still holds after it


# --- Defaults and warnings ---------------------------------------------------------------


def test_the_default_observes_one_latency_in_16_and_every_row_is_still_counted(
    tmp_path: Path,
) -> None:
    from examples.csv_to_kafka.cli import parser

    source = tmp_path / "rows.csv"
    write_csv(source, 1000)
    result, sink = load(Settings(str(source), topic="rows"))
    assert result.delivered == 1000
    assert sink.sum("RecordsProcessed") == 1000
    assert sum(sum(m.counts) for m in sink.metrics("KafkaLatency")) == 63
    assert parser().parse_args(["rows.csv", "--job-id", "j"]).latency_every == 16
    assert parser().parse_args(["x", "--job-id", "j", "--latency-every", "1"]).latency_every == 1


def test_cli_warns_that_cost_flags_need_a_job_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from examples.csv_to_kafka.cli import main

    source = tmp_path / "rows.csv"
    write_csv(source, 3)
    argv = [str(source), "--job-id", "j", "--sink", "off"]
    assert main([*argv, "--hourly-rate", "0.5"]) == 0
    assert capsys.readouterr().err.startswith("warning: --hourly-rate ignored")
    assert main([*argv, "--hourly-rate", "0.5", "--compute-profile", "fargate:1vcpu:2gb"]) == 0
    assert "--compute-profile and --hourly-rate ignored" in capsys.readouterr().err
    assert main(argv) == 0
    assert "warning" not in capsys.readouterr().err


# --- Secrets and sources from the command line ------------------------------------------------


def test_cli_producer_secrets_come_from_the_environment_or_a_file_never_argv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from examples.csv_to_kafka.cli import _producer_settings

    secret_file = tmp_path / "password"
    secret_file.write_text("from-a-file\n")
    monkeypatch.setenv("KAFKA_PASSWORD", "from-the-env")
    settings, hidden = _producer_settings(
        ["sasl.password=env:KAFKA_PASSWORD", f"ssl.key.password=@{secret_file}", "acks=all"]
    )
    assert settings == {
        "sasl.password": "from-the-env",
        "ssl.key.password": "from-a-file",
        "acks": "all",
    }
    assert sorted(hidden) == ["from-a-file", "from-the-env"]
    # Typed in plainly, a secret-looking key's value is hidden too; an ordinary one is not.
    assert _producer_settings(["sasl.password=hunter2", "acks=1"])[1] == ["hunter2"]


@pytest.mark.parametrize(
    ("pair", "message"),
    [
        (
            "sasl.password=env:NOT_SET_ANYWHERE",
            "the environment variable NOT_SET_ANYWHERE is not set",
        ),
        ("sasl.password=@/no/such/file", "cannot read the file: No such file or directory"),
    ],
)
def test_cli_a_secret_that_cannot_be_read_is_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], pair: str, message: str
) -> None:
    from examples.csv_to_kafka.cli import main

    source = tmp_path / "rows.csv"
    write_csv(source, 3)
    assert main([str(source), "--job-id", "j", "--sink", "off", "--mock-kafka", "-X", pair]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.splitlines()) == 1


def test_cli_errors_never_echo_a_secret(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A password typed with a space instead of `=` was echoed whole on stderr (container
    logs), and librdkafka quotes a refused value in its error."""
    from examples.csv_to_kafka.cli import main

    source = tmp_path / "rows.csv"
    write_csv(source, 3)
    argv = [str(source), "--job-id", "j", "--sink", "off", "--mock-kafka"]
    assert main([*argv, "-X", "acks=all", "-X", "sasl.password hunter2"]) == 2
    err = capsys.readouterr().err
    assert "hunter2" not in err
    assert "-X number 2" in err
    monkeypatch.setenv("CODEC", "hunter3")
    assert main([*argv, "-X", "compression.type=env:CODEC"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the Kafka producer refused its settings")
    assert "compression.codec" in err  # librdkafka quotes the value: here it must not
    assert "hunter3" not in err
    assert "***" in err


@pytest.mark.parametrize("uri", ["http://169.254.169.254/latest/meta-data/", "HTTPS://x/y.csv"])
def test_cli_http_sources_need_allow_http(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], uri: str
) -> None:
    from examples.csv_to_kafka.cli import main

    assert main([uri, "--job-id", "j", "--sink", "off", "--mock-kafka"]) == 2
    err = capsys.readouterr().err
    assert "--allow-http" in err
    assert len(err.splitlines()) == 1
    # With the flag the scheme is let through (to a closed local port here, which then fails
    # as any unreadable source does).
    closed = "http://127.0.0.1:9/rows.csv"
    assert main([closed, "--job-id", "j", "--sink", "off", "--mock-kafka", "--allow-http"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot read the source http://127.0.0.1:9/rows.csv")
