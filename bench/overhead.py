"""Instrumentation overhead on a realistic worker loop: metrics off vs on.

    python bench/overhead.py [--rows 1000000] [--rounds 2]

The loop is the CSV-to-Kafka worker's: read CSV rows from a file, turn each into a JSON
message and produce it with confluent-kafka to librdkafka's built-in mock cluster (the real
client and protocol; no broker needed), polling for delivery callbacks as a real worker does.

* off:       no metricskit at all.
* on/timer:  ``job.processed()`` + ``with job.timer("ProduceCall")`` around every produce
             (what the issue asks for).
* on/callback: the latency from the delivery callback (``msg.latency()``) into a bound
             distribution handle, with ``job.processed()`` in the callback.

Runs are interleaved (off, on, off, on, ...) and the best of each is compared.
Prints ``RATIO on/off = X`` for the timer variant (target <= 1.02) and the callback variant.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

HEADER = ["id", "user", "amount", "created_at", "comment", "country"]


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


def run(path: Path, variant: str) -> float:
    import metricskit

    kafka = producer()
    job = metricskit.Job("overhead", sink="off") if variant != "off" else None
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

    produce, poll, dumps = kafka.produce, kafka.poll, json.dumps
    start = time.perf_counter()
    with path.open(newline="") as source:
        reader = csv.reader(source)
        next(reader)
        if job is not None and variant == "on/timer":
            timer, processed = job.timer, job.processed
            for i, row in enumerate(reader):
                message = dumps(dict(zip(HEADER, row, strict=True))).encode()
                with timer("ProduceCall"):
                    produce("rows", value=message, key=row[0].encode(), on_delivery=on_delivery)
                processed()
                if i % 1000 == 0:
                    poll(0)
        else:
            for i, row in enumerate(reader):
                message = dumps(dict(zip(HEADER, row, strict=True))).encode()
                produce("rows", value=message, key=row[0].encode(), on_delivery=on_delivery)
                if i % 1000 == 0:
                    poll(0)
    kafka.flush()
    elapsed = time.perf_counter() - start
    if job is not None:
        job.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    variants = ["off", "on/timer", "on/callback"]
    best = dict.fromkeys(variants, float("inf"))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rows.csv"
        write_csv(path, args.rows)
        for _ in range(args.rounds):
            for variant in variants:
                best[variant] = min(best[variant], run(path, variant))
    print(f"\nWorker loop: CSV -> JSON -> confluent-kafka mock cluster, {args.rows:,} rows")
    print(f"  {'variant':14}{'seconds':>10}{'us/row':>10}{'+ns/row':>10}")
    for variant in variants:
        extra = (best[variant] - best["off"]) / args.rows * 1e9
        print(
            f"  {variant:14}{best[variant]:10.2f}{best[variant] / args.rows * 1e6:10.2f}"
            f"{extra:10.0f}"
        )
    print(
        f"RATIO on/off = {best['on/timer'] / best['off']:.3f}  (processed + timer; target <= 1.02)"
    )
    print(
        f"RATIO on_callback/off = {best['on/callback'] / best['off']:.3f}  (latency from callback)"
    )


if __name__ == "__main__":
    main()
