"""The CSV-to-Kafka loop: stream rows, produce them, count what Kafka confirmed.

What each metric means here:

* ``RecordsProcessed`` (``job.processed()``): a row Kafka acknowledged, counted in the
  delivery callback, so it never counts a row that was only queued;
* ``KafkaLatency`` (ms): from ``produce()`` to the delivery callback (librdkafka's own
  per-message ``latency()``): queueing, batching (``linger.ms``), the broker round trip, and
  the wait until the worker next serves callbacks (every ``poll_every`` rows, and
  continuously while ``max_rate`` holds it back);
* ``ErrorCount``: rows skipped for good: malformed rows, and rows Kafka refused because of
  the row itself (:data:`ROW_FAULT_ERRORS`, e.g. too large), whether ``produce()`` refused
  them or the delivery report did. A row that failed for any other reason (a broker down past
  ``message.timeout.ms``, a transport error, a missing topic or permission) is *undelivered*:
  not an error, not done, and never covered by a checkpoint, so a rerun sends it
  (:func:`row_at_fault`);
* ``RetryCount``: rows ``produce()`` found the local queue full (``BufferError``), once per
  row however long it waits; the worker serves delivery callbacks and tries the same row
  again until it fits or a stop is requested;
* ``CheckpointCount``: checkpoints written to the job table.

The per-row path does only what a loader without metrics would do plus one counter tick in
the callback; the poll, progress, stop and checkpoint checks run once per ``poll_every`` rows.
"""

from __future__ import annotations

import codecs
import csv
import itertools
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, Any, Protocol

from confluent_kafka import KafkaError, KafkaException, Producer

from examples.csv_to_kafka.checkpoints import Checkpoints, NoCheckpoints
from examples.csv_to_kafka.sharding import Shard
from examples.errors import ExampleInputError
from metricskit import aws_clients

logger = logging.getLogger("examples.csv_to_kafka")

LATENCY_METRIC = "KafkaLatency"
MOCK_CLUSTER_CONFIG: Mapping[str, Any] = {"test.mock.num.brokers": 1, "log_level": 4}
"""librdkafka's in-process mock cluster (speaks the real protocol; lives as long as the
producer). ``log_level`` 4 hides its start-up notice."""

ProgressCallback = Callable[["Progress"], None]
CSV_FIELD_LIMIT = 16 * 2**20
"""Characters one CSV field may hold (csv's own default, 131,072, is less than one Kafka
message: a legal quoted field longer than that stopped the parser mid-field, and its closing
quote then opened a field that swallowed the valid rows after it). 16 MiB is 16 times a
Kafka message at the producer's default ``message.max.bytes`` (1,000,000 bytes), so a field
too large for Kafka is still read whole and its row refused as one error; a larger
``message.max.bytes`` raises the limit with it (:func:`csv_field_limit`). What it bounds is
the memory the parser may hold for one field (an unterminated quote reads this far at most);
a field beyond it is one malformed record, and when it spans lines the parser may lose the
rows after it until the quotes pair up again."""
FLUSH_SLICE_SECONDS = 0.25
"""A flush waits in slices this long, looking at the stop flag between them, so a SIGTERM
that arrives during a checkpoint's flush shortens it to ``stop_flush_timeout``."""
SKIP_STOP_CHECK_MASK = (1 << 16) - 1
"""Rows skipped (before the checkpoint, or other shards') between two looks at the stop flag:
65,536 rows take tens of milliseconds to read, well inside ECS's 30 s stop timeout."""
SOURCE_BATCH_CHARS = 1 << 18
"""Characters of whole lines the reader thread hands over at once (a longer line is one batch
of its own): large enough that the hand-over costs nothing per row."""
SOURCE_QUEUE_BATCHES = 8
"""Batches read ahead at most: the memory the read-ahead may hold (about 2 MiB of text)."""
SOURCE_WAIT_SECONDS = 0.25
"""The row loop waits for the reader thread in slices this long, looking at the stop flag
between them: a stalled S3 read (botocore's 60 s read timeout, then smart-open's retries)
does not hold a SIGTERM back."""
DEFAULT_ENCODING = "utf-8"
UNDECODABLE = "surrogateescape"
"""How bytes that are not valid in the source's encoding are read: as lone surrogates, which
no Kafka message can carry (UTF-8 refuses them), so the row is counted malformed rather than
loaded with U+FFFD in place of its text."""


