"""Patches sampled inside selective-search boxes (PatchesInit's first layer).

The thesis (§4.2.1, §5.2) runs OpenCV's selective search (Uijlings et al. 2013) to
get "bounding boxes that represent possible object locations", "filter[s] out
bounding boxes covering more than 50% of the image" and "randomly sample[s] 50
patches from each input data point without replacement", each patch the size of
the filter.  Here:

* :func:`selective_search_boxes` runs ``cv2.ximgproc`` selective search in fast
  mode on one image (given RGB, passed to OpenCV as BGR) and drops the boxes whose
  area exceeds ``max_fraction`` of the image.  Boxes are OpenCV's ``(x, y, w, h)``:
  column, row, width, height.
* :func:`selective_search_many` does that for many images on a thread pool.  The
  OpenCV call releases the GIL, so threads scale like processes without pickling
  images; OpenCV's own thread pool is set to 1 for the duration (and restored), so
  the two levels of parallelism do not fight over the cores.
* :func:`box_positions` marks every top-left position whose ``size x size`` window
  lies wholly inside at least one kept box; :func:`sample_box_patches` draws
  ``per_image`` of those positions per image *without replacement* (uniform over
  the union of the boxes' windows, so a pixel covered by several boxes is not
  favoured) and cuts the patches.

Images with too few positions: an image whose kept boxes offer fewer than
``per_image`` windows (no box left after the 50% filter, or only boxes smaller
than the filter) is sampled from the whole image instead, as if the image itself
were the one box.  :class:`BoxSampling` counts these images so a record can report
them.
"""
from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import cv2
import numpy as np
from tqdm import tqdm

from patchinit import bars
from patchinit.patches.base import PatchSet, as_image_array, as_rng, cut_patches

log = logging.getLogger(__name__)

__all__ = ["selective_search_boxes", "selective_search_many", "box_positions",
           "sample_box_patches", "BoxSampling", "default_workers"]


def _check_fraction(max_fraction: float) -> float:
    value = float(max_fraction)
    if not 0.0 < value <= 1.0:
        raise ValueError(f"max_fraction must be in (0, 1] (largest box area / image area), got {max_fraction!r}")
    return value


def selective_search_boxes(image: np.ndarray, max_fraction: float = 0.5, fast: bool = True) -> np.ndarray:
    """Selective-search boxes ``(m, 4)`` int64 ``(x, y, w, h)`` of one ``(H, W, C)`` uint8 RGB image.

    Boxes covering more than ``max_fraction`` of the image area are dropped (the
    thesis keeps object-sized proposals, not the whole frame).  ``fast`` selects
    ``switchToSelectiveSearchFast`` (the thesis's mode); otherwise quality mode.
    """
    max_fraction = _check_fraction(max_fraction)
    img = np.asarray(image)
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3 or img.shape[2] not in (1, 3) or img.dtype != np.uint8:
        raise ValueError(f"image must be uint8 (H, W, 1 or 3), got {img.dtype} {img.shape}")
    bgr = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR) if img.shape[2] == 1 else np.ascontiguousarray(img[..., ::-1])
    ss = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
    ss.setBaseImage(bgr)
    if fast:
        ss.switchToSelectiveSearchFast()
    else:
        ss.switchToSelectiveSearchQuality()
    rects = np.asarray(ss.process(), dtype=np.int64).reshape(-1, 4)
    # OpenCV returns the boxes in a randomly perturbed rank order (cv::RNG state,
    # thread-dependent); the set is deterministic, so sort it for reproducibility.
    rects = np.unique(rects, axis=0)
    area = rects[:, 2] * rects[:, 3]
    return rects[area <= max_fraction * img.shape[0] * img.shape[1]]


