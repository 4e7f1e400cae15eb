"""GPU utilisation and memory through NVIDIA's NVML (``nvidia-ml-py``), when there is a GPU.

Without the package, the driver or a device, :func:`open_gpu_monitor` logs once and returns
None; the worker then simply publishes no GPU gauges.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger("examples.codec_training")


@dataclass(frozen=True, slots=True)
class GpuSample:
    """Across all visible devices: mean utilisation (%), memory used (MiB) and its share (%)."""

    devices: int
    utilization_percent: float
    memory_used_mib: float
    memory_percent: float


class GpuMonitor:
    """Reads every device's utilisation and memory; ``close()`` shuts NVML down.

    Utilisation is the mean of the samples NVML took since the previous reading (the share
    of each ~1/6 s during which a kernel ran), so a reading taken while the host is busy,
    after an evaluation say, still reports the training steps before it. Where a driver does
    not keep samples, it is NVML's instantaneous rate (its last sample period).
    """

    def __init__(self, nvml: Any) -> None:
        self._nvml = nvml
        count = nvml.nvmlDeviceGetCount()
        self._handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        self._last_seen = [0] * count
        """Per device, NVML's timestamp (microseconds) of the newest sample already read."""

    @property
    def devices(self) -> int:
        return len(self._handles)

    def sample(self) -> GpuSample | None:
        """One reading, or None when NVML fails (logged; the training goes on)."""
        try:
            util = [self._utilization(index) for index in range(len(self._handles))]
            memory = [self._nvml.nvmlDeviceGetMemoryInfo(h) for h in self._handles]
        except Exception as exc:
            logger.warning("NVML reading failed: %s", exc)
            return None
        used = sum(float(m.used) for m in memory)
        total = sum(float(m.total) for m in memory) or 1.0
        return GpuSample(
            devices=len(self._handles),
            utilization_percent=sum(util) / len(util),
            memory_used_mib=used / 2**20,
            memory_percent=100.0 * used / total,
        )

    def _utilization(self, index: int) -> float:
        handle = self._handles[index]
        try:
            _, samples = self._nvml.nvmlDeviceGetSamples(
                handle, self._nvml.NVML_GPU_UTILIZATION_SAMPLES, self._last_seen[index]
            )
        except Exception as exc:  # NOT_FOUND: no sample since; NOT_SUPPORTED: none kept
            logger.debug("NVML utilisation samples unavailable (%s); instantaneous rate", exc)
            samples = []
        if not samples:
            return float(self._nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
        self._last_seen[index] = max(s.timeStamp for s in samples)
        return sum(float(s.sampleValue.uiVal) for s in samples) / len(samples)

    def close(self) -> None:
        try:
            self._nvml.nvmlShutdown()
        except Exception as exc:  # shutting down a library must not fail the run
            logger.debug("nvmlShutdown failed: %s", exc)


def open_gpu_monitor() -> GpuMonitor | None:
    """A monitor over every NVIDIA GPU, or None (logged once) when there is none to read."""
    try:
        import pynvml
    except ImportError:
        logger.info("no GPU metrics: nvidia-ml-py is not installed (pip install nvidia-ml-py)")
        return None
    try:
        pynvml.nvmlInit()
    except Exception as exc:
        logger.info("no GPU metrics: NVML is not available here (%s)", exc)
        return None
    monitor = GpuMonitor(pynvml)
    if monitor.devices == 0:
        logger.info("no GPU metrics: NVML sees no device")
        monitor.close()
        return None
    return monitor