ROW_FAULT_ERRORS: frozenset[int] = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,  # over message.max.bytes (the producer's or a broker's)
        KafkaError.INVALID_MSG_SIZE,  # the broker: invalid message size
        KafkaError.INVALID_RECORD,  # the broker refuses this record
    }
)
"""Kafka error codes that are about the row itself: sending the same row again cannot succeed,
so the worker counts it as an error and moves past it. Every other error is about the
environment (see :func:`row_at_fault`)."""


def row_at_fault(error: KafkaError) -> bool:
    """Whether Kafka refused the row for what it is (skip it) rather than for where it went.

    Only :data:`ROW_FAULT_ERRORS` are. Everything else leaves the row *undelivered*: a message
    timeout (``_MSG_TIMED_OUT``, which librdkafka does not flag retriable), transport errors,
    brokers down, leader changes, ``err.retriable()`` ones, but also an unknown topic, a
    missing authorization or a fatal producer error: a rerun can deliver the row once the
    broker, the topic or the permission is back, so skipping it would lose it.

    >>> row_at_fault(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
    True
    >>> row_at_fault(KafkaError(KafkaError._MSG_TIMED_OUT))
    False
    """
    return error.code() in ROW_FAULT_ERRORS


class Recorder(Protocol):
    """What the worker records into: a :class:`metricskit.Job` (or :class:`NoMetrics`)."""

    def processed(self, n: float = 1) -> None: ...

    def failed(self, n: float = 1) -> None: ...

    def retried(self, n: float = 1) -> None: ...

    def checkpointed(self, n: float = 1) -> None: ...

    def observe(self, name: str, value: float, unit: str = "Milliseconds") -> None: ...


class NoMetrics:
    """Records nothing: the "metrics off" baseline when measuring the worker's overhead."""

    def processed(self, n: float = 1) -> None:
        pass

    def failed(self, n: float = 1) -> None:
        pass

    def retried(self, n: float = 1) -> None:
        pass

    def checkpointed(self, n: float = 1) -> None:
        pass

    def observe(self, name: str, value: float, unit: str = "Milliseconds") -> None:
        pass


class InjectedFailureError(RuntimeError):
    """Raised by ``--fail-after``: a crash at a known row, for resume tests and demos."""


@dataclass(frozen=True, slots=True)
class Settings:
    """What to load and where. ``source`` is an S3 URI, any smart-open URI or a local path."""

    source: str
    topic: str
    shard: Shard = field(default_factory=lambda: Shard(0, 1))
    bootstrap_servers: str | None = None
    producer_config: Mapping[str, str] = field(default_factory=dict)
    checkpoint_every: int = 50_000
    poll_every: int = 100
    flush_timeout: float = 30.0
    """Seconds a checkpoint waits for Kafka's verdict on every row produced so far. Rows still
    unanswered then keep the checkpoint where it was; give at least ``message.timeout.ms``
    for a slow broker."""
    stop_flush_timeout: float = 15.0
    """Seconds a flush waits at most once a stop (SIGTERM) is seen, counted from then: with
    metricskit's shutdown (``METRICSKIT_SHUTDOWN_TIMEOUT``, 10 s) it keeps a stop during a
    broker outage inside ECS's default 30 s ``stopTimeout``."""
    delivered_log: str | None = None
    fail_after: int | None = None
    max_rate: float | None = None
    """Rows per second at most (a shared broker's quota, or a demo that should last a while)."""
    latency_every: int = 16
    """Observe the latency of every Nth acknowledged row (1 = all). A distribution value costs
    ~0.3 us, about 9% of a 4 us row loop (bench/overhead.py); 1-in-16 of 1M rows still gives
    62k samples for the p99, thousands a minute at any useful rate."""
    encoding: str = DEFAULT_ENCODING
    """The source's text encoding (UTF-8: a leading byte order mark is dropped). A row with
    bytes that are not valid in it is malformed (an error), never loaded altered."""

    def __post_init__(self) -> None:
        for name in ("checkpoint_every", "poll_every", "latency_every"):
            if getattr(self, name) < 1:
                raise ExampleInputError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.fail_after is not None and self.fail_after < 1:
            raise ExampleInputError(f"fail_after must be >= 1 row, got {self.fail_after}")
        for name in ("flush_timeout", "stop_flush_timeout"):
            if not getattr(self, name) > 0:
                raise ExampleInputError(f"{name} must be > 0 s, got {getattr(self, name)}")
        if self.max_rate is not None and not self.max_rate > 0:
            raise ExampleInputError(f"max_rate must be > 0 rows/s, got {self.max_rate}")
        if not self.topic:
            raise ExampleInputError("topic must not be empty")
        text_codec(self.encoding)


