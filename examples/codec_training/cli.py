"""Command line of the codec training worker: ``python -m examples.codec_training --help``.

Prints one JSON line ``{"result": {...}}`` at the end (loss and quality before/after). Exit
status 0 when trained; 2, with a one-line ``error:`` that says what is allowed, for bad
arguments: a configuration that cannot work, ``--device gpu`` without a usable GPU, or a
metricskit setting (``--sink``, ``--flush-interval``, a ``METRICSKIT_*`` variable).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

import metricskit
from examples.codec_training.arrays import DEVICES, select_backend
from examples.codec_training.gpu import open_gpu_monitor
from examples.codec_training.train import TrainConfig, train
from examples.errors import ExampleInputError


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m examples.codec_training",
        description="Train a small learned transform codec on synthetic video (numpy on the "
        "CPU, CuPy on an NVIDIA GPU), instrumented with metricskit.",
    )
    defaults = TrainConfig()
    p.add_argument("--job-id", required=True, help="the JobId of this training run")
    p.add_argument("--namespace", default="CodecTraining", help="CloudWatch namespace")
    p.add_argument("--epochs", type=int, default=defaults.epochs)
    p.add_argument("--steps", type=int, default=defaults.steps, help="steps per epoch")
    p.add_argument("--batch", type=int, default=defaults.batch, help="patches per step")
    p.add_argument("--frame-size", type=int, default=defaults.frame_size, help="pixels a side")
    p.add_argument("--patch", type=int, default=defaults.patch, help="patch size (pixels a side)")
    p.add_argument("--latent", type=int, default=defaults.latent, help="latents per patch")
    p.add_argument("--quant-step", type=float, default=defaults.quant_step)
    p.add_argument("--rate-weight", type=float, default=defaults.rate_weight, help="lambda")
    p.add_argument("--lr", type=float, default=defaults.lr, help="Adam learning rate")
    p.add_argument("--frames", type=int, default=defaults.frames, help="synthetic frames")
    p.add_argument("--eval-every", type=int, default=defaults.eval_every, help="steps")
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument(
        "--device",
        choices=DEVICES,
        default="auto",
        help="where to train: gpu needs CuPy and a GPU; auto takes one when there is one",
    )
    p.add_argument("--no-gpu", action="store_true", help="do not read GPU metrics")
    p.add_argument("--sink", default=None, help="metricskit sink (default: $METRICSKIT_SINK)")
    p.add_argument("--flush-interval", type=float, default=None, help="seconds between flushes")
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    try:
        config = TrainConfig(
            epochs=args.epochs,
            steps=args.steps,
            batch=args.batch,
            frame_size=args.frame_size,
            patch=args.patch,
            latent=args.latent,
            quant_step=args.quant_step,
            rate_weight=args.rate_weight,
            lr=args.lr,
            frames=args.frames,
            eval_every=args.eval_every,
            seed=args.seed,
        )
        backend = select_backend(args.device)
    except ExampleInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        job = metricskit.Job(
            args.job_id,
            namespace=args.namespace,
            total=config.total_samples,
            sink=args.sink,
            flush_interval=args.flush_interval,
        )
    except metricskit.MetricsKitError as exc:  # --sink, --flush-interval, METRICSKIT_*...
        print(f"error: {exc}", file=sys.stderr)
        return 2
    gpu = None if args.no_gpu else open_gpu_monitor(backend)
    try:
        with job:
            result = train(config, job, gpu=gpu, backend=backend)
    finally:
        if gpu is not None:
            gpu.close()
    print(json.dumps({"result": result.as_dict()}))
    return 0
