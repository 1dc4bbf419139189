"""Patches centred on SIFT keypoints (Lehmann & Ebner, CIFAR: 15x15x3).

Choices (the paper names none of them):

* Keypoints are detected with OpenCV's ``cv2.SIFT_create`` on the grey image
  (``cv2.COLOR_RGB2GRAY``; images are assumed RGB).  OpenCV's defaults
  (``contrastThreshold=0.04, edgeThreshold=10, nOctaveLayers=3, sigma=1.6``)
  are kept, and no extra upsampling (``upscale=1``): OpenCV already doubles the
  image for its first octave.  On 5,000 CIFAR-10 training images (the JPEG
  copy here) that gives 10.8 distinct 15x15 windows per 32x32 image and leaves
  0.08% of images with none (about 540k patches from 50k training images);
  ``upscale=2`` gives 24.9 per image and none empty, a lower
  ``contrast_threshold`` adds more weak keypoints.
* Border: the window is **clamped** inside the image, so a patch holds only real
  pixels; near a border its centre is shifted away from the keypoint by up to
  ``size // 2`` pixels.
* Duplicates: SIFT reports one keypoint per dominant orientation, so the same
  location often appears twice; identical windows of the same image are kept
  once (``unique=True``).
* ``max_keypoints`` keeps the strongest keypoints (largest ``response``) of each
  image, ties broken by OpenCV's order; the cap counts keypoints before
  duplicate windows are merged, so an image may give fewer patches.
* An image with no keypoint is skipped and its index returned, never an error.
"""
from __future__ import annotations

import logging

import cv2
import numpy as np
from tqdm import tqdm

from patchinit import bars
from patchinit.patches.base import PatchSet, as_image_array, cut_patches

log = logging.getLogger(__name__)


def make_sift(contrast_threshold: float = 0.04, edge_threshold: float = 10,
              n_octave_layers: int = 3, sigma: float = 1.6, n_features: int = 0):
    """An OpenCV SIFT detector with the given (OpenCV-default) parameters."""
    return cv2.SIFT_create(nfeatures=n_features, nOctaveLayers=n_octave_layers,
                           contrastThreshold=contrast_threshold,
                           edgeThreshold=edge_threshold, sigma=sigma)


def to_gray_uint8(image: np.ndarray) -> np.ndarray:
    """``(H, W, C)`` image as a contiguous grey uint8 array for OpenCV."""
    if image.dtype != np.uint8:
        raise ValueError(f"SIFT needs uint8 images, got dtype {image.dtype}")
    if image.shape[-1] == 1:
        return np.ascontiguousarray(image[..., 0])
    if image.shape[-1] == 3:
        return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    raise ValueError(f"SIFT needs 1- or 3-channel images, got {image.shape[-1]} channels")


def keypoint_centres(image: np.ndarray, detector, upscale: float = 1.0,
                     max_keypoints: int | None = None) -> np.ndarray:
    """``(k, 2)`` float ``(row, col)`` keypoint centres in original pixel coordinates."""
    gray = to_gray_uint8(image)
    if upscale != 1:
        gray = cv2.resize(gray, None, fx=upscale, fy=upscale, interpolation=cv2.INTER_LINEAR)
    kps = detector.detect(gray, None)
    if not kps:
        return np.zeros((0, 2), dtype=np.float64)
    if max_keypoints is not None and len(kps) > max_keypoints:
        order = np.argsort([-kp.response for kp in kps], kind="stable")[:max_keypoints]
        kps = [kps[i] for i in order]
    # OpenCV reports (x, y) with pixel centres at integer coordinates; undo the
    # upscaling so that the centre of pixel j maps back to j.
    xy = np.array([kp.pt for kp in kps], dtype=np.float64)
    xy = (xy + 0.5) / upscale - 0.5
    return xy[:, ::-1].copy()


def clamped_top_left(centres: np.ndarray, size: int, height: int, width: int) -> np.ndarray:
    """Top-left of a ``size`` window centred at each centre, clamped inside the image."""
    tl = np.rint(centres).astype(np.int64) - size // 2
    tl[:, 0] = np.clip(tl[:, 0], 0, height - size)
    tl[:, 1] = np.clip(tl[:, 1], 0, width - size)
    return tl


def sift_patches(images, size: int = 15, max_keypoints: int | None = None, *,
                 upscale: float = 1.0, contrast_threshold: float = 0.04,
                 edge_threshold: float = 10, n_octave_layers: int = 3, sigma: float = 1.6,
                 unique: bool = True, progress: bool | None = None) -> tuple[PatchSet, np.ndarray]:
    """``size x size`` patches around SIFT keypoints of every image.

    Returns the patch set (uint8, channels first, with ``image_index`` and the
    clamped top-left ``positions``) and the indices of images with no keypoint,
    which contribute nothing.  See the module docstring for the choices made.
    """
    imgs = as_image_array(images)
    n, h, w, _ = imgs.shape
    if size < 1 or size > min(h, w):
        raise ValueError(f"patch size {size} does not fit {h}x{w} images; choose 1 <= size <= {min(h, w)}")
    if max_keypoints is not None and max_keypoints < 1:
        raise ValueError(f"max_keypoints must be >= 1 or None, got {max_keypoints}")
    if upscale <= 0:
        raise ValueError(f"upscale must be > 0, got {upscale}")
    detector = make_sift(contrast_threshold, edge_threshold, n_octave_layers, sigma)
    index, corners, empty = [], [], []
    for i in tqdm(range(n), desc="SIFT keypoints", disable=bars.disable(progress), leave=False):
        centres = keypoint_centres(imgs[i], detector, upscale, max_keypoints)
        if centres.shape[0] == 0:
            empty.append(i)
            continue
        tl = clamped_top_left(centres, size, h, w)
        if unique:
            _, first = np.unique(tl, axis=0, return_index=True)
            tl = tl[np.sort(first)]
        index.append(np.full(tl.shape[0], i, dtype=np.int64))
        corners.append(tl)
    skipped = np.asarray(empty, dtype=np.int64)
    if skipped.size:
        log.info("SIFT: %d of %d images have no keypoint and are skipped", skipped.size, n)
    if not index:
        c = imgs.shape[-1]
        return PatchSet(np.zeros((0, c, size, size), imgs.dtype), np.zeros(0, np.int64),
                        np.zeros((0, 2), np.int64)), skipped
    return cut_patches(imgs, np.concatenate(index), np.concatenate(corners), size), skipped