@dataclass(frozen=True, slots=True)
class Progress:
    """A progress report: rows of this shard handled so far in this run."""

    delivered: int
    failed: int
    retried: int
    handled: int


@dataclass(frozen=True, slots=True)
class RunResult:
    """What one run of a worker did (this process only; the job may span several runs)."""

    delivered: int
    malformed: int
    delivery_errors: int
    rejected: int
    retried: int
    checkpoints: int
    produced: int
    resumed_after: int | None
    position: int
    seconds: float
    stopped: bool
    unacknowledged: int = 0
    """Rows Kafka had neither acknowledged nor refused when the run ended (the final flush
    timed out): the checkpoint stays before them, so a rerun sends them again."""
    undelivered: int = 0
    """Rows whose delivery failed for a reason other than the row itself (a broker down past
    ``message.timeout.ms``...; :func:`row_at_fault`). The worker stops reading at the next
    ``poll_every`` mark after the first one and its checkpoint stays before the lowest such
    row, so a rerun sends them."""

    source_error: str | None = None
    """Why reading the source failed mid-stream (an S3 read that failed after smart-open's
    retries...), or None. The worker stopped there and committed what Kafka acknowledged; a
    rerun resumes from that checkpoint."""
    undecodable: int = 0
    """Malformed rows (counted in ``malformed``) whose bytes are not valid in the encoding."""

    @property
    def failed(self) -> int:
        return self.malformed + self.rejected + self.delivery_errors

    def as_dict(self) -> dict[str, Any]:
        return {
            "delivered": self.delivered,
            "malformed": self.malformed,
            "delivery_errors": self.delivery_errors,
            "rejected": self.rejected,
            "failed": self.failed,
            "retried": self.retried,
            "checkpoints": self.checkpoints,
            "produced": self.produced,
            "resumed_after": self.resumed_after,
            "position": self.position,
            "seconds": round(self.seconds, 3),
            "stopped": self.stopped,
            "unacknowledged": self.unacknowledged,
            "undelivered": self.undelivered,
            "undecodable": self.undecodable,
            "source_error": self.source_error,
        }


def producer_config(settings: Settings) -> dict[str, Any]:
    """The confluent-kafka configuration: a real broker or librdkafka's mock cluster."""
    config: dict[str, Any] = {"linger.ms": 5}
    if settings.bootstrap_servers:
        config["bootstrap.servers"] = settings.bootstrap_servers
    else:
        config.update(MOCK_CLUSTER_CONFIG)
    config.update(settings.producer_config)
    return config


def build_producer(settings: Settings) -> Any:
    """A ``confluent_kafka.Producer`` for ``settings``."""
    return Producer(producer_config(settings))


def csv_field_limit(producer_settings: Mapping[str, Any]) -> int:
    """The CSV field limit for a producer: :data:`CSV_FIELD_LIMIT`, or its
    ``message.max.bytes`` when that is larger (every field Kafka could take is read).

    >>> csv_field_limit({"message.max.bytes": "100000000"})
    100000000
    """
    try:
        message_max = int(producer_settings.get("message.max.bytes", 0))
    except (TypeError, ValueError):
        message_max = 0  # librdkafka refuses the setting itself when the producer is built
    return max(CSV_FIELD_LIMIT, message_max)


@contextmanager
def _field_limit(limit: int) -> Iterator[None]:
    """csv's field limit is process-wide: set it for one read, then put the old one back."""
    previous = csv.field_size_limit(limit)
    try:
        yield
    finally:
        csv.field_size_limit(previous)


