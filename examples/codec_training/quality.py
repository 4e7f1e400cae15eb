"""Image quality and rate measures: PSNR, SSIM (uniform window) and empirical entropy.

Each works on numpy or CuPy arrays alike (computed where the arrays are; only the result
comes back to the host).
"""

from __future__ import annotations

import math

from examples.codec_training.arrays import DeviceArray, namespace_of

SSIM_C1 = (0.01 * 1.0) ** 2
SSIM_C2 = (0.03 * 1.0) ** 2
"""SSIM's stabilising constants for a data range of 1.0 (Wang et al., 2004)."""


def psnr(reference: DeviceArray, decoded: DeviceArray, peak: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB (``inf`` for identical inputs).

    >>> import numpy as np
    >>> round(psnr(np.zeros(4), np.full(4, 0.1)), 1)
    20.0
    """
    mse = float(namespace_of(reference).mean((reference - decoded) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(peak * peak / mse)


def _box_mean(image: DeviceArray, window: int) -> DeviceArray:
    """Mean over every ``window`` x ``window`` block (valid positions), by integral image."""
    xp = namespace_of(image)
    integral = xp.pad(image, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    total = (
        integral[window:, window:]
        - integral[:-window, window:]
        - integral[window:, :-window]
        + integral[:-window, :-window]
    )
    return xp.asarray(total / (window * window), dtype=xp.float64)


def ssim(reference: DeviceArray, decoded: DeviceArray, window: int = 7) -> float:
    """Mean structural similarity of two 2-D images in [0, 1], with a uniform window.

    >>> import numpy as np
    >>> img = np.random.default_rng(0).random((16, 16))
    >>> ssim(img, img)
    1.0
    """
    if reference.shape != decoded.shape or reference.ndim != 2:
        raise ValueError("ssim needs two 2-D images of the same shape")
    window = min(window, *reference.shape)
    mu_x, mu_y = _box_mean(reference, window), _box_mean(decoded, window)
    var_x = _box_mean(reference * reference, window) - mu_x**2
    var_y = _box_mean(decoded * decoded, window) - mu_y**2
    cov = _box_mean(reference * decoded, window) - mu_x * mu_y
    numerator = (2 * mu_x * mu_y + SSIM_C1) * (2 * cov + SSIM_C2)
    denominator = (mu_x**2 + mu_y**2 + SSIM_C1) * (var_x + var_y + SSIM_C2)
    return round(float(namespace_of(reference).mean(numerator / denominator)), 12)


def entropy_bits(symbols: DeviceArray) -> float:
    """Empirical entropy in bits per symbol of integer-valued ``symbols``: the rate an ideal
    entropy coder would reach on them.

    >>> import numpy as np
    >>> entropy_bits(np.array([0, 1, 0, 1]))
    1.0
    """
    xp = namespace_of(symbols)
    _, counts = xp.unique(symbols, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * xp.log2(p)).sum())
