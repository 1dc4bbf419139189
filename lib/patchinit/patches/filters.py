"""The information filter: drop patches that are almost all background.

Lehmann & Ebner remove MNIST patches "that contain less than 20 non-black
pixels".  "Black" is judged on **raw** pixel values (uint8, before any
normalisation): a pixel is non-black when its value is ``> black_level``; in a
colour patch a pixel is non-black when *any* channel is.  On float activation
maps the same comparison runs in the maps' own units.
"""
from __future__ import annotations

import logging

import numpy as np

from patchinit.patches.base import PatchSet, patch_array

log = logging.getLogger(__name__)


def count_nonblack(patches, black_level: float = 0) -> np.ndarray:
    """``(n,)`` number of pixel positions per patch with some channel ``> black_level``."""
    arr = patch_array(patches)
    return (arr > black_level).any(axis=1).sum(axis=(1, 2)).astype(np.int64)


def informative_mask(patches, min_pixels: int = 20, black_level: float = 0) -> np.ndarray:
    """Boolean ``(n,)``: True where a patch has at least ``min_pixels`` non-black pixels."""
    if min_pixels < 0:
        raise ValueError(f"min_pixels must be >= 0, got {min_pixels}")
    return count_nonblack(patches, black_level) >= min_pixels


def filter_informative(patchset: PatchSet, min_pixels: int = 20,
                       black_level: float = 0) -> tuple[PatchSet, np.ndarray]:
    """Keep informative patches; also return the kept mask (to show the dropped ones)."""
    mask = informative_mask(patchset, min_pixels, black_level)
    log.info("information filter (min_pixels=%d, black_level=%s): kept %d of %d patches",
             min_pixels, black_level, int(mask.sum()), mask.size)
    return patchset.select(mask), mask