def text_codec(encoding: str) -> str:
    """The codec the source is read with: ``encoding``, or ``utf-8-sig`` for UTF-8 (a leading
    byte order mark, which Excel writes, is dropped rather than made part of the first
    column's name). Raises :class:`ExampleInputError` for a name Python does not know as a
    text encoding.

    >>> text_codec("UTF8"), text_codec("cp1252")
    ('utf-8-sig', 'cp1252')
    """
    try:
        info = codecs.lookup(encoding)
    except (LookupError, TypeError, ValueError):
        info = None
    if info is None or not getattr(info, "_is_text_encoding", True):
        raise ExampleInputError(
            f"--encoding {encoding!r} is not a text encoding Python knows "
            "(e.g. utf-8, cp1252, latin-1, utf-16)"
        )
    return "utf-8-sig" if info.name in ("utf-8", "utf-8-sig") else info.name


def open_source(uri: str, encoding: str = DEFAULT_ENCODING) -> IO[str]:
    """Open the CSV as a text stream; S3 objects are streamed, never downloaded whole.

    S3 is read with metricskit's client (boto3's chain, so ``AWS_ENDPOINT_URL`` selects moto
    or LocalStack, plus ``AWS_REGION`` when no other region is set, and standard retries).
    Decoded with :func:`text_codec`; bytes not valid in ``encoding`` become lone surrogates
    (:data:`UNDECODABLE`), which the loader counts as a malformed row.
    """
    import smart_open

    transport_params = {"client": aws_clients.s3_client()} if uri.startswith("s3://") else None
    stream: IO[str] = smart_open.open(
        uri,
        "r",
        encoding=text_codec(encoding),
        errors=UNDECODABLE,
        newline="",
        transport_params=transport_params,
    )
    return stream


def has_undecodable(text: str) -> bool:
    """Whether ``text`` holds bytes :func:`open_source` could not decode (lone surrogates).

    >>> has_undecodable(b"M\\xfcnchen".decode("utf-8", "surrogateescape"))
    True
    >>> has_undecodable("M\u00fcnchen")
    False
    """
    return any("\udc80" <= char <= "\udcff" for char in text)


def read_header(reader: Iterator[list[str]], source: str, encoding: str) -> list[str]:
    """The header row, or :class:`ExampleInputError` when it cannot name the columns: an
    empty file, a header that is not valid CSV (a field over the field limit, a stray
    quote...) or not valid in ``encoding``, or a column named twice."""
    try:
        header = next(reader)
    except StopIteration:
        raise ExampleInputError(f"{source}: empty file, expected a header row") from None
    except csv.Error as exc:
        raise ExampleInputError(f"{source}: the header row is not valid CSV ({exc})") from None
    if any(has_undecodable(name) for name in header):
        raise ExampleInputError(
            f"{source}: the header row is not valid {encoding} (pass the file's --encoding, "
            "e.g. --encoding cp1252)"
        )
    if not header or len(set(header)) != len(header):
        raise ExampleInputError(f"{source}: the header {header!r} must name each column once")
    return header


def source_header(
    uri: str, *, encoding: str = DEFAULT_ENCODING, field_limit: int = CSV_FIELD_LIMIT
) -> list[str]:
    """The header row of the source, read as the loader reads it (:func:`read_header`): the
    CLI checks it before the job starts.

    >>> source_header("rows.csv")   # doctest: +SKIP
    ['id', 'name', 'amount']
    """
    with open_source(uri, encoding) as stream, _field_limit(field_limit):
        return read_header(csv.reader(stream), uri, encoding)


def count_rows(
    uri: str, *, field_limit: int = CSV_FIELD_LIMIT, encoding: str = DEFAULT_ENCODING
) -> int:
    """Data rows in the CSV (records after the header), by streaming it once, with the
    worker's field limit and encoding, so it counts the rows the worker reads.

    >>> count_rows("rows.csv")   # doctest: +SKIP
    200000
    """
    records = 0
    with open_source(uri, encoding) as stream, _field_limit(field_limit):
        reader = csv.reader(stream)
        while True:
            try:
                for _ in reader:
                    records += 1
                break
            except csv.Error:
                records += 1  # the loader counts an invalid record as a (malformed) row too
    return max(0, records - 1)


class SourceReadError(Exception):
    """Reading the source failed after the load started (an S3 read that still failed after
    botocore's and smart-open's retries, a connection reset...)."""


@dataclass(frozen=True, slots=True)
class _End:
    """The reader thread's last item: the end of the source, or why reading it failed."""

    error: BaseException | None = None