def default_workers() -> int:
    """Cores this process may use (affinity-aware where the OS tells)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


@contextmanager
def _opencv_threads(n: int):
    old = cv2.getNumThreads()
    cv2.setNumThreads(n)
    try:
        yield
    finally:
        cv2.setNumThreads(old)


def selective_search_many(images, indices=None, max_fraction: float = 0.5, workers: int | None = None,
                          fast: bool = True, progress: bool | None = None) -> list[np.ndarray]:
    """Kept boxes of ``images[i]`` for each ``i`` in ``indices`` (all images if None).

    Runs only on the images asked for (selective search is the costly step), on
    ``workers`` threads (default: the usable cores).  Returns one ``(m_i, 4)``
    array per index, in the order of ``indices``.
    """
    imgs = as_image_array(images)
    idx = np.arange(imgs.shape[0]) if indices is None else np.asarray(indices, dtype=np.int64).reshape(-1)
    _check_fraction(max_fraction)
    workers = default_workers() if workers is None else int(workers)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")

    def one(i):
        return selective_search_boxes(imgs[i], max_fraction, fast)

    bar = tqdm(total=len(idx), desc="selective search", unit="img", disable=bars.disable(progress), leave=False)
    out: list[np.ndarray] = []
    with _opencv_threads(1):
        if workers == 1:
            for i in idx:
                out.append(one(i))
                bar.update()
        else:
            with ThreadPoolExecutor(workers) as pool:
                for boxes in pool.map(one, idx):
                    out.append(boxes)
                    bar.update()
    bar.close()
    return out


def box_positions(boxes: np.ndarray, image_hw: tuple[int, int], size: int) -> np.ndarray:
    """Boolean ``(H - size + 1, W - size + 1)`` map of top-left positions whose
    ``size x size`` window lies inside at least one of ``boxes`` ``(x, y, w, h)``."""
    h_img, w_img = image_hw
    valid = np.zeros((h_img - size + 1, w_img - size + 1), dtype=bool)
    for x, y, w, h in np.asarray(boxes, dtype=np.int64).reshape(-1, 4):
        x0, y0 = max(int(x), 0), max(int(y), 0)
        x1, y1 = min(int(x + w), w_img), min(int(y + h), h_img)  # exclusive ends, clipped
        if x1 - x0 >= size and y1 - y0 >= size:
            valid[y0:y1 - size + 1, x0:x1 - size + 1] = True
    return valid


@dataclass(frozen=True)
class BoxSampling:
    """Box patches plus how the sampling went (for the PatchesInit record)."""

    patchset: PatchSet
    n_images: int
    n_whole_image: int  # images with fewer than per_image windows in their boxes
    mean_boxes: float   # mean number of kept boxes per image


def sample_box_patches(images, image_indices, boxes: list[np.ndarray], size: int, per_image: int,
                       seed) -> BoxSampling:
    """Cut ``per_image`` distinct ``size x size`` patches inside the boxes of each image.

    ``boxes[j]`` belongs to ``images[image_indices[j]]``.  Positions are drawn
    without replacement from :func:`box_positions`; an image with fewer than
    ``per_image`` such positions is sampled from the whole image (see the module
    docstring).  ``seed`` is an int or a ``numpy.random.Generator``.
    """
    imgs = as_image_array(images)
    idx = np.asarray(image_indices, dtype=np.int64).reshape(-1)
    if len(boxes) != idx.size:
        raise ValueError(f"got {len(boxes)} box arrays for {idx.size} images; pass one per image")
    h_img, w_img = imgs.shape[1:3]
    n_pos = (h_img - size + 1) * (w_img - size + 1)
    if not 1 <= size <= min(h_img, w_img):
        raise ValueError(f"patch size {size} does not fit {h_img}x{w_img} images")
    if not 1 <= per_image <= n_pos:
        raise ValueError(f"per_image={per_image} patches without replacement do not fit: a "
                         f"{h_img}x{w_img} image has only {n_pos} windows of size {size}")
    rng = as_rng(seed)
    top_left = np.empty((idx.size, per_image, 2), dtype=np.int64)
    n_whole = 0
    for j, b in enumerate(boxes):
        flat = np.flatnonzero(box_positions(b, (h_img, w_img), size))
        if flat.size < per_image:
            flat = np.arange(n_pos)
            n_whole += 1
        pick = rng.choice(flat, size=per_image, replace=False)
        top_left[j, :, 0], top_left[j, :, 1] = np.divmod(pick, w_img - size + 1)
    if n_whole:
        log.info("%d of %d images had fewer than %d %dx%d windows inside their boxes; "
                 "sampled those from the whole image", n_whole, idx.size, per_image, size, size)
    patchset = cut_patches(imgs, np.repeat(idx, per_image), top_left.reshape(-1, 2), size)
    mean_boxes = float(np.mean([len(b) for b in boxes])) if boxes else 0.0
    return BoxSampling(patchset, int(idx.size), n_whole, mean_boxes)
