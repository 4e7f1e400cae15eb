"""A learned linear transform codec: encoder, uniform quantiser, decoder, trained by Adam.

x (a patch) -> y = W x -> y_hat = q * round(y / q) -> x_hat = D y_hat.
Loss = MSE(x, x_hat) + lambda * rate, where rate = mean(log2(1 + |y| / q)) is a smooth
proxy for the bits an entropy coder spends on the latents. Rounding has no gradient, so the
backward pass treats it as the identity (the straight-through estimator).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from examples.codec_training.arrays import DeviceArray


@dataclass(frozen=True, slots=True)
class StepResult:
    loss: float
    mse: float
    rate_proxy: float


class LinearCodec:
    """Encoder ``W`` (latent x dim) and decoder ``D`` (dim x latent), held by the array
    module ``xp`` (numpy, or CuPy for a GPU; see :mod:`examples.codec_training.arrays`).
    The initial weights come from ``rng`` on the host, so both start from the same codec.

    >>> codec = LinearCodec(dim=64, latent=16, step=0.05, rng=np.random.default_rng(0))
    >>> codec.reconstruct(np.zeros((2, 64))).shape
    (2, 64)
    """

    def __init__(
        self, *, dim: int, latent: int, step: float, rng: np.random.Generator, xp: Any = np
    ) -> None:
        scale = 1.0 / math.sqrt(dim)
        self.xp = xp
        self.encoder = xp.asarray(rng.normal(0, scale, size=(latent, dim)))
        self.decoder = self.encoder.T.copy()
        self.step = step
        self._adam = _Adam([self.encoder, self.decoder], xp)

    def encode(self, patches: DeviceArray) -> DeviceArray:
        return patches @ self.encoder.T

    def quantize(self, latents: DeviceArray) -> DeviceArray:
        """Integer symbols (what an entropy coder would code)."""
        return self.xp.round(latents / self.step)

    def reconstruct(self, patches: DeviceArray) -> DeviceArray:
        return (self.quantize(self.encode(patches)) * self.step) @ self.decoder.T

    def train_step(self, patches: DeviceArray, *, rate_weight: float, lr: float) -> StepResult:
        """One gradient step on a batch of patches (rows)."""
        n, dim = patches.shape
        latents = self.encode(patches)
        quantized = self.quantize(latents) * self.step
        residual = quantized @ self.decoder.T - patches
        magnitude = self.xp.abs(latents)
        losses = self.xp.stack(
            (self.xp.mean(residual**2), self.xp.mean(self.xp.log2(1.0 + magnitude / self.step)))
        )
        grad_out = 2.0 * residual / (n * dim)
        grad_decoder = grad_out.T @ quantized
        grad_latents = grad_out @ self.decoder
        grad_latents += (
            rate_weight
            * self.xp.sign(latents)
            / ((self.step + magnitude) * math.log(2) * latents.size)
        )
        grad_encoder = grad_latents.T @ patches
        self._adam.update([grad_encoder, grad_decoder], lr)
        # One copy to the host, after the whole step is queued: on a GPU it waits for the step.
        mse, rate = losses.tolist()
        return StepResult(loss=mse + rate_weight * rate, mse=mse, rate_proxy=rate)


class _Adam:
    """Adam (Kingma and Ba, 2015) over a list of arrays updated in place."""

    def __init__(
        self, params: list[DeviceArray], xp: Any, beta1: float = 0.9, beta2: float = 0.999
    ) -> None:
        self.params = params
        self.xp = xp
        self.m = [xp.zeros_like(p) for p in params]
        self.v = [xp.zeros_like(p) for p in params]
        self.beta1, self.beta2 = beta1, beta2
        self.t = 0

    def update(self, grads: list[DeviceArray], lr: float) -> None:
        self.t += 1
        correction1 = 1 - self.beta1**self.t
        correction2 = 1 - self.beta2**self.t
        for index, grad in enumerate(grads):
            m, v = self.m[index], self.v[index]
            self.xp.multiply(m, self.beta1, out=m)
            m += (1 - self.beta1) * grad
            self.xp.multiply(v, self.beta2, out=v)
            v += (1 - self.beta2) * grad * grad
            self.params[index] -= lr * (m / correction1) / (self.xp.sqrt(v / correction2) + 1e-8)
