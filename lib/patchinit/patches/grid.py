"""Patches on a regular grid (Lehmann & Ebner, MNIST: 14x14 at stride 7)."""
from __future__ import annotations

import numpy as np

from patchinit.patches.base import PatchSet, as_image_array, cut_patches


def grid_positions(height: int, width: int, size: int, stride: int) -> np.ndarray:
    """Top-left ``(row, col)`` of every full window, row-major.

    Only windows that fit entirely are kept (no padding), so a 28x28 image with
    ``size=14, stride=7`` gives rows/cols {0, 7, 14}: 9 windows.  A border strip
    that the stride does not reach is left out rather than padded.
    """
    if size < 1 or stride < 1:
        raise ValueError(f"size and stride must be >= 1, got size={size}, stride={stride}")
    if size > height or size > width:
        raise ValueError(f"patch size {size} is larger than the {height}x{width} image; "
                         f"choose size <= {min(height, width)}")
    rows = np.arange(0, height - size + 1, stride)
    cols = np.arange(0, width - size + 1, stride)
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    return np.stack([rr.ravel(), cc.ravel()], axis=1).astype(np.int64)


def grid_patches(images, size: int, stride: int, channels_last: bool = True) -> PatchSet:
    """Cut every image into ``size x size`` windows at ``stride``; keeps the dtype.

    Patches come out image by image (image 0's windows first, row-major), with
    ``image_index`` and ``positions`` filled.
    """
    imgs = as_image_array(images, channels_last)
    n, h, w, _ = imgs.shape
    pos = grid_positions(h, w, size, stride)
    per = pos.shape[0]
    ii = np.repeat(np.arange(n, dtype=np.int64), per)
    return cut_patches(imgs, ii, np.tile(pos, (n, 1)), size)


def patches_per_image(height: int, width: int, size: int, stride: int) -> int:
    """How many grid windows one image gives (9 for 28x28 at 14/7)."""
    return grid_positions(height, width, size, stride).shape[0]
