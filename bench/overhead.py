"""Instrumentation overhead on a realistic worker loop: metrics off vs on.

    python bench/overhead.py [--rows 1000000] [--rounds 5] [--variants off on/timer ...]

The loop is the CSV-to-Kafka worker's: read CSV rows from a file, turn each into a JSON
message and produce it with confluent-kafka to librdkafka's built-in mock cluster (the real
client and protocol; no broker needed), polling for delivery callbacks as a real worker does.

Variants (each its own loop, so no variant pays for another's branches):

* off:           no metricskit at all.
* on/timer:      ``with job.timer("ProduceCall")`` around every produce + ``job.processed()``
                 (what the issue asks for; prints ``RATIO on/off``).
* on/processed:  ``job.processed()`` per row only.
* on/callback:   the latency from the delivery callback (``msg.latency()``) into a bound
                 distribution handle, with ``job.processed()`` in the callback.
* floor/py-timer: no metricskit; a minimal pure-Python timer around every produce (reads the
                 clock on entry and exit, keeps nothing): the least any Python ``with`` timer
                 costs in this loop.
* floor/with:    no metricskit; ``with`` on a C-implemented context manager (a
                 ``threading.Lock``) around every produce, no clock at all: the least any
                 per-row ``with`` statement costs in this loop, whatever it is written in.

The example worker itself (``examples.csv_to_kafka.worker.run``: the same file and mock
cluster, its own loop with checkpoints every 50,000 rows into no table, and polls every 100
rows), compared with its own metrics-off run:

* worker/off:        the worker recording into ``NoMetrics`` (nothing).
* worker/on:         into a ``metricskit.Job``: ``processed()`` and the Kafka latency of every
                     row from the delivery callback (prints ``RATIO worker_on/off``).
* worker/on-every16: the same with ``--latency-every 16`` (``RATIO worker_on_every16/off``).

Runs are interleaved (off, on, ..., off, on, ...) and the best of each is compared; the
spread of each round's ratio to its own "off" run shows how far one run can move.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from types import TracebackType
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

HEADER = ["id", "user", "amount", "created_at", "comment", "country"]
TOPIC = "rows"
POLL_EVERY = 1000


def write_csv(path: Path, rows: int) -> None:
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(HEADER)
        for i in range(rows):
            writer.writerow(
                [i, f"user{i % 50_000}", f"{i * 0.37:.2f}", "2026-11-23T10:00:00Z",
                 f"order {i} shipped", "US"]
            )  # fmt: skip


def producer() -> Any:
    from confluent_kafka import Producer

    return Producer(
        {
            "test.mock.num.brokers": 1,
            "linger.ms": 5,
            "queue.buffering.max.messages": 2_000_000,
            "log_level": 0,
        }
    )


class MinimalTimer:
    """The least a pure-Python ``with`` timer can do: two clock reads, nothing kept."""

    __slots__ = ("_start", "elapsed")

    def __init__(self) -> None:
        self._start = 0.0
        self.elapsed = 0.0

    def __enter__(self) -> MinimalTimer:
        self._start = time.monotonic()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.elapsed = time.monotonic() - self._start


Rows = Iterator[list[str]]
Produce = Callable[..., None]
Delivery = Callable[[Any, Any], None]
Poll = Callable[[float], int]
Loop = Callable[[Rows, Produce, Delivery, Poll, Any], None]


def loop_off(rows: Rows, produce: Produce, on_delivery: Delivery, poll: Poll, job: Any) -> None:
    dumps = json.dumps
    for i, row in enumerate(rows):
        message = dumps(dict(zip(HEADER, row, strict=True))).encode()
        produce(TOPIC, value=message, key=row[0].encode(), on_delivery=on_delivery)
        if i % POLL_EVERY == 0:
            poll(0)


def loop_timer(rows: Rows, produce: Produce, on_delivery: Delivery, poll: Poll, job: Any) -> None:
    dumps, timer, processed = json.dumps, job.timer, job.processed
    for i, row in enumerate(rows):
        message = dumps(dict(zip(HEADER, row, strict=True))).encode()
        with timer("ProduceCall"):
            produce(TOPIC, value=message, key=row[0].encode(), on_delivery=on_delivery)
        processed()
        if i % POLL_EVERY == 0:
            poll(0)


def loop_processed(
    rows: Rows, produce: Produce, on_delivery: Delivery, poll: Poll, job: Any
) -> None:
    dumps, processed = json.dumps, job.processed
    for i, row in enumerate(rows):
        message = dumps(dict(zip(HEADER, row, strict=True))).encode()
        produce(TOPIC, value=message, key=row[0].encode(), on_delivery=on_delivery)
        processed()
        if i % POLL_EVERY == 0:
            poll(0)


def loop_around(make_block: Callable[[], AbstractContextManager[Any]]) -> Loop:
    """The floors: the plain loop with a ``with make_block():`` block around every produce."""

    def loop(rows: Rows, produce: Produce, on_delivery: Delivery, poll: Poll, job: Any) -> None:
        dumps, block = json.dumps, make_block()
        for i, row in enumerate(rows):
            message = dumps(dict(zip(HEADER, row, strict=True))).encode()
            with block:
                produce(TOPIC, value=message, key=row[0].encode(), on_delivery=on_delivery)
            if i % POLL_EVERY == 0:
                poll(0)

    return loop


LOOPS: dict[str, Loop] = {
    "off": loop_off,
    "on/timer": loop_timer,
    "on/processed": loop_processed,
    "on/callback": loop_off,  # the metrics live in the delivery callback
    "floor/py-timer": loop_around(MinimalTimer),
    "floor/with": loop_around(threading.Lock),
}
WITH_JOB = ("on/timer", "on/processed", "on/callback")
WORKER_VARIANTS = ("worker/off", "worker/on", "worker/on-every16")
VARIANTS = (*LOOPS, *WORKER_VARIANTS)


def baseline(variant: str) -> str:
    """The metrics-off run a variant is compared with."""
    return "worker/off" if variant in WORKER_VARIANTS else "off"


def run_worker(path: Path, variant: str) -> float:
    """One run of the example CSV-to-Kafka worker over ``path``: seconds, final flush included."""
    import smart_open  # noqa: F401 - the worker's first open imports it: not inside the timing

    import metricskit
    from examples.csv_to_kafka.worker import NoMetrics, Recorder, Settings
    from examples.csv_to_kafka.worker import run as load

    every = 16 if variant == "worker/on-every16" else 1
    settings = Settings(str(path), topic=TOPIC, latency_every=every)
    job = None if variant == "worker/off" else metricskit.Job("overhead-worker", sink="off")
    recorder: Recorder = NoMetrics() if job is None else job
    kafka = producer()
    start = time.perf_counter()
    result = load(settings, recorder, producer=kafka)
    elapsed = time.perf_counter() - start
    if job is not None:
        job.close()
    if result.delivered != result.produced:
        raise SystemExit(f"{variant}: {result.produced - result.delivered} rows not delivered")
    return elapsed


def run(path: Path, variant: str) -> float:
    import metricskit

    if variant in WORKER_VARIANTS:
        return run_worker(path, variant)

    kafka = producer()
    job = metricskit.Job("overhead", sink="off") if variant in WITH_JOB else None
    delivered = [0]

    def on_delivery_plain(err: Any, msg: Any) -> None:
        delivered[0] += 1

    on_delivery: Callable[[Any, Any], None] = on_delivery_plain
    if job is not None and variant == "on/callback":
        processed, observe = job.processed, job.distribution("KafkaLatency").observe

        def on_delivery_metrics(err: Any, msg: Any) -> None:
            delivered[0] += 1
            if err is None:
                processed()
                observe(msg.latency() * 1000.0)

        on_delivery = on_delivery_metrics

    start = time.perf_counter()
    with path.open(newline="") as source:
        reader = csv.reader(source)
        next(reader)
        LOOPS[variant](reader, kafka.produce, on_delivery, kafka.poll, job)
    kafka.flush()
    elapsed = time.perf_counter() - start
    if job is not None:
        job.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=VARIANTS,
        default=list(VARIANTS),
        help="which to run (each variant's metrics-off baseline is added)",
    )
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    chosen = [v for v in VARIANTS if v in args.variants or v in map(baseline, args.variants)]
    times: dict[str, list[float]] = {variant: [] for variant in chosen}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rows.csv"
        write_csv(path, args.rows)
        for _ in range(args.rounds):
            for variant in chosen:
                times[variant].append(run(path, variant))
    best = {variant: min(seconds) for variant, seconds in times.items()}
    # Each round's ratio to the same round's baseline: how far one run's ratio can move.
    round_ratios = {
        variant: sorted(t / off for t, off in zip(seconds, times[baseline(variant)], strict=True))
        for variant, seconds in times.items()
    }
    print(f"\nWorker loop: CSV -> JSON -> confluent-kafka mock cluster, {args.rows:,} rows")
    print(
        f"best of {args.rounds} rounds; ratios to 'off' (worker/* to 'worker/off'); 'rounds' "
        "spans each round's ratio to its own baseline"
    )
    print(f"  {'variant':19}{'seconds':>10}{'us/row':>10}{'+ns/row':>10}{'ratio':>8}{'rounds':>16}")
    for variant in chosen:
        base = best[baseline(variant)]
        extra = (best[variant] - base) / args.rows * 1e9
        spread = f"{round_ratios[variant][0]:.3f}-{round_ratios[variant][-1]:.3f}"
        print(
            f"  {variant:19}{best[variant]:10.2f}{best[variant] / args.rows * 1e6:10.2f}"
            f"{extra:10.0f}{best[variant] / base:8.3f}{spread:>16}"
        )
    _print_ratios(best)


def _print_ratios(best: dict[str, float]) -> None:
    def ratio(variant: str) -> str:
        return f"{best[variant] / best[baseline(variant)]:.3f}"

    if "on/timer" in best:
        print(f"RATIO on/off = {ratio('on/timer')}  (processed + timer; target <= 1.02)")
    if "on/processed" in best:
        print(f"RATIO on_processed/off = {ratio('on/processed')}  (processed only)")
    if "on/callback" in best:
        print(f"RATIO on_callback/off = {ratio('on/callback')}  (latency from callback)")
    if "floor/py-timer" in best:
        print(
            f"RATIO floor_py_timer/off = {ratio('floor/py-timer')}  "
            "(the least any pure-Python per-row with-timer costs here)"
        )
    if "floor/with" in best:
        print(
            f"RATIO floor_with/off = {ratio('floor/with')}  "
            "(the least any per-row with statement costs here)"
        )
    if "worker/on" in best:
        print(f"RATIO worker_on/off = {ratio('worker/on')}  (the example worker, every latency)")
    if "worker/on-every16" in best:
        print(
            f"RATIO worker_on_every16/off = {ratio('worker/on-every16')}  "
            "(the example worker, --latency-every 16)"
        )


if __name__ == "__main__":
    main()