class _LineFeed:
    """The source's lines, read on a thread of their own into a bounded queue.

    On the main thread a stalled S3 read holds the row loop for botocore's read timeout
    (60 s) times smart-open's retries, with a SIGTERM waiting behind it. Here the row loop
    waits on the queue in :data:`SOURCE_WAIT_SECONDS` slices and sees the stop flag; a reader
    still stalled when the worker exits is left behind (a daemon thread). Lines come in
    batches of about :data:`SOURCE_BATCH_CHARS` and are chained in C, so the hand-over costs
    nothing per row; at most :data:`SOURCE_QUEUE_BATCHES` are read ahead.
    """

    def __init__(self, open_stream: Callable[[], IO[str]], stop: threading.Event) -> None:
        self._open = open_stream
        self._stop = stop
        self._queue: queue.Queue[list[str] | _End] = queue.Queue(SOURCE_QUEUE_BATCHES)
        self._closed = threading.Event()
        self.stopped = False
        """True when the stop flag was seen while waiting for the source."""
        self._thread = threading.Thread(target=self._read, name="csv-source", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        end = _End()
        try:
            with self._open() as stream:
                while batch := stream.readlines(SOURCE_BATCH_CHARS):
                    if not self._put(batch):
                        return
        except Exception as exc:  # handed to the row loop, which stops and commits
            end = _End(exc)
        self._put(end)

    def _put(self, item: list[str] | _End) -> bool:
        """Queue ``item``, waiting for room; False once the row loop has gone."""
        while not self._closed.is_set():
            try:
                self._queue.put(item, timeout=SOURCE_WAIT_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def _batches(self) -> Iterator[list[str]]:
        while True:
            try:
                item = self._queue.get(timeout=SOURCE_WAIT_SECONDS)
            except queue.Empty:
                if self._stop.is_set():
                    self.stopped = True
                    return
                continue
            if isinstance(item, _End):
                if item.error is not None:
                    error = item.error
                    raise SourceReadError(f"{type(error).__name__}: {error}") from error
                return
            yield item

    def lines(self) -> Iterator[str]:
        """Every line of the source, in order; raises :class:`SourceReadError` where reading
        failed, and ends early (``stopped``) when a stop is requested while it waits."""
        return itertools.chain.from_iterable(self._batches())

    def close(self, wait: float = 1.0) -> None:
        """Let the reader thread go: it closes the source, unless a read is stalled (then it
        is left behind, up to ``wait`` seconds later)."""
        self._closed.set()
        self._thread.join(timeout=wait)


class RateLimit:
    """A token bucket: ``rate`` rows per second on average, never more than ``burst`` rows
    ahead of it. The clock starts at the first :meth:`take` (the first rows handled, not the
    start of the run: a resume that skips millions of rows first does not bank their time),
    and a pause (a stalled source, a slow broker) banks ``burst`` rows at most.

    >>> clock = iter([0.0, 0.0, 60.0]).__next__
    >>> limit = RateLimit(100.0, burst=10.0, clock=clock)
    >>> limit.take(10), limit.take(10), limit.take(30)   # the pause banks 10 rows, not 6,000
    (0.0, 0.1, 0.2)
    """

    def __init__(
        self, rate: float, *, burst: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if not rate > 0 or not burst > 0:
            raise ExampleInputError(f"rate and burst must be > 0, got {rate} and {burst}")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = burst
        self._at: float | None = None

    def take(self, rows: float) -> float:
        """Count ``rows`` just handled; the seconds to wait before handling more (0: none)."""
        now = self._clock()
        if self._at is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        self._tokens -= rows
        return -self._tokens / self.rate if self._tokens < 0 else 0.0


class _Deliveries:
    """The delivery callback: count, time and (optionally) log what Kafka acknowledged, count
    rows refused for what they are, and keep the lowest row left undelivered."""

    __slots__ = (
        "_every",
        "_failed",
        "_log",
        "_next_sample",
        "_observe",
        "_processed",
        "delivered",
        "errors",
        "first_undelivered",
        "undelivered",
    )

    def __init__(self, job: Recorder, log: IO[bytes] | None, latency_every: int = 1) -> None:
        self._processed = job.processed
        self._failed = job.failed
        self._observe = job.observe
        self._log = log
        self._every = latency_every
        self._next_sample = 1
        self.delivered = 0
        self.errors = 0
        self.undelivered = 0
        self.first_undelivered: int | None = None
        """The lowest row index whose delivery failed for a reason other than the row."""

    def __call__(self, err: Any, msg: Any) -> None:
        if err is None:
            self.delivered += 1
            self._processed()
            if self.delivered >= self._next_sample:
                self._next_sample += self._every
                latency = msg.latency()
                if latency is not None:
                    self._observe(LATENCY_METRIC, latency * 1000.0)
            if self._log is not None:
                self._log.write(msg.key() + b"\n")
        elif row_at_fault(err):
            self.errors += 1
            self._failed()
            if self.errors == 1:
                logger.warning("Kafka refused a row: %s (further refusals only counted)", err)
        else:
            self.not_delivered(int(msg.key()), err)

    def not_delivered(self, index: int, err: KafkaError) -> None:
        """Row ``index`` failed for a reason a rerun can overcome: keep the checkpoint before it."""
        self.undelivered += 1
        if self.first_undelivered is None or index < self.first_undelivered:
            self.first_undelivered = index
        if self.undelivered == 1:
            logger.warning(
                "Kafka did not deliver row %d: %s; stopping, the checkpoint stays before it "
                "(further ones only counted)",
                index,
                err,
            )


def run(
    settings: Settings,
    job: Recorder,
    *,
    checkpoints: Checkpoints | None = None,
    producer: Any = None,
    stop: threading.Event | None = None,
    on_progress: ProgressCallback | None = None,
    clock: Callable[[], float] | None = None,
) -> RunResult:
    """Load this shard's rows of ``settings.source`` into Kafka, resuming after a checkpoint.

    >>> with metricskit.Job("load-1", namespace="CSVToKafka") as job:       # doctest: +SKIP
    ...     run(Settings("s3://bucket/rows.csv", topic="rows"), job)

    Does not close ``job``; the caller decides whether the job completed or was interrupted.
    A source that fails mid-stream does not raise: the run stops there, commits what Kafka
    acknowledged and says why in ``RunResult.source_error``. ``clock`` (monotonic seconds,
    default ``time.monotonic``) paces ``max_rate``; tests inject one.
    """
    loader = _Loader(
        settings,
        job,
        checkpoints=checkpoints or NoCheckpoints(),
        producer=producer if producer is not None else build_producer(settings),
        stop=stop or threading.Event(),
        on_progress=on_progress,
        clock=clock or time.monotonic,
    )
    return loader.run()


class _Loader:
    """One run: the row loop plus the rare work done every ``poll_every`` rows."""

    def __init__(
        self,
        settings: Settings,
        job: Recorder,
        *,
        checkpoints: Checkpoints,
        producer: Any,
        stop: threading.Event,
        on_progress: ProgressCallback | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.job = job
        self.checkpoints = checkpoints
        self.producer = producer
        self.stop = stop
        self.on_progress = on_progress
        self.malformed = 0
        self.retried = 0
        self.checkpoints_written = 0
        self.produced = 0
        self.rejected = 0
        self.handled = 0
        self.next_checkpoint = settings.checkpoint_every
        self.fail_at = 1 << 62
        self.resumed_after = -1
        """The checkpoint this run started after (-1: none); never stored lower."""
        self.log: IO[bytes] | None = None
        self.deliveries = _Deliveries(job, None)
        self.undecodable = 0
        self.source_error: str | None = None
        self.rate_limit = (
            None
            if settings.max_rate is None
            # The loop looks at the rate once per poll_every rows: the bucket holds that many.
            else RateLimit(settings.max_rate, burst=settings.poll_every, clock=clock)
        )
        self.rate_counted = 0

    def run(self) -> RunResult:
        settings = self.settings
        resumed_after = self.checkpoints.load()
        self.resumed_after = -1 if resumed_after is None else resumed_after
        started = time.monotonic()
        if settings.delivered_log:
            self.log = open(settings.delivered_log, "ab")  # noqa: SIM115 - closed below
        self.deliveries = _Deliveries(self.job, self.log, settings.latency_every)
        feed = _LineFeed(lambda: open_source(settings.source, settings.encoding), self.stop)
        try:
            skip_to = self.resumed_after
            limit = csv_field_limit(settings.producer_config)
            try:
                with _field_limit(limit):
                    position, ended_early = self._load(feed, skip_to)
            finally:
                feed.close()
            # Never move a checkpoint backwards (a shorter file under the same key).
            position = max(position, skip_to)
            unacknowledged, position = self.commit(position)
        finally:
            if self.log is not None:
                self.log.close()
        return RunResult(
            delivered=self.deliveries.delivered,
            malformed=self.malformed,
            delivery_errors=self.deliveries.errors,
            rejected=self.rejected,
            retried=self.retried,
            checkpoints=self.checkpoints_written,
            produced=self.produced,
            resumed_after=resumed_after,
            position=position,
            seconds=time.monotonic() - started,
            stopped=ended_early and self.stop.is_set(),
            unacknowledged=unacknowledged,
            undelivered=self.deliveries.undelivered,
            source_error=self.source_error,
            undecodable=self.undecodable,
        )

    def commit(self, position: int) -> tuple[int, int]:
        """Wait for Kafka's verdict on every produced row, then store ``position``, or the row
        before the lowest undelivered one when that is lower.

        Returns the rows still unanswered after the flush (0 when they all were) and the
        position the checkpoint covers (stored unless rows were unanswered).
        """
        pending = self._flush()
        first_undelivered = self.deliveries.first_undelivered
        if first_undelivered is not None and first_undelivered <= position:
            # Rows after it may have been delivered; they will be sent again (at least once).
            position = max(first_undelivered - 1, self.resumed_after)
        if pending:
            logger.warning("%d rows still unacknowledged; checkpoint %d skipped", pending, position)
            return pending, position
        if position == self.resumed_after and first_undelivered is not None:
            return 0, position  # nothing settled since the checkpoint this run started after
        if self.log is not None:
            self.log.flush()
        if self.checkpoints.save(position):
            self.checkpoints_written += 1
            self.job.checkpointed()
        return 0, position

    def _flush(self) -> int:
        """``producer.flush()`` for up to ``flush_timeout``, or up to ``stop_flush_timeout``
        from the moment a stop is seen. Returns the rows still unanswered."""
        settings = self.settings
        deadline = time.monotonic() + settings.flush_timeout
        stop_seen = False
        while True:
            if not stop_seen and self.stop.is_set():
                stop_seen = True
                deadline = min(deadline, time.monotonic() + settings.stop_flush_timeout)
            left = deadline - time.monotonic()
            pending: int = self.producer.flush(min(max(left, 0.0), FLUSH_SLICE_SECONDS))
            if not pending or left <= FLUSH_SLICE_SECONDS:
                return pending

    def _load(self, feed: _LineFeed, skip_to: int) -> tuple[int, bool]:
        """The row loop. Returns (last row index read, stopped early: by a stop request, an
        undelivered row or a source that failed, see ``source_error``)."""
        reader = csv.reader(feed.lines())
        try:
            header = read_header(reader, self.settings.source, self.settings.encoding)
        except SourceReadError as exc:
            self._source_failed(-1, exc)
            return -1, True
        if feed.stopped:
            return -1, True
        index, ended_early = self._rows(reader, header, skip_to)
        return index, ended_early or feed.stopped

    def _source_failed(self, index: int, error: SourceReadError) -> None:
        self.source_error = f"{self.settings.source}: {error}"
        logger.warning("reading stopped after row %d: %s", index, self.source_error)

    def _rows(  # noqa: PLR0912 - the per-row loop stays one function: its locals are fast
        self, reader: Iterator[list[str]], header: list[str], skip_to: int
    ) -> tuple[int, bool]:
        """The rows after the header. Returns (last row index read, stopped early)."""
        # Locals: attribute lookups per row add up over 100M rows.
        width = len(header)
        topic = self.settings.topic
        produce = self.producer.produce
        deliveries = self.deliveries
        failed = self.job.failed
        dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
        count, mine = self.settings.shard.count, self.settings.shard.index
        # --fail-after's row is a mark too, so the row loop has one comparison, not two.
        fail_at = self.fail_at = self.settings.fail_after or 1 << 62
        next_mark = min(self.settings.poll_every, fail_at)
        stop_requested = self.stop.is_set
        index = -1
        while True:
            try:
                for row in reader:
                    index += 1
                    if index % count != mine or index <= skip_to:
                        # Skipping can take minutes (a resume deep into a 100M-row file):
                        # heed a stop here too, not only at the marks of rows handled.
                        if not index & SKIP_STOP_CHECK_MASK and stop_requested():
                            return index, True
                        continue
                    if len(row) == width:
                        key = str(index)
                        value = dumps(dict(zip(header, row, strict=True)))
                        try:
                            produce(topic, value, key, on_delivery=deliveries)
                            self.produced += 1
                        except BufferError:
                            if not self._produce_when_room(topic, value, key):
                                return index - 1, True  # stopped before this row was sent
                        except (KafkaException, UnicodeEncodeError) as exc:
                            self._refused(index, exc)
                    else:
                        self.malformed += 1
                        failed()
                    self.handled += 1
                    if self.handled >= next_mark:
                        next_mark = min(self.handled + self.settings.poll_every, fail_at)
                        if self._at_mark(index):
                            return index, True
                return index, False
            except csv.Error as exc:
                # The reader consumed the bad record; count it if it is ours and go on.
                index += 1
                self._invalid_record(index, skip_to, exc)
            except SourceReadError as exc:
                self._source_failed(index, exc)
                return index, True

    def _refused(self, index: int, exc: KafkaException | UnicodeEncodeError) -> None:
        """produce() refused row ``index``: for what Kafka said, or because the row holds
        bytes that are not valid in the encoding (UTF-8 cannot carry the surrogates they were
        read as): a malformed row, not a row loaded altered."""
        if isinstance(exc, KafkaException):
            self._reject(index, exc)
            return
        self.malformed += 1
        self.undecodable += 1
        self.job.failed()
        if self.undecodable == 1:
            logger.warning(
                "row %d is not valid %s: counted as malformed (further ones only counted; "
                "pass the file's --encoding if the whole file is another one)",
                index,
                self.settings.encoding,
            )

    def _invalid_record(self, index: int, skip_to: int, error: csv.Error) -> None:
        if self.settings.shard.owns(index) and index > skip_to:
            self.malformed += 1
            self.handled += 1
            self.job.failed()
            logger.debug("row %d is not valid CSV: %s", index, error)

    def _at_mark(self, index: int) -> bool:
        """Every ``poll_every`` rows: callbacks, progress, checkpoint. True to stop: a stop
        was requested, or a row went undelivered (librdkafka already kept trying for
        ``message.timeout.ms``; reading on would only send rows a rerun sends again)."""
        if self.handled >= self.fail_at:
            raise InjectedFailureError(f"--fail-after {self.fail_at}: failing at row {index}")
        self.producer.poll(0)
        if self.on_progress is not None:
            self.on_progress(
                Progress(
                    self.deliveries.delivered,
                    self.malformed + self.rejected + self.deliveries.errors,
                    self.retried,
                    self.handled,
                )
            )
        if self.rate_limit is not None:
            wait = self.rate_limit.take(self.handled - self.rate_counted)
            self.rate_counted = self.handled
            # Wait inside poll(): delivery callbacks keep being served, so the wait does not
            # show up as Kafka latency.
            deadline = self.clock() + wait
            while (left := deadline - self.clock()) > 0 and not self.stop.is_set():
                self.producer.poll(min(left, 0.05))
        if self.handled >= self.next_checkpoint:
            self.next_checkpoint = self.handled + self.settings.checkpoint_every
            self.commit(index)
        return self.stop.is_set() or self.deliveries.undelivered > 0

    def _produce_when_room(self, topic: str, value: str, key: str) -> bool:
        """The local queue is full: serve delivery callbacks until the row fits.

        With the broker down the queue drains only as rows time out (``message.timeout.ms``,
        300 s by default), so the stop flag is checked on every turn. Returns False when a
        stop came first (the row was not produced), True once the row is settled.
        """
        self.retried += 1  # a row retried, not a turn of this loop
        self.job.retried()
        while True:
            self.producer.poll(0.05)
            try:
                self.producer.produce(topic, value, key, on_delivery=self.deliveries)
            except BufferError:
                if self.stop.is_set():
                    return False
                continue
            except KafkaException as exc:
                self._reject(int(key), exc)
                return True
            self.produced += 1
            return True

    def _reject(self, index: int, exc: KafkaException) -> None:
        """produce() refused the row outright: an error when the row is at fault (too large),
        else undelivered (an unknown topic, a fatal producer error...)."""
        error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
        if error is not None and not row_at_fault(error):
            self.deliveries.not_delivered(index, error)
            return
        self.rejected += 1
        self.job.failed()
        if self.rejected == 1:
            logger.warning(
                "row %d refused by the producer: %s (further ones only counted)", index, exc
            )
