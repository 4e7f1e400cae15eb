"""The codec training example on the CPU and, where CuPy sees one, the GPU: throughput, what
it learns, and the GPU gauges as the EMF sink writes them.

Each device trains the same configuration from the same seed, instrumented exactly as
``python -m examples.codec_training`` is, with ``sink=EMFSink(stream=...)`` (the documents a
Lambda or ECS task would log) and a 1 s flush. The GPU figures are read back from those
documents, so what is printed is what CloudWatch would receive.

    python bench/codec_gpu.py [--frame-size 256 --frames 600 --batch 65536 --steps 60]
                              [--eval-every 20] [--devices cpu gpu]

Needs numpy; the GPU run needs CuPy and nvidia-ml-py (``pip install metricskit[gpu]``).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import metricskit
from examples.codec_training.arrays import select_backend
from examples.codec_training.gpu import open_gpu_monitor
from examples.codec_training.train import TrainConfig, TrainResult, train
from examples.errors import ExampleInputError
from metricskit.sinks.emf import EMFSink

GPU_GAUGES = ("GPUUtilization", "GPUMemoryUsed", "GPUMemoryPercent")


@dataclass(frozen=True, slots=True)
class Run:
    result: TrainResult
    seconds: float
    documents: int
    gauges: dict[str, list[float]]


def run(device: str, config: TrainConfig) -> Run:
    backend = select_backend(device)
    buffer = io.StringIO()
    monitor = open_gpu_monitor(backend)  # None on the CPU: no GPU gauges
    started = time.perf_counter()
    try:
        with metricskit.Job(
            f"codec-{device}",
            namespace="Bench/Codec",
            total=config.total_samples,
            sink=EMFSink(stream=buffer),
            flush_interval=1.0,
        ) as job:
            result = train(config, job, gpu=monitor, backend=backend)
    finally:
        if monitor is not None:
            monitor.close()
    seconds = time.perf_counter() - started
    documents = [json.loads(line) for line in buffer.getvalue().splitlines()]
    gauges: dict[str, list[float]] = {name: [] for name in GPU_GAUGES}
    for document in documents:
        for name in GPU_GAUGES:
            if name in document:
                gauges[name].append(float(document[name]))
    return Run(result, seconds, len(documents), gauges)


def _summary(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{min(values):.0f}..{max(values):.0f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frame-size", type=int, default=256)
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--batch", type=int, default=65536)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--eval-every", type=int, default=20)
    parser.add_argument("--devices", nargs="+", choices=("cpu", "gpu"), default=["cpu", "gpu"])
    args = parser.parse_args(argv)
    config = TrainConfig(
        epochs=args.epochs,
        steps=args.steps,
        batch=args.batch,
        frame_size=args.frame_size,
        frames=args.frames,
        eval_every=args.eval_every,
    )
    print(
        f"codec training: {config.epochs} epochs x {config.steps} steps x batch {config.batch}, "
        f"{config.frames} frames of {config.frame_size}^2"
    )
    rows: list[tuple[str, Any]] = []
    for device in args.devices:
        try:
            rows.append((device, run(device, config)))
        except ExampleInputError as exc:
            print(f"{device}: skipped ({exc})")
    header = (
        f"{'device':6} {'samples/s':>11} {'seconds':>8} {'PSNR dB':>8} {'EMF docs':>8} "
        f"{'util %':>8} {'mem MiB':>12} {'mem %':>6}"
    )
    print(header)
    for device, measured in rows:
        result = measured.result
        print(
            f"{device:6} {result.samples / measured.seconds:11,.0f} {measured.seconds:8.1f} "
            f"{result.after.psnr_db:8.2f} {measured.documents:8d} "
            f"{_summary(measured.gauges['GPUUtilization']):>8} "
            f"{_summary(measured.gauges['GPUMemoryUsed']):>12} "
            f"{_summary(measured.gauges['GPUMemoryPercent']):>6}"
        )


if __name__ == "__main__":
    main()
