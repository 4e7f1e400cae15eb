"""Where the training's arrays live: numpy on the CPU, or CuPy on an NVIDIA GPU.

CuPy implements numpy's API on the GPU, so the model is written once against an array
module ``xp`` and runs on either. The synthetic frames are made on the host (numpy) and
moved to the device once, with the codec's weights; training and evaluation run there, and
only scalars (the loss, the quality measures) come back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from examples.errors import ExampleInputError

logger = logging.getLogger("examples.codec_training")

DeviceArray = Any
"""A numpy array, or a CuPy array on the GPU (CuPy ships no type information)."""

DEVICES: Final = ("auto", "cpu", "gpu")
"""``--device`` choices: ``auto`` takes the GPU when CuPy sees one, else the CPU."""


@dataclass(frozen=True, slots=True)
class Backend:
    """An array module, and the copy from the host into it."""

    device: str
    """``cpu`` or ``gpu``: where the training ran (reported in the result)."""
    xp: Any
    """numpy, or cupy (no type information ships with CuPy)."""

    def to_device(self, array: Any) -> DeviceArray:
        return self.xp.asarray(array)


CPU: Final = Backend("cpu", np)


def namespace_of(array: DeviceArray) -> Any:
    """The array module that holds ``array``: cupy for a CuPy array, else numpy.

    >>> namespace_of(np.zeros(2)) is np
    True
    """
    if type(array).__module__.split(".")[0] == "cupy":
        import cupy

        return cupy
    return np


def select_backend(device: str) -> Backend:
    """The backend for ``--device``; ``gpu`` without CuPy or a GPU is an input error.

    >>> select_backend("cpu").device
    'cpu'
    """
    if device not in DEVICES:
        raise ExampleInputError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    if device == "cpu":
        return CPU
    reason = _gpu_missing()
    if reason is None:
        import cupy

        return Backend("gpu", cupy)
    if device == "gpu":
        raise ExampleInputError(
            f"--device gpu needs CuPy and an NVIDIA GPU ({reason}); "
            "install cupy-cuda12x or cupy-cuda13x, or use --device cpu"
        )
    logger.info("training on the CPU: %s", reason)
    return CPU


def _gpu_missing() -> str | None:
    """Why CuPy cannot train here, or None when it can."""
    try:
        import cupy
    except ImportError:
        return "CuPy is not installed"
    try:
        count = int(cupy.cuda.runtime.getDeviceCount())
    except Exception as exc:  # CUDARuntimeError without a driver; its type needs CuPy
        return f"CUDA is not available: {exc}"
    return None if count > 0 else "CUDA sees no device"
