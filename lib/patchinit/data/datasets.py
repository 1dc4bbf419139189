"""``load_dataset``: one call from a dataset name to decoded, validated arrays.

The work is split across small modules: :mod:`.sources` finds the copy under the
data root, :mod:`.idx`, :mod:`.cifar_pickle`, :mod:`.imagefolder` and
:mod:`.tinyimagenet` decode it, :mod:`.cache` stores the decoded arrays, and
:mod:`.download` fetches official archives.  This module ties them together,
checks the result against the known sizes, and computes the normalisation
statistics.

Data root: the ``root`` argument, else ``$PATCHINIT_DATA``, else ``./data``.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .cache import ArrayCache, resolve_cache_dir
from .cifar_pickle import load_cifar_pickles
from .decoded import Decoded, SplitArrays
from .download import DOWNLOADS
from .download import download as fetch
from .errors import CountMismatchError, DatasetError, DatasetNotFoundError, LayoutError
from .idx import load_mnist
from .imagefolder import load_image_tree
from .sources import DATASETS, Source, find_source
from .tinyimagenet import load_tinyimagenet

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Expected:
    """Known size of a dataset: images per split, image shape, classes, images per class."""

    train: int
    test: int
    shape: tuple[int, int, int]
    num_classes: int
    per_class: dict[str, int] | None = None


KNOWN: dict[str, Expected] = {
    "mnist": Expected(60000, 10000, (28, 28, 1), 10),
    "cifar10": Expected(50000, 10000, (32, 32, 3), 10, {"train": 5000, "test": 1000}),
    "cifar100": Expected(50000, 10000, (32, 32, 3), 100, {"train": 500, "test": 100}),
    "tinyimagenet": Expected(100000, 10000, (64, 64, 3), 200, {"train": 500, "test": 50}),
}

#: The documented TinyImageNet subset: the first 100 training images of every class.
TINYIMAGENET_SUBSET_PER_CLASS = 100

_VAL_ALIASES = ("val", "valid", "validation")


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """One split of a dataset, decoded.

    Layout: ``images`` is uint8 ``(N, H, W, C)``, channels last, RGB order for
    colour images (MNIST has ``C == 1``); ``labels`` is int64 ``(N,)`` with
    ``classes[label]`` the class name.  ``mean`` and ``std`` are per-channel, in
    [0, 1] pixel units (value / 255), computed over **all pixels of the train split
    of this same source**, also when ``split == "test"``, because they are the
    normalisation constants; ``std`` is the population standard deviation.

    ``source`` is the folder or archive that was read and ``checksum`` its
    fingerprint (``sha256:``, ``sha256-files:`` or ``tree:``; see
    :mod:`patchinit.data.fingerprint`).  CIFAR-100 also has ``coarse_labels`` and
    ``coarse_classes`` (20 superclasses); TinyImageNet has ``wnids`` (WordNet ids,
    in class order; ``classes`` holds their first English name).  ``is_subset`` is
    True for the documented 100-images-per-class TinyImageNet training subset.
    """

    name: str
    split: str
    images: np.ndarray
    labels: np.ndarray
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str
    checksum: str
    coarse_labels: np.ndarray | None = None
    coarse_classes: list[str] | None = None
    wnids: list[str] | None = None
    is_subset: bool = False

    @property
    def num_classes(self) -> int:
        """Number of (fine) classes, ``len(classes)``."""
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(H, W, C)`` of every image."""
        return tuple(self.images.shape[1:])

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        return (f"Dataset(name={self.name!r}, split={self.split!r}, n={len(self)}, "
                f"image_shape={self.image_shape}, num_classes={self.num_classes}, "
                f"source={self.source!r})")


