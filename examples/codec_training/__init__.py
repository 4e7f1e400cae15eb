"""A learned transform codec trained on synthetic video frames (numpy, or CuPy on a GPU),
instrumented with metricskit: samples/s, loss, PSNR, SSIM, bitrate, epoch progress, ETA,
GPU utilisation.

>>> from examples.codec_training import TrainConfig, train              # doctest: +SKIP
>>> with metricskit.Job("codec-1", namespace="CodecTraining") as job:   # doctest: +SKIP
...     train(TrainConfig(epochs=3), job)
"""

from examples.codec_training.train import TrainConfig, TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "train"]
