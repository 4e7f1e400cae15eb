"""The codec training worker: quality measures, a training run that really learns, its
metrics, GPU gauges through a stand-in NVML, the choice of device, and bad configurations.

The GPU training test runs only where CuPy sees a GPU (it was run on an H200; see
examples/README.md); everything else runs everywhere.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

import metricskit
from examples.codec_training import TrainConfig, train
from examples.codec_training.arrays import CPU, Backend, select_backend
from examples.codec_training.data import from_patches, make_frames, to_patches
from examples.codec_training.gpu import GpuMonitor, open_gpu_monitor
from examples.codec_training.model import LinearCodec
from examples.codec_training.quality import entropy_bits, psnr, ssim
from examples.errors import ExampleInputError
from metricskit.sinks.memory import MemorySink

SMALL = TrainConfig(epochs=3, steps=40, batch=128, frames=40, eval_every=10)


def test_patches_round_trip_frames() -> None:
    frames = make_frames(3, 16, np.random.default_rng(1))
    patches = to_patches(frames, 4)
    assert patches.shape == (3 * 16, 16)
    np.testing.assert_array_equal(from_patches(patches, 16, 4), frames)


def test_psnr_matches_its_definition() -> None:
    reference = np.zeros((4, 4))
    assert psnr(reference, reference) == math.inf
    assert psnr(reference, np.full((4, 4), 0.1)) == pytest.approx(20.0)
    assert psnr(reference, np.full((4, 4), 0.01)) == pytest.approx(40.0)


def test_ssim_is_one_for_identical_images_and_falls_with_distortion() -> None:
    image = make_frames(1, 32, np.random.default_rng(2))[0]
    rng = np.random.default_rng(3)
    slightly = np.clip(image + rng.normal(0, 0.02, image.shape), 0, 1)
    badly = np.clip(image + rng.normal(0, 0.2, image.shape), 0, 1)
    assert ssim(image, image) == 1.0
    assert 1.0 > ssim(image, slightly) > ssim(image, badly) > -1.0
    assert ssim(image, slightly) == pytest.approx(ssim(slightly, image))
    with pytest.raises(ValueError, match="2-D"):
        ssim(image, image[:8])


def test_entropy_counts_bits_per_symbol() -> None:
    assert entropy_bits(np.zeros(10)) == 0.0
    assert entropy_bits(np.array([0, 1, 2, 3])) == pytest.approx(2.0)


def test_the_rate_term_shrinks_the_latents() -> None:
    patches = to_patches(make_frames(20, 16, np.random.default_rng(4)), 8)

    def bits(rate_weight: float) -> float:
        codec = LinearCodec(dim=64, latent=16, step=0.05, rng=np.random.default_rng(5))
        for _ in range(300):
            codec.train_step(patches, rate_weight=rate_weight, lr=0.01)
        return entropy_bits(codec.quantize(codec.encode(patches)))

    assert bits(0.05) < bits(0.0)


def test_training_improves_held_out_quality_and_reports_it() -> None:
    sink = MemorySink()
    with metricskit.Job("codec", namespace="Test/Codec", sink=sink, total=None) as job:
        result = train(SMALL, job)

    assert result.final_loss < result.first_loss / 5
    assert result.after.psnr_db > result.before.psnr_db + 10
    assert result.after.ssim > result.before.ssim
    assert result.after.ssim > 0.8
    job_wide = [m for m in sink.metrics("RecordsProcessed") if len(m.key.dimensions) == 1]
    assert sum(m.value for m in job_wide) == SMALL.epochs * SMALL.steps * SMALL.batch
    assert sink.sum("RecordsProcessed", JobId="codec", Stage="train") == SMALL.total_samples
    assert sink.last("Epoch") == SMALL.epochs
    assert sink.last("PSNR") == pytest.approx(result.after.psnr_db)
    assert sink.last("SSIM") == pytest.approx(result.after.ssim)
    assert sink.last("BitsPerPixel") == pytest.approx(result.after.bits_per_pixel)
    assert sink.last("Bitrate") == pytest.approx(result.after.bitrate_kbps)
    assert sink.last("Loss") == pytest.approx(result.final_loss)
    totals = [m.value for m in sink.metrics("RecordsTotal") if len(m.key.dimensions) == 1]
    assert totals[-1] == SMALL.total_samples
    assert "GPUUtilization" not in sink.names()
    assert result.device == "cpu"


BUS_IDS = ("00000000:19:00.0", "00000000:3B:00.0")
"""The PCI bus ids of the fake host's two GPUs, in NVML's order."""


class FakeNvml:
    """A stand-in for pynvml with two devices (NVML sees both whatever CUDA_VISIBLE_DEVICES
    says), or one whose init fails. Device 0 is 40% busy with 1 GiB used, device 1 80% busy
    with 3 GiB used, each of 8 GiB."""

    NVML_GPU_UTILIZATION_SAMPLES = 1

    def __init__(self, *, fail_init: bool = False, devices: int = 2) -> None:
        self.fail_init = fail_init
        self.devices = devices
        self.initialised = 0
        self.shut_down = False

    def nvmlInit(self) -> None:  # noqa: N802 - NVML's own names
        self.initialised += 1
        if self.fail_init:
            raise RuntimeError("NVML Shared Library Not Found")

    def nvmlDeviceGetCount(self) -> int:  # noqa: N802
        return self.devices

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:  # noqa: N802
        return index

    def nvmlDeviceGetHandleByPciBusId(self, bus_id: str) -> int:  # noqa: N802
        if bus_id not in BUS_IDS[: self.devices]:
            raise RuntimeError("Not Found")
        return BUS_IDS.index(bus_id)

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> Any:  # noqa: N802
        return SimpleNamespace(gpu=[40, 80][handle], memory=0)

    def nvmlDeviceGetSamples(self, handle: int, kind: int, since: int) -> Any:  # noqa: N802
        raise RuntimeError("Not Supported")  # as on drivers that keep no samples

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> Any:  # noqa: N802
        return SimpleNamespace(used=[2**30, 3 * 2**30][handle], total=8 * 2**30)

    def nvmlShutdown(self) -> None:  # noqa: N802
        self.shut_down = True


class TrainingCupy:
    """A stand-in for CuPy training on CUDA device ``current``, whose PCI bus id is
    ``bus_id`` (CUDA numbers only the visible devices, so its index need not be NVML's)."""

    def __init__(self, current: int, bus_id: str) -> None:
        def bus_id_of(device: int) -> str:
            assert device == current
            return bus_id

        self.cuda = SimpleNamespace(
            runtime=SimpleNamespace(getDevice=lambda: current, deviceGetPCIBusId=bus_id_of)
        )


def gpu_backend(current: int = 0, bus_id: str = BUS_IDS[1]) -> Backend:
    """Training on the host's second GPU, CUDA's device 0 under CUDA_VISIBLE_DEVICES=1."""
    return Backend("gpu", TrainingCupy(current, bus_id))


def test_gpu_gauges_report_only_the_device_the_training_runs_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Not the mean over every device NVML sees (60%) nor the memory of both (4 GiB)."""
    nvml = FakeNvml()
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    monitor = open_gpu_monitor(gpu_backend())
    assert monitor is not None
    assert monitor.pci_bus_id == BUS_IDS[1]
    sink = MemorySink()
    with metricskit.Job("gpu", namespace="Test/Codec", sink=sink) as job:
        result = train(
            TrainConfig(epochs=1, steps=10, batch=32, frames=10, eval_every=5), job, gpu=monitor
        )
    monitor.close()
    assert result.gpu_samples == 2
    assert sink.last("GPUUtilization") == pytest.approx(80.0)
    assert sink.last("GPUMemoryUsed") == pytest.approx(3 * 1024)
    assert sink.last("GPUMemoryPercent") == pytest.approx(37.5)
    assert nvml.shut_down


def test_a_cpu_run_reads_no_gpu(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--device cpu on a GPU host: NVML is not even opened, so no GPU gauge is published."""
    from examples.codec_training.cli import main

    nvml = FakeNvml()
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    assert open_gpu_monitor(CPU) is None
    argv = ["--job-id", "cpu", "--device", "cpu", "--sink", "off", "--epochs", "1"]
    assert main([*argv, "--steps", "4", "--frames", "10", "--eval-every", "2"]) == 0
    assert json.loads(capsys.readouterr().out)["result"]["device"] == "cpu"
    assert nvml.initialised == 0


class SampledNvml(FakeNvml):
    """NVML that keeps utilisation samples: (timestamp in us, percent) per device."""

    def __init__(self) -> None:
        super().__init__()
        self.history: list[list[tuple[int, int]]] = [[], []]

    def nvmlDeviceGetSamples(self, handle: int, kind: int, since: int) -> Any:  # noqa: N802
        assert kind == self.NVML_GPU_UTILIZATION_SAMPLES
        fresh = [(t, v) for t, v in self.history[handle] if t > since]
        if not fresh:
            raise RuntimeError("Not Found")  # NVML_ERROR_NOT_FOUND: nothing since
        samples = [
            SimpleNamespace(timeStamp=t, sampleValue=SimpleNamespace(uiVal=v)) for t, v in fresh
        ]
        return 1, samples


def test_gpu_utilisation_averages_the_samples_since_the_last_reading() -> None:
    nvml = SampledNvml()
    monitor = GpuMonitor(nvml, 1)
    nvml.history = [[(100, 5), (200, 5)], [(100, 90), (200, 70)]]
    first = monitor.sample()
    assert first is not None
    assert first.utilization_percent == pytest.approx((90 + 70) / 2)
    nvml.history[1].append((300, 10))  # the host was busy: one idle-ish sample since
    second = monitor.sample()
    assert second is not None
    assert second.utilization_percent == pytest.approx(10)
    third = monitor.sample()  # nothing new: NVML's instantaneous rate of device 1
    assert third is not None
    assert third.utilization_percent == pytest.approx(80)


def test_no_gpu_means_no_monitor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # not installed
    assert open_gpu_monitor(gpu_backend()) is None
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml(fail_init=True))  # no driver
    assert open_gpu_monitor(gpu_backend()) is None
    one = FakeNvml(devices=1)  # NVML does not know the training device's bus id
    monkeypatch.setitem(sys.modules, "pynvml", one)
    assert open_gpu_monitor(gpu_backend()) is None
    assert one.shut_down


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"epochs": 0}, "epochs"),
        ({"frame_size": 30}, "multiple of patch"),
        ({"latent": 65}, "at most patch"),
        ({"quant_step": 0.0}, "quant_step"),
        ({"rate_weight": -1.0}, "rate_weight"),
        ({"rate_weight": math.nan}, "rate_weight must be a finite number"),
        ({"rate_weight": math.inf}, "rate_weight must be a finite number"),
        ({"lr": math.inf}, "lr must be a finite number"),
        ({"lr": math.nan}, "lr must be a finite number"),
        ({"quant_step": math.nan}, "quant_step must be a finite number"),
        ({"seed": -1}, "seed must be an integer from 0"),
        ({"frames": 4}, "frames"),
    ],
)
def test_bad_configurations_are_clear_errors(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ExampleInputError, match=message):
        TrainConfig(**changes)


