"""Reader for the official CIFAR-10 / CIFAR-100 "python version" pickles.

The official files are Python-2 pickles of dicts whose ``data`` entry is an
``(N, 3072)`` uint8 array, each row the red, green and blue 32x32 planes in turn.
They are rearranged here to the library's channels-last ``(N, 32, 32, 3)``.

Pickles can run arbitrary code when loaded, and these come from the internet,
so they are read with an unpickler that only resolves the few numpy globals an
array needs; anything else raises :class:`CorruptDataError`.
"""
from __future__ import annotations

import io
import pickle

import numpy as np

from .archives import FileTable
from .decoded import Decoded, SplitArrays
from .errors import CorruptDataError, LayoutError

#: Top folder and member files of each official pickle layout.
PICKLE_LAYOUTS = {
    "cifar10": {
        "top": "cifar-10-batches-py",
        "train": [f"data_batch_{i}" for i in range(1, 6)],
        "test": ["test_batch"],
        "meta": "batches.meta",
    },
    "cifar100": {
        "top": "cifar-100-python",
        "train": ["train"],
        "test": ["test"],
        "meta": "meta",
    },
}

_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals needed to rebuild numpy arrays."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR pickle")
        if module.startswith("numpy.core."):  # numpy >= 2 moved numpy.core to numpy._core
            module = "numpy._core." + module.removeprefix("numpy.core.")
        return super().find_class(module, name)


def unpickle(data: bytes, where: str) -> dict[str, object]:
    """Load one official pickle into a dict with ``str`` keys (they are bytes in Python 2)."""
    try:
        obj = _ArrayOnlyUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as err:  # UnpicklingError, EOFError, ValueError, ... all mean "bad file"
        raise CorruptDataError(f"cannot unpickle {where}: {err}") from err
    if not isinstance(obj, dict):
        raise LayoutError(f"{where} holds a {type(obj).__name__}, a CIFAR pickle holds a dict")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _names(value: object) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in value]


def _require(entry: dict, key: str, where: str) -> object:
    if key not in entry:
        raise LayoutError(f"{where} has no {key!r} entry (keys: {sorted(entry)})")
    return entry[key]


def _read_batches(table: FileTable, top: str, files: list[str], fine_key: str, coarse: bool) -> SplitArrays:
    images, labels, coarse_labels = [], [], []
    for file in files:
        name = f"{top}/{file}"
        where = table.describe(name)
        entry = unpickle(table.read(name), where)
        data = np.asarray(_require(entry, "data", where), dtype=np.uint8)
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise LayoutError(f"{where}: 'data' has shape {data.shape}, expected (N, 3072)")
        batch_labels = np.asarray(_require(entry, fine_key, where), dtype=np.int64)
        if len(batch_labels) != len(data):
            raise LayoutError(f"{where}: {len(data)} images but {len(batch_labels)} labels")
        images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels.append(batch_labels)
        if coarse:
            coarse_labels.append(np.asarray(_require(entry, "coarse_labels", where), dtype=np.int64))
    return SplitArrays(
        images=np.ascontiguousarray(np.concatenate(images)),
        labels=np.concatenate(labels),
        coarse_labels=np.concatenate(coarse_labels) if coarse else None,
    )


def load_cifar_pickles(table: FileTable, name: str) -> Decoded:
    """Decode the official pickle layout of ``name`` (``cifar10`` or ``cifar100``) from ``table``."""
    layout = PICKLE_LAYOUTS[name]
    top = layout["top"]
    needed = [f"{top}/{f}" for f in layout["train"] + layout["test"] + [layout["meta"]]]
    missing = [n for n in needed if n not in set(table.names)]
    if missing:
        raise LayoutError(
            f"{table.location} is not a complete official {name} pickle set; missing {missing}"
        )
    meta_where = table.describe(f"{top}/{layout['meta']}")
    meta = unpickle(table.read(f"{top}/{layout['meta']}"), meta_where)
    if name == "cifar10":
        classes = _names(_require(meta, "label_names", meta_where))
        coarse_classes = None
        fine_key, coarse = "labels", False
    else:
        classes = _names(_require(meta, "fine_label_names", meta_where))
        coarse_classes = _names(_require(meta, "coarse_label_names", meta_where))
        fine_key, coarse = "fine_labels", True
    splits = {
        split: _read_batches(table, top, layout[split], fine_key, coarse) for split in ("train", "test")
    }
    return Decoded(splits=splits, classes=classes, coarse_classes=coarse_classes)
