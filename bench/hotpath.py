"""Hot-path cost: metricskit's record calls next to the peers, in one process.

    python bench/hotpath.py [--number N]

Prints ns per call and the ratios the design targets:
``RATIO processed/prometheus_counter`` (target <= 0.35) and
``RATIO observe/prometheus_histogram`` (target <= 0.5).
Each call is timed through a bound method taken once, as a worker loop would call it.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import logging
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench._timing import ns_per_call, print_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--number", type=int, default=1_000_000)
    args = parser.parse_args()
    n = args.number
    logging.disable(logging.CRITICAL)

    import metricskit

    job = metricskit.Job("bench", sink="off")
    processed = job.processed
    observe = job.observe
    timer = job.timer

    def timed_block() -> None:
        with timer("Latency"):
            pass

    from prometheus_client import CollectorRegistry, Counter, Histogram

    registry = CollectorRegistry()
    prom_counter = Counter("records", "records", registry=registry)
    prom_hist = Histogram("latency_ms", "latency", registry=registry)

    from opentelemetry.sdk.metrics import MeterProvider

    meter = MeterProvider().get_meter("bench")
    otel_counter = meter.create_counter("records")
    otel_hist = meter.create_histogram("latency")

    os.environ.setdefault("AWS_EMF_ENVIRONMENT", "Local")
    from aws_embedded_metrics.logger.metrics_logger_factory import create_metrics_logger

    emf_logger = create_metrics_logger()

    os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "bench")
    from aws_lambda_powertools import Metrics
    from aws_lambda_powertools.metrics import MetricUnit

    powertools = Metrics(namespace="bench", service="bench")

    rows: list[tuple[str, float]] = []

    def measure(name: str, func: object, number: int = n) -> float:
        value = ns_per_call(func, number)  # type: ignore[arg-type]
        rows.append((name, value))
        return value

    t_processed = measure("metricskit job.processed()", processed)
    measure("metricskit job.processed(3)", lambda: processed(3))
    # Latencies vary in real workers: every observe below draws the next of 4096 log-normal
    # values, so bucketing does real work (the same draw costs the peers the same).
    rng = random.Random(1)
    samples = itertools.cycle([rng.lognormvariate(2.5, 1.0) for _ in range(4096)])
    draw = samples.__next__
    t_observe = measure("metricskit job.observe(name, v)", lambda: observe("Latency", draw()))
    handle = job.distribution("Latency").observe
    measure("metricskit handle.observe(v)", lambda: handle(draw()))
    measure("metricskit with job.timer(name)", timed_block)
    t_prom_inc = measure("prometheus_client Counter.inc()", prom_counter.inc)
    t_prom_obs = measure(
        "prometheus_client Histogram.observe(v)", lambda: prom_hist.observe(draw())
    )
    measure("opentelemetry counter.add(1)", lambda: otel_counter.add(1))
    measure("opentelemetry histogram.record(v)", lambda: otel_hist.record(draw()))
    # aws-embedded-metrics keeps every raw value in a list: a smaller run bounds its memory.
    measure(
        "aws-embedded-metrics put_metric",
        lambda: emf_logger.put_metric("Latency", draw(), "Milliseconds"),
        number=min(n, 200_000),
    )
    # Powertools serializes and prints inside add_metric every 100 values: silence stdout.
    with contextlib.redirect_stdout(io.StringIO()):
        measure(
            "powertools add_metric",
            lambda: powertools.add_metric(
                name="Latency", unit=MetricUnit.Milliseconds, value=draw()
            ),
            number=min(n, 200_000),
        )
    job.close()

    print_table(f"Hot path, best of 7 x {n:,} calls (Python {sys.version.split()[0]})", rows)
    print()
    print(f"RATIO processed/prometheus_counter = {t_processed / t_prom_inc:.3f}  (target <= 0.35)")
    print(f"RATIO observe/prometheus_histogram = {t_observe / t_prom_obs:.3f}  (target <= 0.5)")


if __name__ == "__main__":
    main()
