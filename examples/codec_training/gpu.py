"""GPU utilisation and memory of the device the training runs on, through NVIDIA's NVML
(``nvidia-ml-py``).

Only that device: NVML sees every GPU of the host whatever ``CUDA_VISIBLE_DEVICES`` says,
and CuPy trains on one (its current device), so averaging over all of them would report an
8-GPU host busy at 100% on the training GPU as 12.5%, and summing memory would add other
jobs' GPUs. The device is found by its PCI bus id, the one name CUDA and NVML share (their
indexes differ under ``CUDA_VISIBLE_DEVICES``). A run on the CPU publishes no GPU gauges.

Without the package, the driver or the device, :func:`open_gpu_monitor` logs once and
returns None; the worker then simply publishes no GPU gauges.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from examples.codec_training.arrays import Backend

logger = logging.getLogger("examples.codec_training")


@dataclass(frozen=True, slots=True)
class GpuSample:
    """The training device: utilisation (%), memory used (MiB) and its share of the device's
    memory (%)."""

    pci_bus_id: str
    utilization_percent: float
    memory_used_mib: float
    memory_percent: float


class GpuMonitor:
    """Reads one device's utilisation and memory; ``close()`` shuts NVML down.

    Utilisation is the mean of the samples NVML took since the previous reading (the share
    of each ~1/6 s during which a kernel ran), so a reading taken while the host is busy,
    after an evaluation say, still reports the training steps before it. Where a driver does
    not keep samples, it is NVML's instantaneous rate (its last sample period). Memory is
    what is in use on the device (every process on it, as ``nvidia-smi`` shows it).

    >>> monitor = GpuMonitor(pynvml, pynvml.nvmlDeviceGetHandleByIndex(0))  # doctest: +SKIP
    >>> monitor.sample().utilization_percent                                # doctest: +SKIP
    87.5
    """

    def __init__(self, nvml: Any, handle: Any, pci_bus_id: str = "") -> None:
        self._nvml = nvml
        self._handle = handle
        self.pci_bus_id = pci_bus_id
        self._last_seen = 0
        """NVML's timestamp (microseconds) of the newest utilisation sample already read."""

    def sample(self) -> GpuSample | None:
        """One reading, or None when NVML fails (logged; the training goes on)."""
        try:
            utilization = self._utilization()
            memory = self._nvml.nvmlDeviceGetMemoryInfo(self._handle)
        except Exception as exc:
            logger.warning("NVML reading failed: %s", exc)
            return None
        used = float(memory.used)
        return GpuSample(
            pci_bus_id=self.pci_bus_id,
            utilization_percent=utilization,
            memory_used_mib=used / 2**20,
            memory_percent=100.0 * used / (float(memory.total) or 1.0),
        )

    def _utilization(self) -> float:
        try:
            _, samples = self._nvml.nvmlDeviceGetSamples(
                self._handle, self._nvml.NVML_GPU_UTILIZATION_SAMPLES, self._last_seen
            )
        except Exception as exc:  # NOT_FOUND: no sample since; NOT_SUPPORTED: none kept
            logger.debug("NVML utilisation samples unavailable (%s); instantaneous rate", exc)
            samples = []
        if not samples:
            return float(self._nvml.nvmlDeviceGetUtilizationRates(self._handle).gpu)
        self._last_seen = max(s.timeStamp for s in samples)
        return sum(float(s.sampleValue.uiVal) for s in samples) / len(samples)

    def close(self) -> None:
        _shutdown(self._nvml)


def training_device_bus_id(backend: Backend) -> str:
    """The PCI bus id of the device ``backend`` (CuPy) trains on: its current device.

    >>> training_device_bus_id(select_backend("gpu"))   # doctest: +SKIP
    '0000:19:00.0'
    """
    runtime = backend.xp.cuda.runtime
    return str(runtime.deviceGetPCIBusId(runtime.getDevice()))


def open_gpu_monitor(backend: Backend) -> GpuMonitor | None:
    """A monitor of the GPU ``backend`` trains on, or None (logged once) when it trains on
    the CPU or that GPU cannot be read.

    >>> from examples.codec_training.arrays import CPU
    >>> open_gpu_monitor(CPU) is None
    True
    """
    if backend.device != "gpu":
        logger.info("no GPU metrics: training on the CPU")
        return None
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
    try:
        bus_id = training_device_bus_id(backend)
        handle = pynvml.nvmlDeviceGetHandleByPciBusId(bus_id)
    except Exception as exc:
        logger.info("no GPU metrics: NVML does not find the training device (%s)", exc)
        _shutdown(pynvml)
        return None
    logger.info("GPU metrics of the training device %s", bus_id)
    return GpuMonitor(pynvml, handle, bus_id)


def _shutdown(nvml: Any) -> None:
    try:
        nvml.nvmlShutdown()
    except Exception as exc:  # shutting down a library must not fail the run
        logger.debug("nvmlShutdown failed: %s", exc)