def test_cli_trains_and_prints_the_result(capsys: pytest.CaptureFixture[str]) -> None:
    from examples.codec_training.cli import main

    argv = [
        "--job-id",
        "cli",
        "--sink",
        "memory",
        "--epochs",
        "1",
        "--steps",
        "20",
        "--frames",
        "10",
        "--no-gpu",
    ]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)["result"]
    assert result["samples"] == 20 * 128  # 8 training frames hold 128 patches: the batch
    assert result["after"]["psnr_db"] > result["before"]["psnr_db"]
    assert main(["--job-id", "cli", "--frame-size", "30", "--sink", "off"]) == 2


@pytest.mark.parametrize("flags", [["--rate-weight", "nan"], ["--lr", "inf"], ["--seed", "-1"]])
def test_cli_non_finite_numbers_and_a_negative_seed_are_exit_2(
    capsys: pytest.CaptureFixture[str], flags: list[str]
) -> None:
    """They were accepted (nan, inf: a codec of NaNs) or a numpy traceback with exit 1."""
    from examples.codec_training.cli import main

    assert main(["--job-id", "cli", "--sink", "off", "--no-gpu", *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {flags[0][2:].replace('-', '_')} must be")
    assert len(err.splitlines()) == 1


class FakeCupy:
    """A stand-in for CuPy whose CUDA runtime has ``devices`` GPUs, or fails like no driver."""

    def __init__(self, devices: int | None) -> None:
        def count() -> int:
            if devices is None:
                raise RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")
            return devices

        self.cuda = SimpleNamespace(runtime=SimpleNamespace(getDeviceCount=count))


def test_the_device_is_chosen_and_a_missing_gpu_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert select_backend("cpu") is CPU
    with pytest.raises(ExampleInputError, match="auto, cpu, gpu"):
        select_backend("tpu")
    for cupy, reason in (
        (None, "CuPy is not installed"),
        (FakeCupy(devices=None), "CUDA is not available: cudaErrorNoDevice"),
        (FakeCupy(devices=0), "CUDA sees no device"),
    ):
        monkeypatch.setitem(sys.modules, "cupy", cupy)
        assert select_backend("auto") is CPU
        with pytest.raises(ExampleInputError, match=reason):
            select_backend("gpu")
    fake = FakeCupy(devices=1)
    monkeypatch.setitem(sys.modules, "cupy", fake)
    chosen = select_backend("auto")
    assert (chosen.device, chosen.xp) == ("gpu", fake)


def test_cli_refuses_a_gpu_it_does_not_have(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from examples.codec_training.cli import main

    monkeypatch.setitem(sys.modules, "cupy", None)
    assert main(["--job-id", "cli", "--device", "gpu", "--sink", "off", "--no-gpu"]) == 2
    assert "--device gpu needs CuPy" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--sink", "bogus"], "sink 'bogus' is not one of"),
        (["--flush-interval", "-5"], "flush_interval"),
    ],
)
def test_cli_bad_metricskit_settings_are_one_error_line_with_exit_status_2(
    capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    from examples.codec_training.cli import main

    assert main(["--job-id", "cli", "--device", "cpu", "--epochs", "1", *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert message in err


def _usable_gpu() -> bool:
    try:
        return select_backend("gpu").device == "gpu"
    except ExampleInputError:
        return False


@pytest.mark.skipif(not _usable_gpu(), reason="needs CuPy and an NVIDIA GPU")
def test_training_on_the_gpu_matches_the_cpu_and_reads_the_gpu() -> None:
    """Same seed, same codec: the GPU run learns what the CPU run learns (float64 on both;
    only the order of the sums differs), and NVML sees the memory the training holds."""
    results = {}
    sink = MemorySink()
    for device in ("cpu", "gpu"):
        sink = MemorySink()
        backend = select_backend(device)
        monitor = open_gpu_monitor(backend)  # None on the CPU
        try:
            with metricskit.Job("codec", namespace="Test/Codec", sink=sink) as job:
                results[device] = train(SMALL, job, gpu=monitor, backend=backend)
        finally:
            if monitor is not None:
                monitor.close()
    used, busy = sink.last("GPUMemoryUsed"), sink.last("GPUUtilization")  # the GPU run's
    assert used is not None
    assert used > 0
    assert busy is not None
    assert 0 <= busy <= 100
    cpu, gpu = results["cpu"], results["gpu"]
    assert gpu.device == "gpu"
    same_start = pytest.approx(dataclasses.astuple(cpu.before), rel=1e-9)
    assert dataclasses.astuple(gpu.before) == same_start  # the same initial codec
    assert gpu.first_loss == pytest.approx(cpu.first_loss, rel=1e-9)
    # A latent near a rounding boundary can round the other way, so the runs part a little:
    # on an H200, final loss 0.00485 vs 0.00490 and held-out PSNR 29.0 vs 27.7 dB.
    assert gpu.final_loss == pytest.approx(cpu.final_loss, rel=0.05)
    assert gpu.after.ssim == pytest.approx(cpu.after.ssim, abs=0.02)
    assert gpu.after.psnr_db > gpu.before.psnr_db + 10


def test_series_per_flush_do_not_grow_with_the_epochs(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stage per epoch kept publishing every finished epoch's series on every flush (22 to
    68 series per flush over 6 epochs), each a billed custom metric: the bill grew with
    --epochs. Flushed at every evaluation, the series of a 2-epoch and a 6-epoch run match."""
    import importlib

    training = importlib.import_module("examples.codec_training.train")  # not the function
    report = training._report

    def series_per_flush(epochs: int) -> tuple[int, set[tuple[str, Any]]]:
        sink = MemorySink()
        job = metricskit.Job("codec", namespace="Test/Codec", sink=sink, flush_interval=3600)

        def report_and_flush(job_: metricskit.Job, *evaluation: Any) -> None:
            report(job_, *evaluation)
            job_.flush()

        monkeypatch.setattr(training, "_report", report_and_flush)
        with job:
            train(dataclasses.replace(SMALL, epochs=epochs, steps=4, eval_every=2), job)
        most = max(len(batch.metrics) for batch in sink.batches)
        return most, {(m.key.name, m.key.dimensions) for b in sink.batches for m in b.metrics}

    most_2, series_2 = series_per_flush(2)
    most_6, series_6 = series_per_flush(6)
    assert most_6 == most_2
    assert series_6 == series_2
    assert {dict(d).get("Stage") for _, d in series_6} == {None, "train"}