def resolve_root(root: str | os.PathLike | None = None) -> Path:
    """The data root: ``root``, else ``$PATCHINIT_DATA``, else ``./data``."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("PATCHINIT_DATA")
    return Path(env).expanduser() if env else Path("data")


def canonical_name(name: str) -> str:
    """``"CIFAR-10"`` -> ``"cifar10"``, ``"tiny-imagenet-200"`` -> ``"tinyimagenet"``."""
    key = str(name).lower().replace("-", "").replace("_", "")
    key = {"tinyimagenet200": "tinyimagenet"}.get(key, key)
    if key not in DATASETS:
        raise DatasetError(f"unknown dataset name={name!r}; choose one of {list(DATASETS)}")
    return key


def canonical_split(name: str, split: str) -> str:
    """``"train"`` or ``"test"``; TinyImageNet also accepts ``"val"`` for its validation set."""
    key = str(split).lower()
    if key in _VAL_ALIASES and name == "tinyimagenet":
        return "test"
    if key not in ("train", "test"):
        hint = " (TinyImageNet's 'val' is only for name='tinyimagenet')" if key in _VAL_ALIASES else ""
        raise DatasetError(f"unknown split={split!r} for {name}; use 'train' or 'test'{hint}")
    return key


def channel_stats(images: np.ndarray, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and population std of uint8 ``(N, H, W, C)`` images, in [0, 1] units.

    Sums are exact integers accumulated chunk by chunk, so the result does not
    depend on float rounding or on how the array is split, and memory stays small.
    """
    channels = images.shape[-1]
    total = np.zeros(channels, dtype=np.uint64)
    squares = np.zeros(channels, dtype=np.uint64)
    for start in range(0, len(images), chunk):
        block = np.asarray(images[start : start + chunk]).reshape(-1, channels)
        total += block.sum(axis=0, dtype=np.uint64)
        wide = block.astype(np.uint32)
        squares += (wide * wide).sum(axis=0, dtype=np.uint64)
    count = images.size // channels
    if count == 0:
        raise LayoutError("cannot compute normalisation statistics of an empty train split")
    mean = [int(s) / count / 255.0 for s in total]
    var = [max(int(q) / count / 255.0**2 - m * m, 0.0) for q, m in zip(squares, mean)]
    return tuple(mean), tuple(float(np.sqrt(v)) for v in var)


def decode_source(source: Source, *, workers: int | None = None) -> Decoded:
    """Decode every split of ``source`` with the reader its format needs."""
    if source.kind == "idx":
        return load_mnist(source.files)
    table = source.table()
    if source.kind == "cifar-pickle":
        return load_cifar_pickles(table, source.name)
    if source.kind == "image-tree":
        return load_image_tree(table, source.top, workers=workers)
    if source.kind == "tinyimagenet":
        return load_tinyimagenet(table, workers=workers)
    raise DatasetError(f"no reader for source kind {source.kind!r}")  # unreachable for found sources


def _check_labels(name: str, split: str, arrays: SplitArrays, num_classes: int,
                  num_coarse: int | None, where: str) -> None:
    """Invariants every split must satisfy, strict or not."""
    images, labels = arrays.images, arrays.labels
    if images.ndim != 4 or images.dtype != np.uint8 or len(images) != len(labels):
        raise LayoutError(f"{name} {split} from {where}: images {images.shape} {images.dtype} "
                          f"do not match labels {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise LayoutError(f"{name} {split} from {where}: labels span {labels.min()}..{labels.max()} "
                          f"but there are {num_classes} classes")
    coarse = arrays.coarse_labels
    if coarse is not None and len(coarse) and (
            num_coarse is None or coarse.min() < 0 or coarse.max() >= num_coarse):
        raise LayoutError(f"{name} {split} from {where}: coarse labels outside 0..{num_coarse}")


def check_counts(name: str, split: str, arrays: SplitArrays, num_classes: int, where: str) -> bool:
    """Compare a split with the known dataset size; returns True for the documented subset.

    Raises :class:`CountMismatchError` naming expected and found values.  The one
    accepted deviation is TinyImageNet's train split with exactly
    :data:`TINYIMAGENET_SUBSET_PER_CLASS` images in every class (the subset shipped
    for CI); anything else smaller needs ``strict=False``.
    """
    known = KNOWN[name]
    hint = "If this copy is deliberately smaller or different (a subset, a toy tree), pass strict=False."
    if num_classes != known.num_classes:
        raise CountMismatchError(f"{name} from {where}: expected {known.num_classes} classes, "
                                 f"found {num_classes}. {hint}")
    if arrays.images.shape[1:] != known.shape:
        raise CountMismatchError(f"{name} {split} from {where}: expected images of shape {known.shape}, "
                                 f"found {arrays.images.shape[1:]}. {hint}")
    counts = np.bincount(arrays.labels, minlength=num_classes)
    if (name == "tinyimagenet" and split == "train"
            and np.all(counts == TINYIMAGENET_SUBSET_PER_CLASS)):
        logger.info("tinyimagenet train from %s is the documented subset: %d images per class, %d in all",
                    where, TINYIMAGENET_SUBSET_PER_CLASS, counts.sum())
        return True
    expected = getattr(known, split)
    if len(arrays.labels) != expected:
        raise CountMismatchError(f"{name} {split} from {where}: expected {expected} images, "
                                 f"found {len(arrays.labels)}. {hint}")
    if known.per_class is not None:
        wrong = np.flatnonzero(counts != known.per_class[split])
        if wrong.size:
            raise CountMismatchError(f"{name} {split} from {where}: expected {known.per_class[split]} images "
                                     f"per class, class {int(wrong[0])} has {int(counts[wrong[0]])}. {hint}")
    return False


