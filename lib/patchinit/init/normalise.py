"""Pixels -> model units: the one normaliser of the patch engine.

Images come in as uint8 ``(N, H, W, C)``; a model sees ``(x/255 - mean_c) / std_c``
channels first.  :class:`Normaliser` holds the per-channel statistics (in [0, 1]
pixel units) and applies :func:`patchinit.data.pipeline.normalise`, the formula the
training batches use, to images (torch, on a device) and to patches (numpy), so
patches, probe batches and training batches agree bit for bit.

Method A's ``pixel_space`` choices are normalisers too: ``"normalized"`` is the
dataset's statistics, ``"unit"`` is ``mean = 0, std = 1`` (x/255 exactly) and
``"raw"`` leaves the 0..255 values as they are.
"""
from __future__ import annotations

import numpy as np
import torch

from patchinit.data.pipeline import normalise

__all__ = ["Normaliser", "PIXEL_SPACES", "to_pixel_space", "per_channel", "image_tensor"]

PIXEL_SPACES = ("normalized", "unit", "raw")


def per_channel(value, n_channels: int, name: str) -> np.ndarray:
    """``value`` (a scalar or one per channel) as a float64 array of ``n_channels``."""
    arr = np.asarray(value, dtype=np.float64).reshape(-1)
    if arr.size == 1:
        arr = np.repeat(arr, n_channels)
    if arr.size != n_channels:
        raise ValueError(f"{name} has {arr.size} values but the images have {n_channels} channels")
    return arr


class Normaliser:
    """uint8 (or raw-valued) pixels -> the units a model's first layer sees.

    ``mean``/``std`` are per-channel (or one value for all) in [0, 1] pixel units;
    ``None`` means 0 and 1 (x/255 only).  ``raw=True`` skips the division too.
    """

    def __init__(self, n_channels: int, mean=None, std=None, raw: bool = False):
        mean = per_channel(0.0 if mean is None else mean, n_channels, "mean")
        std = per_channel(1.0 if std is None else std, n_channels, "std")
        if np.any(std <= 0):
            raise ValueError(f"std must be > 0 per channel, got {std.tolist()}; are the images constant?")
        if np.any(np.abs(mean) > 1):
            raise ValueError(f"mean must be in [0, 1] pixel units (e.g. MNIST 0.1307, CIFAR-10 0.4914), "
                             f"not 0..255; got {mean.tolist()}")
        self.raw = bool(raw)
        self.mean = mean.astype(np.float32)
        self.std = std.astype(np.float32)

    @classmethod
    def for_pixel_space(cls, space: str, n_channels: int, mean=None, std=None) -> "Normaliser":
        """Method A's ``pixel_space``: "normalized" (mean/std), "unit" (x/255) or "raw" (0..255)."""
        if space not in PIXEL_SPACES:
            raise ValueError(f"unknown pixel_space {space!r}; choose one of {PIXEL_SPACES}")
        if space == "normalized":
            return cls(n_channels, mean, std)
        return cls(n_channels, raw=space == "raw")

    def _stats(self, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        mean = torch.from_numpy(self.mean).to(device)[:, None, None]
        return mean, torch.from_numpy(self.std).to(device)[:, None, None]

    def images(self, imgs: np.ndarray, device=None) -> torch.Tensor:
        """``(n, H, W, C)`` uint8 -> ``(n, C, H, W)`` float32 tensor on ``device``."""
        x = torch.from_numpy(np.ascontiguousarray(imgs)).to(device).permute(0, 3, 1, 2)
        return x.float() if self.raw else normalise(x, *self._stats(device))

    def patches(self, p: np.ndarray) -> np.ndarray:
        """``(n, C, h, w)`` patches (uint8, or raw-valued floats such as a mean of patches) -> float32."""
        x = torch.from_numpy(np.ascontiguousarray(p, dtype=np.float32))
        return x.numpy() if self.raw else normalise(x, *self._stats()).numpy()


def to_pixel_space(patterns: np.ndarray, space: str, mean=None, std=None) -> np.ndarray:
    """Raw uint8-valued patterns ``(k, C, h, w)`` into ``space`` units (see the module doc)."""
    p = np.asarray(patterns, dtype=np.float32)
    c = p.shape[1]
    return Normaliser.for_pixel_space(space, c, mean, std).patches(p)


def image_tensor(imgs: np.ndarray, mean, std) -> torch.Tensor:
    """uint8 ``(N, H, W, C)`` -> float ``(N, C, H, W)`` ``(x/255 - mean)/std``, as the model sees it."""
    return Normaliser(imgs.shape[-1], mean, std).images(imgs)
