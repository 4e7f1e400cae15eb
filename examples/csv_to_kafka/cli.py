"""Command line of the CSV-to-Kafka worker: ``python -m examples.csv_to_kafka --help``.

Output: with ``--progress-lines``, one JSON line ``{"progress": {...}}`` at most every
``--progress-every`` seconds; always a last JSON line ``{"result": {...}}``. Exit status 0
when the shard is done, 1 when the job table cannot be read, 2 for bad arguments or input
(a librdkafka setting it refuses, a source that cannot be opened, a header it cannot use),
3 after ``--fail-after``, 4 when rows are not done because of Kafka (unanswered after
``--flush-timeout``, or not delivered for a reason other than the row itself: the checkpoint
stays before them, so the same command sends them again), 5 when reading the source failed
mid-stream (the checkpoint covers what Kafka acknowledged; the same command resumes there),
143 when stopped by SIGTERM/SIGINT (the worker waits up to ``--stop-flush-timeout`` for
Kafka's answer on the rows it sent; it stores a checkpoint only when every one was answered,
and never past an undelivered row). Exits 3, 4, 5 and 143 close the job ``interrupted``, and
1 (unreadable checkpoint) and 2 come before it starts, so a rerun can complete it; only an
unexpected error (1, with a traceback) or a file that changed after its header was checked
(2) closes it ``failed``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

from botocore.exceptions import BotoCoreError, ClientError
from confluent_kafka import KafkaException

import metricskit
from examples.csv_to_kafka.checkpoints import Checkpoints, DynamoCheckpoints, NoCheckpoints
from examples.csv_to_kafka.sharding import Shard
from examples.csv_to_kafka.worker import (
    DEFAULT_ENCODING,
    InjectedFailureError,
    Progress,
    ProgressCallback,
    RunResult,
    Settings,
    build_producer,
    count_rows,
    csv_field_limit,
    run,
    source_header,
    text_codec,
)
from examples.errors import ExampleInputError
from metricskit import config

EXIT_FAILED = 3
EXIT_UNACKNOWLEDGED = 4
EXIT_SOURCE_FAILED = 5
EXIT_STOPPED = 143
KAFKA_BOOTSTRAP_ENV = "KAFKA_BOOTSTRAP_SERVERS"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m examples.csv_to_kafka",
        description="Stream a CSV (S3 or local) into Kafka, instrumented with metricskit.",
    )
    p.add_argument("source", help="s3://bucket/key.csv, any smart-open URI, or a local path")
    p.add_argument("--topic", default="rows", help="Kafka topic (default: rows)")
    p.add_argument("--job-id", required=True, help="the JobId shared by every shard of the load")
    p.add_argument("--shard", default="0/1", help="i/N: this worker takes rows r with r %% N == i")
    p.add_argument("--namespace", default="CSVToKafka", help="CloudWatch namespace")
    p.add_argument(
        "--table",
        default=None,
        help=f"DynamoDB job table for checkpoints, the job registry (job-wide progress) and "
        f"the row-count cache (default: ${config.ENV_JOB_TABLE}; none = no resume)",
    )
    total = p.add_mutually_exclusive_group()
    total.add_argument("--total-rows", type=int, help="data rows in the whole file, if known")
    total.add_argument(
        "--count-rows",
        action="store_true",
        help="count the file's rows first (metricskit.count_csv_records: CSV records as "
        "csv.reader reads them, a quoted field may span lines; cached in the job table by the "
        "object's ETag, so a shard or restart started after a count was stored reads it; shards "
        "started together each count)",
    )
    p.add_argument("--checkpoint-every", type=int, default=50_000, help="rows between checkpoints")
    p.add_argument(
        "--flush-timeout",
        type=float,
        default=30.0,
        help="seconds a checkpoint waits for Kafka to answer every row (default 30; give at "
        "least message.timeout.ms for a slow broker)",
    )
    p.add_argument(
        "--stop-flush-timeout",
        type=float,
        default=15.0,
        help="seconds a flush waits at most once SIGTERM/SIGINT is received (default 15: with "
        "metricskit's 10 s shutdown, a stop during a Kafka outage fits ECS's 30 s stopTimeout)",
    )
    kafka = p.add_mutually_exclusive_group()
    kafka.add_argument(
        "--bootstrap-servers",
        default=None,
        help=f"Kafka brokers (default: ${KAFKA_BOOTSTRAP_ENV}; unset = librdkafka mock cluster)",
    )
    kafka.add_argument(
        "--mock-kafka",
        action="store_true",
        help=f"librdkafka's in-process mock cluster, whatever ${KAFKA_BOOTSTRAP_ENV} says "
        "(demos and tests that must never reach a real broker)",
    )
    p.add_argument(
        "-X",
        dest="producer_config",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra librdkafka producer setting (repeatable), e.g. -X acks=all; a secret stays "
        "out of the command line with KEY=env:NAME (the environment variable NAME) or "
        "KEY=@PATH (the file's content, one trailing newline dropped)",
    )
    p.add_argument(
        "--latency-every",
        type=int,
        default=16,
        help="observe the Kafka latency of every Nth acknowledged row (default 16: one value "
        "costs ~0.3 us, ~9%% of a fast row loop at 1; 1 in 16 still gives thousands of samples "
        "a minute for the p99; 1 = every row)",
    )
    p.add_argument(
        "--encoding",
        default=DEFAULT_ENCODING,
        help="the file's text encoding (default utf-8, a leading byte order mark dropped); a "
        "row with bytes not valid in it is malformed (ErrorCount), never loaded altered",
    )
    p.add_argument("--max-rate", type=float, default=None, help="rows per second at most")
    p.add_argument(
        "--compute-profile",
        default=None,
        help="what the worker runs on, for the cost tracker (e.g. fargate:1vcpu:2gb); "
        "needs a job table",
    )
    p.add_argument(
        "--hourly-rate",
        type=float,
        default=None,
        help="USD per worker-hour (overrides the profile's price); needs a job table",
    )
    p.add_argument("--sink", default=None, help="metricskit sink (default: $METRICSKIT_SINK)")
    p.add_argument("--flush-interval", type=float, default=None, help="seconds between flushes")
    p.add_argument("--high-resolution", action="store_true", help="1-second CloudWatch storage")
    p.add_argument("--progress-lines", action="store_true", help="print JSON progress lines")
    p.add_argument("--progress-every", type=float, default=0.5, help="seconds between them")
    p.add_argument("--delivered-log", default=None, help="append each delivered row index here")
    p.add_argument("--fail-after", type=int, default=None, help="crash after N rows (testing)")
    p.add_argument(
        "--allow-http",
        action="store_true",
        help="read an http:// or https:// source (refused by default: from inside AWS such a "
        "URI reaches the instance metadata service and other internal endpoints)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO")
    return p


FROM_ENV = "env:"
FROM_FILE = "@"
SECRET_WORDS = ("password", "secret", "token", "key", "jaas", "credential", "oauthbearer")
"""A -X key holding one of these is treated as a secret: its value is never echoed."""


def _producer_settings(
    pairs: Sequence[str], environ: Mapping[str, str] = os.environ
) -> tuple[dict[str, str], list[str]]:
    """The -X settings, and the values never to echo (secrets, and whatever came from the
    environment or a file). A pair without ``=`` is reported by its position only: it may
    be a password typed with a space instead of ``=``."""
    found: dict[str, str] = {}
    hidden: list[str] = []
    for number, pair in enumerate(pairs, start=1):
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ExampleInputError(
                f"-X number {number} (not shown: it may hold a secret): expected KEY=VALUE, "
                "e.g. -X acks=all"
            )
        value = _setting_value(key, raw.strip(), environ)
        found[key] = value
        if value and (raw.strip() != value or any(w in key.lower() for w in SECRET_WORDS)):
            hidden.append(value)
    return found, hidden


def _setting_value(key: str, raw: str, environ: Mapping[str, str]) -> str:
    if raw.startswith(FROM_ENV):
        name = raw.removeprefix(FROM_ENV)
        if name not in environ:
            raise ExampleInputError(f"-X {key}={raw}: the environment variable {name} is not set")
        return environ[name]
    if raw.startswith(FROM_FILE):
        path = raw.removeprefix(FROM_FILE)
        try:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise ExampleInputError(f"-X {key}={raw}: cannot read the file: {reason}") from None
        return text.removesuffix("\n").removesuffix("\r")
    return raw


def _redacted(text: str, hidden: Sequence[str]) -> str:
    for value in sorted(hidden, key=len, reverse=True):
        text = text.replace(value, "***")
    return text


def _check_scheme(source: str, allow_http: bool) -> None:
    scheme = urlsplit(source).scheme.lower() if "://" in source else ""
    if scheme in ("http", "https") and not allow_http:
        raise ExampleInputError(
            f"{scheme}:// sources are refused unless --allow-http is given (from inside AWS "
            "such a URI reaches the instance metadata service); local paths, file:// and s3:// "
            "need no flag"
        )


def _table(given: str | None) -> str | None:
    return given or config.env_optional_str(config.ENV_JOB_TABLE)


def _warn_without_table(table: str | None, args: argparse.Namespace) -> None:
    """--compute-profile and --hourly-rate are stored on the job item: without a job table
    they do nothing, which the user should hear about rather than find out from a missing
    cost (they are not refused: a task definition may set them for runs with and without)."""
    if table is not None:
        return
    given = [
        flag
        for flag, value in (
            ("--compute-profile", args.compute_profile),
            ("--hourly-rate", args.hourly_rate),
        )
        if value is not None
    ]
    if given:
        print(
            f"warning: {' and '.join(given)} ignored: the cost tracker reads them from the job "
            f"table, and there is none (--table or ${config.ENV_JOB_TABLE})",
            file=sys.stderr,
        )


def _checkpoints(table: str | None, job_id: str, shard: Shard) -> Checkpoints:
    return DynamoCheckpoints(table, job_id, shard.label) if table else NoCheckpoints()


def _check_source(source: str, field_limit: int, encoding: str) -> None:
    """Open the source and read its header once before the job starts, so a typo in a path
    or key, or a file without a usable header, is a one-line input error (exit 2) rather than
    a traceback, or a job closed ``failed`` for good, from a job already registered."""
    try:
        source_header(source, encoding=encoding, field_limit=field_limit)
    except (OSError, BotoCoreError, ClientError, NotImplementedError) as exc:
        raise ExampleInputError(f"cannot read the source {source}: {exc}") from exc


def _producer(settings: Settings) -> Any:
    """The Kafka producer, built before the job starts: librdkafka checks every setting
    (``-X``) here, so a typo is a one-line input error (exit 2), not a job closed ``failed``."""
    try:
        return build_producer(settings)
    except (KafkaException, TypeError, ValueError) as exc:
        error = exc.args[0] if exc.args else exc
        reason = error.str() if hasattr(error, "str") else str(error)
        raise ExampleInputError(f"the Kafka producer refused its settings: {reason}") from exc


def _count_rows(source: str, table: str | None, field_limit: int, encoding: str) -> int:
    """Data rows of the file: its CSV records minus the header.

    ``metricskit.count_csv_records`` (counted in bytes as csv.reader reads records, cached in
    the job table by ETag) where it reads the source (local paths, file:// and s3://) and the
    file is UTF-8: a quoted field spanning lines is one row and progress reaches 100%. Other
    smart-open URIs and other encodings are parsed as CSV once, with the worker's field limit
    and encoding (not cached).
    """
    try:
        other_uri = "://" in source and not source.startswith(("s3://", "file://"))
        if other_uri or text_codec(encoding) != "utf-8-sig":
            return count_rows(source, field_limit=field_limit, encoding=encoding)
        return metricskit.count_csv_records(source, table=table)
    except (OSError, BotoCoreError, ClientError) as exc:
        raise ExampleInputError(f"cannot count the rows of {source}: {exc}") from exc


def _job_total(
    total_rows: int | None, shard: Shard, resumed_after: int | None, *, registry: bool
) -> int | None:
    """The Job's total: with a job registry (``done`` summed job-wide over every shard and
    restart) the whole file's rows; without one, this process's share after the checkpoint.
    """
    if total_rows is None or registry:
        return total_rows
    skipped = 0 if resumed_after is None else shard.rows_below(resumed_after + 1)
    return max(0, shard.rows_below(total_rows) - skipped)


class _ProgressPrinter:
    def __init__(self, every: float) -> None:
        self._every = every
        self._next = 0.0

    def __call__(self, progress: Progress) -> None:
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self._every
        _emit(
            {
                "progress": {
                    "delivered": progress.delivered,
                    "failed": progress.failed,
                    "retried": progress.retried,
                    "handled": progress.handled,
                }
            }
        )


STAGE_READ = "read"
STAGE_PRODUCE = "produce"


class _StageProgress:
    """Two stages: ``read`` (rows taken from the file) and ``produce`` (rows Kafka acknowledged
    or refused), with the job's total (stage progress is job-wide with a job table, like the
    job's). Fed from the progress reports, which come every ``poll_every`` rows, so the row
    loop pays nothing for them."""

    def __init__(self, job: metricskit.Job) -> None:
        self._read = job.stage(STAGE_READ, total=job.total)
        self._produce = job.stage(STAGE_PRODUCE, total=job.total)
        self._handled = 0
        self._answered = 0

    def __call__(self, progress: Progress) -> None:
        answered = progress.delivered + progress.failed
        if progress.handled > self._handled:
            self._read.processed(progress.handled - self._handled)
            self._handled = progress.handled
        if answered > self._answered:
            self._produce.processed(answered - self._answered)
            self._answered = answered


class _Both:
    def __init__(self, *callbacks: ProgressCallback | None) -> None:
        self._callbacks = [c for c in callbacks if c is not None]

    def __call__(self, progress: Progress) -> None:
        for callback in self._callbacks:
            callback(progress)


def _emit(payload: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    hidden: list[str] = []
    try:
        shard = Shard.parse(args.shard)
        producer_settings, hidden = _producer_settings(args.producer_config)
        _check_scheme(args.source, args.allow_http)
        settings = Settings(
            source=args.source,
            topic=args.topic,
            shard=shard,
            bootstrap_servers=None
            if args.mock_kafka
            else args.bootstrap_servers or os.environ.get(KAFKA_BOOTSTRAP_ENV),
            producer_config=producer_settings,
            checkpoint_every=args.checkpoint_every,
            flush_timeout=args.flush_timeout,
            stop_flush_timeout=args.stop_flush_timeout,
            delivered_log=args.delivered_log,
            fail_after=args.fail_after,
            max_rate=args.max_rate,
            latency_every=args.latency_every,
            encoding=args.encoding,
        )
        if args.hourly_rate is not None and not args.hourly_rate >= 0:
            raise ExampleInputError(f"--hourly-rate must be >= 0 USD, got {args.hourly_rate}")
        producer = _producer(settings)
        table = _table(args.table)
        _warn_without_table(table, args)
        field_limit = csv_field_limit(settings.producer_config)
        _check_source(args.source, field_limit, settings.encoding)
        total_rows = (
            _count_rows(args.source, table, field_limit, settings.encoding)
            if args.count_rows
            else args.total_rows
        )
        if total_rows is not None and total_rows < 0:
            raise ExampleInputError(f"--total-rows must be >= 0, got {total_rows}")
        checkpoints = _checkpoints(table, args.job_id, shard)
    except (ExampleInputError, metricskit.MetricsKitError) as exc:
        print(f"error: {_redacted(str(exc), hidden)}", file=sys.stderr)
        return 2
    try:
        resumed_after = checkpoints.load()
    except (BotoCoreError, ClientError) as exc:
        # Starting over without the checkpoint would send the whole shard again.
        print(f"error: cannot read the checkpoint from the job table: {exc}", file=sys.stderr)
        return 1

    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        job = metricskit.Job(
            args.job_id,
            namespace=args.namespace,
            total=_job_total(total_rows, shard, resumed_after, registry=table is not None),
            sink=args.sink,
            job_table=table,
            compute_profile=args.compute_profile,
            hourly_rate=args.hourly_rate,
            flush_interval=args.flush_interval,
            high_resolution=args.high_resolution or None,
        )
    except metricskit.MetricsKitError as exc:  # --sink, --flush-interval, METRICSKIT_*...
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stages = _StageProgress(job)
    printer = _ProgressPrinter(args.progress_every) if args.progress_lines else None
    on_progress = _Both(stages, printer)
    try:
        result = run(
            settings,
            job,
            checkpoints=_Preloaded(checkpoints, resumed_after),
            producer=producer,
            stop=stop,
            on_progress=on_progress,
        )
    except InjectedFailureError as exc:
        # A crash the test (or operator) resumes: like a killed worker, its share is left
        # undone, not failed for good (a failed worker fails the whole job at once).
        job.close("interrupted")
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except ExampleInputError as exc:
        # The header was checked before the job started: the file changed since.
        job.close("failed")
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BaseException:
        # A bug, not a condition this worker knows: `failed` (final) is what an alarm on the
        # job should see. Every known condition above closes it `interrupted`.
        job.close("failed")
        raise
    stages(
        Progress(
            result.delivered,
            result.failed,
            result.retried,
            result.malformed + result.rejected + result.produced,
        )
    )
    return _finish(job, result, args.flush_timeout, checkpoints)


def _finish(
    job: metricskit.Job, result: RunResult, flush_timeout: float, checkpoints: Checkpoints
) -> int:
    """Close the job with what the run achieved, print the result, and say why not done."""
    # Rows Kafka never answered, or did not deliver for a reason a rerun can overcome, are not
    # done: the checkpoint stays before them, so running the same command again sends them.
    interrupted = (
        result.stopped
        or result.unacknowledged > 0
        or result.undelivered > 0
        or result.source_error is not None
    )
    job.close("interrupted" if interrupted else "completed")
    if not interrupted:
        # The shard is done: its checkpoint goes when the job's item does (the table's TTL).
        checkpoints.expire(time.time())
    _emit({"result": result.as_dict()})
    if result.stopped:
        return EXIT_STOPPED
    if result.source_error is not None:
        print(
            f"error: reading the source failed mid-stream ({result.source_error}); "
            f"{_covered(result.position)} and the job is left interrupted, so running the same "
            "command again resumes there",
            file=sys.stderr,
        )
        return EXIT_SOURCE_FAILED
    if result.unacknowledged:
        print(
            f"error: {result.unacknowledged} rows still had no answer from Kafka after "
            f"--flush-timeout {flush_timeout:g} s; the checkpoint was not advanced, so "
            "running the same command again sends them",
            file=sys.stderr,
        )
        return EXIT_UNACKNOWLEDGED
    if result.undelivered:
        print(
            f"error: Kafka did not deliver {result.undelivered} rows (the warning above says "
            f"why); the worker stopped reading and {_covered(result.position)}, before the "
            "first of them, so running the same command again sends them",
            file=sys.stderr,
        )
        return EXIT_UNACKNOWLEDGED
    return 0


def _covered(position: int) -> str:
    return (
        "no row is checkpointed" if position < 0 else f"the checkpoint covers rows up to {position}"
    )


class _Preloaded:
    """The checkpoint store with its position already read (once, before the Job started)."""

    def __init__(self, store: Checkpoints, position: int | None) -> None:
        self._store = store
        self._position = position

    def load(self) -> int | None:
        return self._position

    def save(self, position: int) -> bool:
        return self._store.save(position)

    def expire(self, finished_at: float) -> bool:
        return self._store.expire(finished_at)
