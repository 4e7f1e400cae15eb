"""The training loop, instrumented with metricskit.

Per step: ``processed(batch)`` on the job (samples/s, progress and ETA over
``epochs x steps x batch`` samples) and on its one stage, ``train`` (:data:`STAGE`), and the
``Loss`` and ``Epoch`` gauges. Every ``eval_every`` steps, on held-out later frames: ``PSNR``
(dB), ``SSIM``, ``BitsPerPixel`` (empirical entropy of the quantised latents) and
``Bitrate`` (kbit/s at ``fps``), plus GPU utilisation and memory when a GPU monitor is given.

One stage for the whole run, not one per epoch: a stage's series are published on every flush
until the job ends, and each is a billed custom metric, so a stage per epoch made the series
per flush (and the bill) grow with ``--epochs``. The ``Epoch`` gauge says where the run is.

The training and its evaluation run where ``backend`` says (numpy on the CPU, or CuPy on a
GPU); the synthetic frames are made on the host and copied over once.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from examples.codec_training.arrays import CPU, Backend, DeviceArray
from examples.codec_training.data import from_patches, make_frames, to_patches
from examples.codec_training.gpu import GpuMonitor
from examples.codec_training.model import LinearCodec
from examples.codec_training.quality import entropy_bits, psnr, ssim
from examples.errors import ExampleInputError
from metricskit import Job

STAGE = "train"
"""The training's one stage (``Stage`` dimension); its total is the job's."""


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """Hyper-parameters and data sizes; every field is checked on creation."""

    epochs: int = 5
    steps: int = 100
    batch: int = 256
    frame_size: int = 32
    patch: int = 8
    latent: int = 16
    quant_step: float = 0.05
    rate_weight: float = 0.002
    lr: float = 0.01
    frames: int = 120
    eval_every: int = 20
    fps: float = 30.0
    seed: int = 0

    def __post_init__(self) -> None:
        positive = ("epochs", "steps", "batch", "patch", "latent", "eval_every", "frames")
        for name in positive:
            if getattr(self, name) < 1:
                raise ExampleInputError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.frame_size < self.patch or self.frame_size % self.patch:
            raise ExampleInputError(
                f"frame_size {self.frame_size} must be a multiple of patch {self.patch}"
            )
        if self.latent > self.patch * self.patch:
            raise ExampleInputError(
                f"latent {self.latent} must be at most patch*patch = {self.patch**2}"
            )
        # isfinite: nan passes every comparison's negation and inf every lower bound, and
        # either would train a codec of NaNs without a word.
        for name in ("quant_step", "lr", "fps"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ExampleInputError(f"{name} must be a finite number > 0, got {value}")
        if not (math.isfinite(self.rate_weight) and self.rate_weight >= 0):
            raise ExampleInputError(
                f"rate_weight must be a finite number >= 0, got {self.rate_weight}"
            )
        if not 0 <= self.seed < 2**63:  # numpy's default_rng refuses a negative seed
            raise ExampleInputError(f"seed must be an integer from 0 to 2**63 - 1, got {self.seed}")
        if self.frames < 5:
            raise ExampleInputError(
                f"frames must be >= 5 (4 train : 1 held out), got {self.frames}"
            )

    @property
    def total_samples(self) -> int:
        return self.epochs * self.steps * self.batch


@dataclass(frozen=True, slots=True)
class Evaluation:
    psnr_db: float
    ssim: float
    bits_per_pixel: float
    bitrate_kbps: float


@dataclass(frozen=True, slots=True)
class TrainResult:
    first_loss: float
    final_loss: float
    before: Evaluation
    after: Evaluation
    samples: int
    seconds: float
    gpu_samples: int
    device: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate(
    codec: LinearCodec, frames: DeviceArray, config: TrainConfig, backend: Backend = CPU
) -> Evaluation:
    """Quality and rate of the codec on whole frames, computed where ``backend`` trains."""
    frames = backend.to_device(frames)
    symbols = codec.quantize(codec.encode(to_patches(frames, config.patch)))
    decoded = backend.xp.clip(
        from_patches((symbols * codec.step) @ codec.decoder.T, config.frame_size, config.patch),
        0.0,
        1.0,
    )
    bits_per_patch = entropy_bits(symbols) * config.latent
    bpp = bits_per_patch / (config.patch * config.patch)
    return Evaluation(
        psnr_db=psnr(frames, decoded),
        ssim=statistics.fmean(ssim(f, d) for f, d in zip(frames, decoded, strict=True)),
        bits_per_pixel=bpp,
        bitrate_kbps=bpp * config.frame_size**2 * config.fps / 1000.0,
    )


def train(
    config: TrainConfig,
    job: Job,
    *,
    gpu: GpuMonitor | None = None,
    backend: Backend = CPU,
) -> TrainResult:
    """Train the codec on ``backend``, reporting to ``job``; returns quality before and after.

    >>> with metricskit.Job("codec-1", namespace="CodecTraining") as job:   # doctest: +SKIP
    ...     train(TrainConfig(epochs=2), job)
    """
    rng = np.random.default_rng(config.seed)
    frames = make_frames(config.frames, config.frame_size, rng)
    held_out = max(1, config.frames // 5)
    train_frames, eval_frames = frames[:-held_out], backend.to_device(frames[-held_out:])
    patches = backend.to_device(to_patches(train_frames, config.patch))
    codec = LinearCodec(
        dim=config.patch * config.patch,
        latent=config.latent,
        step=config.quant_step,
        rng=rng,
        xp=backend.xp,
    )
    before = evaluate(codec, eval_frames, config, backend)
    # A batch cannot be larger than the training set; the job's total follows the real size.
    batch = min(config.batch, len(patches))
    job.set_total(config.epochs * config.steps * batch)
    stage = job.stage(STAGE, total=config.epochs * config.steps * batch)
    started = time.monotonic()
    first_loss = final_loss = float("nan")
    gpu_samples = 0
    for epoch in range(1, config.epochs + 1):
        order = backend.to_device(rng.permutation(len(patches)))
        for step in range(config.steps):
            start = (step * batch) % max(1, len(patches) - batch + 1)
            result = codec.train_step(
                patches[order[start : start + batch]], rate_weight=config.rate_weight, lr=config.lr
            )
            if epoch == 1 and step == 0:
                first_loss = result.loss
            final_loss = result.loss
            job.processed(batch)
            stage.processed(batch)
            job.gauge("Loss", result.loss)
            job.gauge("Epoch", float(epoch))  # every step: each flush period carries it
            if (step + 1) % config.eval_every == 0 or step + 1 == config.steps:
                _report(job, evaluate(codec, eval_frames, config, backend))
                gpu_samples += _report_gpu(job, gpu)
    return TrainResult(
        first_loss=first_loss,
        final_loss=final_loss,
        before=before,
        after=evaluate(codec, eval_frames, config, backend),
        samples=config.epochs * config.steps * batch,
        seconds=time.monotonic() - started,
        gpu_samples=gpu_samples,
        device=backend.device,
    )


def _report(job: Job, evaluation: Evaluation) -> None:
    job.gauge("PSNR", evaluation.psnr_db)
    job.gauge("SSIM", evaluation.ssim)
    job.gauge("BitsPerPixel", evaluation.bits_per_pixel)
    job.gauge("Bitrate", evaluation.bitrate_kbps, unit="Kilobits/Second")


def _report_gpu(job: Job, gpu: GpuMonitor | None) -> int:
    if gpu is None:
        return 0
    sample = gpu.sample()
    if sample is None:
        return 0
    job.gauge("GPUUtilization", sample.utilization_percent, unit="Percent")
    job.gauge("GPUMemoryUsed", sample.memory_used_mib, unit="Megabytes")
    job.gauge("GPUMemoryPercent", sample.memory_percent, unit="Percent")
    return 1
