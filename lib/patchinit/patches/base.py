"""The patch-array convention shared by every patch source.

A *patch set* is what every extractor in :mod:`patchinit.patches` returns and
what :mod:`patchinit.cluster` consumes:

``patches``      ``(n, C, h, w)`` numpy array, **channels first** so that one patch
                 has the layout of one conv filter ``weight[i]``.  The dtype is the
                 source's: ``uint8`` for raw images (so the information filter can
                 look at raw pixel values), ``float32`` for activation maps.
``image_index``  ``(n,)`` int64, or ``None``: the row of the source image array each
                 patch came from, for class labels (method B's entropy) and for
                 showing provenance in a notebook.
``positions``    ``(n, 2)`` int64 ``(row, col)`` of the top-left pixel, or ``None``.

Images go in as numpy ``(N, H, W, C)`` (channels last, as
:func:`patchinit.data.load_dataset` returns them); ``(N, H, W)`` is read as one
channel.  Activation maps are ``(N, C, H, W)`` and are passed with
``channels_last=False``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PatchSet:
    """Patches plus the per-patch provenance that must stay aligned with them.

    Selecting through :meth:`select` (a boolean mask or integer indices) is the
    one way to subset, so ``image_index`` and ``positions`` can never drift out
    of step with ``patches``.
    """

    patches: np.ndarray
    image_index: np.ndarray | None = None
    positions: np.ndarray | None = None

    def __post_init__(self):
        p = self.patches
        if not isinstance(p, np.ndarray) or p.ndim != 4:
            raise ValueError(
                f"patches must be a numpy array of shape (n, C, h, w); got "
                f"{type(p).__name__} with shape {getattr(p, 'shape', None)}")
        n = p.shape[0]
        if self.image_index is not None and self.image_index.shape != (n,):
            raise ValueError(f"image_index has shape {self.image_index.shape}, expected ({n},)")
        if self.positions is not None and self.positions.shape != (n, 2):
            raise ValueError(f"positions has shape {self.positions.shape}, expected ({n}, 2)")

    def __len__(self) -> int:
        return self.patches.shape[0]

    @property
    def patch_shape(self) -> tuple[int, int, int]:
        """``(C, h, w)`` of one patch."""
        return tuple(self.patches.shape[1:])

    def select(self, idx) -> "PatchSet":
        """The patches at ``idx`` (bool mask of length n, or integer indices)."""
        idx = np.asarray(idx)
        if idx.dtype == bool and idx.shape != (len(self),):
            raise ValueError(f"boolean mask has shape {idx.shape}, expected ({len(self)},)")
        return PatchSet(
            patches=self.patches[idx],
            image_index=None if self.image_index is None else self.image_index[idx],
            positions=None if self.positions is None else self.positions[idx],
        )


def patch_array(patches) -> np.ndarray:
    """The ``(n, C, h, w)`` array of a :class:`PatchSet` or of a plain array."""
    arr = patches.patches if isinstance(patches, PatchSet) else np.asarray(patches)
    if arr.ndim != 4:
        raise ValueError(f"expected patches of shape (n, C, h, w), got shape {arr.shape}")
    return arr


def as_image_array(images, channels_last: bool = True) -> np.ndarray:
    """Validate images and return them as ``(N, H, W, C)`` (a view where possible).

    ``channels_last=False`` reads ``(N, C, H, W)`` (activation maps) and returns a
    channels-last view, so every extractor indexes one layout.
    """
    arr = np.asarray(images)
    if arr.ndim == 3 and channels_last:
        arr = arr[..., None]
    if arr.ndim != 4:
        layout = "(N, H, W, C) or (N, H, W)" if channels_last else "(N, C, H, W)"
        raise ValueError(f"images must have shape {layout}; got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError("images is empty (0 images); pass at least one image")
    return arr if channels_last else np.moveaxis(arr, 1, -1)


def cut_patches(images, image_index, top_left, size, channels_last: bool = True) -> PatchSet:
    """Cut square ``size x size`` windows at ``top_left`` ``(row, col)`` of ``images[image_index]``.

    This is the one gather that every patch source (grid, SIFT keypoints, boxes,
    random positions) reduces to.  Windows must lie inside the image; each source
    decides beforehand how it treats borders.
    """
    imgs = as_image_array(images, channels_last)
    ii = np.asarray(image_index, dtype=np.int64).reshape(-1)
    tl = np.asarray(top_left, dtype=np.int64).reshape(-1, 2)
    if ii.shape[0] != tl.shape[0]:
        raise ValueError(f"{ii.shape[0]} image indices but {tl.shape[0]} positions")
    n_img, h_img, w_img, _ = imgs.shape
    size = int(size)
    if size < 1 or size > min(h_img, w_img):
        raise ValueError(f"patch size {size} does not fit images of size {h_img}x{w_img}; "
                         f"choose 1 <= size <= {min(h_img, w_img)}")
    if ii.size and (ii.min() < 0 or ii.max() >= n_img):
        raise ValueError(f"image_index out of range [0, {n_img}): min {ii.min()}, max {ii.max()}")
    if tl.size and (tl.min() < 0 or tl[:, 0].max() > h_img - size or tl[:, 1].max() > w_img - size):
        raise ValueError(f"a {size}x{size} window at some top_left falls outside the "
                         f"{h_img}x{w_img} image; clamp positions to [0, {h_img - size}]")
    offs = np.arange(size)
    rows = (tl[:, 0:1] + offs)[:, :, None]   # (n, size, 1)
    cols = (tl[:, 1:2] + offs)[:, None, :]   # (n, 1, size)
    cut = imgs[ii[:, None, None], rows, cols]  # (n, size, size, C)
    return PatchSet(np.ascontiguousarray(cut.transpose(0, 3, 1, 2)), ii, tl)


def as_rng(seed) -> np.random.Generator:
    """A numpy Generator from an int seed (or the Generator itself).

    ``None`` is refused on purpose: every random choice in the library is
    reproducible from an explicit seed.
    """
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None or isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int or a numpy.random.Generator, got {seed!r}")
    return np.random.default_rng(int(seed))