def _not_found_message(name: str, root: Path, root_arg: object, searched: list[str]) -> str:
    origin = ("the root= argument" if root_arg is not None
              else "$PATCHINIT_DATA" if os.environ.get("PATCHINIT_DATA") else "the default ./data")
    files = ", ".join(f.filename for f in DOWNLOADS[name].files)
    lines = "\n".join(f"  - {s}" for s in searched)
    return (f"dataset {name!r} not found under data root {root} (from {origin}). Searched:\n{lines}\n"
            f"To get it: call load_dataset({name!r}, ..., download=True) to fetch the official "
            f"{files}, or set PATCHINIT_DATA (or pass root=) to a folder holding one of the above.")


def load_dataset(
    name: str,
    split: str,
    root: str | os.PathLike | None = None,
    download: bool = False,
    *,
    strict: bool = True,
    cache_dir: str | os.PathLike | None = None,
    mmap: bool = False,
    workers: int | None = None,
    base_url: str | None = None,
) -> Dataset:
    """Load one split of ``mnist``, ``cifar10``, ``cifar100`` or ``tinyimagenet``.

    Finds the dataset under the data root (``root``, else ``$PATCHINIT_DATA``,
    else ``./data``) in any supported form: official files (MNIST IDX, CIFAR
    pickles or tarballs, TinyImageNet folder or zip), image-folder trees, or
    ``.tar.gz`` archives of those.  The first load decodes every split and caches
    the arrays (see :mod:`patchinit.data.cache`); later loads read the cache.

    Parameters
    ----------
    split:
        ``"train"`` or ``"test"`` (TinyImageNet: ``"val"`` is an alias of ``"test"``).
    download:
        Fetch the official archive into the root when no copy is found.
    strict:
        Check image counts, shape, classes (and per-class counts where balanced)
        against the known sizes.  The TinyImageNet 100-per-class train subset is
        accepted and flagged ``is_subset``.  Use ``strict=False`` for toy data.
    cache_dir:
        Overrides ``$PATCHINIT_CACHE`` and the default cache folder.
    mmap:
        On a cache hit, memory-map the arrays read-only instead of reading them.
    workers:
        Decoding threads (default: cores, at most 4).
    base_url:
        Replaces the official download mirrors (for a local mirror or a test server).

    Raises
    ------
    DatasetNotFoundError, CorruptDataError, LayoutError, CountMismatchError,
    DownloadError, ChecksumError (all :class:`DatasetError`).
    """
    name = canonical_name(name)
    split = canonical_split(name, split)
    root_path = resolve_root(root)
    search = find_source(name, root_path)
    if search.source is None:
        if not download:
            raise DatasetNotFoundError(_not_found_message(name, root_path, root, search.searched))
        fetch(name, root_path, base_url=base_url)
        search = find_source(name, root_path)
        if search.source is None:
            raise DatasetError(f"downloaded {name} into {root_path}, but it is still not found there")
    source = search.source
    checksum = source.checksum()
    where = str(source.location)
    cache = ArrayCache(resolve_cache_dir(root_path, cache_dir))

    meta = cache.load_meta(name, checksum)
    arrays = cache.load_split(name, checksum, split, meta, mmap=mmap) if meta else None
    if arrays is None:
        logger.info("decoding %s from %s (first load; the arrays will be cached in %s)",
                    name, where, cache.directory)
        decoded = decode_source(source, workers=workers)
        mean, std = channel_stats(decoded.splits["train"].images)
        meta = {"mean": mean, "std": std, "source": where,
                "classes": decoded.classes, "coarse_classes": decoded.coarse_classes,
                "wnids": decoded.wnids}
        for s, a in decoded.splits.items():
            _check_labels(name, s, a, len(decoded.classes),
                          len(decoded.coarse_classes) if decoded.coarse_classes else None, where)
        cache.store(name, checksum, decoded, meta)
        arrays = decoded.splits[split]
    classes = list(meta["classes"])
    coarse_classes = list(meta["coarse_classes"]) if meta.get("coarse_classes") else None
    _check_labels(name, split, arrays, len(classes), len(coarse_classes) if coarse_classes else None, where)
    is_subset = check_counts(name, split, arrays, len(classes), where) if strict else False
    return Dataset(
        name=name,
        split=split,
        images=arrays.images,
        labels=arrays.labels,
        classes=classes,
        mean=tuple(float(m) for m in meta["mean"]),
        std=tuple(float(s) for s in meta["std"]),
        source=where,
        checksum=checksum,
        coarse_labels=arrays.coarse_labels,
        coarse_classes=coarse_classes,
        wnids=list(meta["wnids"]) if meta.get("wnids") else None,
        is_subset=is_subset,
    )
