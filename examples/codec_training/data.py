"""Synthetic video: smooth moving shapes over a drifting gradient, cut into square patches.

Frames are grayscale in [0, 1]. Consecutive frames move a little, as video does, so a codec
trained on some frames generalises to the next ones.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]


def make_frames(count: int, size: int, rng: np.random.Generator) -> Array:
    """``count`` frames of ``size`` x ``size`` pixels, shape (count, size, size).

    >>> make_frames(2, 16, np.random.default_rng(0)).shape
    (2, 16, 16)
    """
    ys, xs = np.mgrid[0:size, 0:size] / size
    blobs = rng.uniform(0.1, 0.9, size=(4, 2))
    velocity = rng.normal(0, 0.01, size=(4, 2))
    widths = rng.uniform(0.05, 0.15, size=4)
    levels = rng.uniform(0.3, 0.7, size=4)
    frames = np.empty((count, size, size))
    for t in range(count):
        centre = (blobs + velocity * t) % 1.0
        frame = 0.3 * (xs + ys) / 2 + 0.05 * np.sin(2 * np.pi * (3 * xs + t / 25))
        for (cy, cx), width, level in zip(centre, widths, levels, strict=True):
            frame += level * np.exp(-((ys - cy) ** 2 + (xs - cx) ** 2) / (2 * width**2))
        frames[t] = frame
    frames += rng.normal(0, 0.01, size=frames.shape)
    return np.clip(frames, 0.0, 1.0)


def to_patches(frames: Array, patch: int) -> Array:
    """Frames (n, s, s) as flattened patches (n * (s/patch)^2, patch * patch)."""
    n, size, _ = frames.shape
    blocks = size // patch
    tiles = frames.reshape(n, blocks, patch, blocks, patch).transpose(0, 1, 3, 2, 4)
    return tiles.reshape(-1, patch * patch)


def from_patches(patches: Array, size: int, patch: int) -> Array:
    """The inverse of :func:`to_patches`."""
    blocks = size // patch
    tiles = patches.reshape(-1, blocks, blocks, patch, patch).transpose(0, 1, 3, 2, 4)
    return tiles.reshape(-1, size, size)
