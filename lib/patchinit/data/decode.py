"""Decode encoded image files (JPEG, WEBP, PNG, ...) into one uint8 array.

Decoding 60,000 small JPEGs dominates the first load of an image-folder dataset.
OpenCV releases the GIL inside ``cv2.imdecode``, so a small thread pool gives a
near-linear speed-up without the pickling cost of processes.  The result is
written straight into a preallocated ``(N, H, W, 3)`` array in RGB order.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
from tqdm import tqdm

from patchinit import bars

from .archives import FileTable
from .errors import CorruptDataError, LayoutError

logger = logging.getLogger(__name__)

_CHUNK = 512


def default_workers() -> int:
    """Threads used for decoding when the caller does not say: the cores, at most 4."""
    return max(1, min(4, os.cpu_count() or 1))


def decode_one(data: bytes, where: str) -> np.ndarray:
    """Decode one encoded image to an RGB ``(H, W, 3)`` uint8 array.

    Grayscale files come back with three equal channels (``IMREAD_COLOR``), which
    is what TinyImageNet's 2,178 grayscale JPEGs need.  ``where`` names the file or
    archive member in the error raised when OpenCV cannot decode the bytes.
    """
    try:
        bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as err:  # raised for empty buffers
        raise CorruptDataError(f"cannot decode image {where}: {err}") from err
    if bgr is None:
        raise CorruptDataError(
            f"cannot decode image {where} ({len(data)} bytes): the file is corrupt or not an image"
        )
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def decode_images(
    table: FileTable,
    names: Sequence[str],
    *,
    workers: int | None = None,
    desc: str = "decoding images",
) -> np.ndarray:
    """Decode ``names`` from ``table`` in order into an ``(N, H, W, 3)`` uint8 array.

    All images must have the size of the first one; a different size raises
    :class:`LayoutError` naming the member, since a stacked array needs one shape.
    """
    if not names:
        return np.zeros((0, 0, 0, 3), dtype=np.uint8)
    first = decode_one(table.read(names[0]), table.describe(names[0]))
    out = np.empty((len(names), *first.shape), dtype=np.uint8)
    out[0] = first

    def work(start: int) -> int:
        stop = min(start + _CHUNK, len(names))
        for i in range(max(start, 1), stop):
            where = table.describe(names[i])
            image = decode_one(table.read(names[i]), where)
            if image.shape != first.shape:
                raise LayoutError(
                    f"image {where} has shape {image.shape}, but {table.describe(names[0])} "
                    f"has {first.shape}; all images of a dataset must have one size"
                )
            out[i] = image
        return stop - start

    starts = range(0, len(names), _CHUNK)
    n_workers = workers or default_workers()
    with tqdm(total=len(names), desc=desc, unit="img", disable=bars.disable(None), leave=False) as bar:
        if n_workers == 1:
            for s in starts:
                bar.update(work(s))
        else:
            pool = ThreadPoolExecutor(max_workers=n_workers)
            try:
                for done in pool.map(work, starts):
                    bar.update(done)
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
    return out
