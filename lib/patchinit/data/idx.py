"""Reader for the IDX format of the MNIST files (gzipped or raw).

IDX header: two zero bytes, a type code, the number of dimensions, then one
big-endian uint32 per dimension, then the data.  MNIST images are type 0x08
(unsigned byte) with 3 dims (magic 0x00000803), labels 0x08 with 1 dim
(0x00000801).  The header is validated against the data length, so a truncated
file is reported rather than silently reshaped.
"""
from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from .decoded import Decoded, SplitArrays
from .errors import CorruptDataError, LayoutError

_IDX_TYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

#: The four official MNIST files, without the ``.gz`` ending.
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_bytes(path: Path) -> bytes:
    """File contents, transparently gunzipped when the file starts with the gzip magic."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(2)
        if head == b"\x1f\x8b":
            with gzip.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()
    except (EOFError, zlib.error, gzip.BadGzipFile, OSError) as err:
        raise CorruptDataError(
            f"{path} is truncated or corrupt ({err}); download the file again"
        ) from err


def parse_idx(data: bytes, where: str, *, expected_ndim: int | None = None) -> np.ndarray:
    """Parse IDX bytes into an array; ``where`` names the file in errors."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_TYPES:
        magic = data[:4].hex() if len(data) >= 4 else repr(data)
        raise LayoutError(
            f"{where} is not an IDX file: magic 0x{magic}, expected 0x0000TTDD "
            "(TT a type code such as 08 for unsigned bytes, DD the number of dims)"
        )
    dtype, ndim = _IDX_TYPES[data[2]], data[3]
    if expected_ndim is not None and ndim != expected_ndim:
        raise LayoutError(
            f"{where} has magic 0x{data[:4].hex()} ({ndim} dims) but {expected_ndim} dims "
            f"(magic 0x000008{expected_ndim:02x}) were expected; are image and label files swapped?"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise CorruptDataError(f"{where} is truncated inside its IDX header")
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    found = len(data) - header
    if found != expected:
        raise CorruptDataError(
            f"{where}: header declares dims {dims} ({expected} data bytes) but the file has "
            f"{found}; the file is truncated or corrupt"
        )
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def read_idx(path: Path, *, expected_ndim: int | None = None) -> np.ndarray:
    """Read one IDX file (gzipped or raw) and validate its header."""
    return parse_idx(read_bytes(path), str(path), expected_ndim=expected_ndim)


def load_mnist(files: dict[str, tuple[Path, Path]]) -> Decoded:
    """Decode MNIST from ``{split: (images_path, labels_path)}``.

    Images come back as ``(N, 28, 28, 1)``: a channel axis is added so every
    dataset has the same channels-last layout.
    """
    splits = {}
    for split, (image_path, label_path) in files.items():
        images = read_idx(image_path, expected_ndim=3)
        labels = read_idx(label_path, expected_ndim=1)
        if images.dtype != np.uint8 or labels.dtype != np.uint8:
            raise LayoutError(f"{image_path} / {label_path}: MNIST files must hold unsigned bytes")
        if len(images) != len(labels):
            raise LayoutError(
                f"{image_path} has {len(images)} images but {label_path} has {len(labels)} labels"
            )
        if labels.size and labels.max() > 9:
            raise LayoutError(f"{label_path} has label {labels.max()}, MNIST labels are 0..9")
        splits[split] = SplitArrays(np.ascontiguousarray(images[..., None]), labels)
    return Decoded(splits=splits, classes=[str(d) for d in range(10)])
