"""Reader for image-folder trees: ``<top>/<split>/<class>/<image>``.

This is torchvision's ``ImageFolder`` layout, used by the local CIFAR copies
(``cifar10/{train,test}/<class>/NNNN.jpg``, ``cifar100/.../NNNN.webp``) and by
anyone with their own images.

Class index:
1. the order of ``fine_label_names`` in ``<top>/meta.json`` when that file exists
   (CIFAR-100: the official, alphabetical order; it also gives coarse labels);
2. else, when the folders are exactly the ten CIFAR-10 classes, the official
   CIFAR-10 order (airplane, automobile, ..., truck), which is *not* alphabetical;
3. else the sorted folder names of both splits together.

Image order within a split: by class index, then by file name in natural order
(``2.jpg`` before ``10.jpg``), so every load yields the same arrays.
"""
from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np

from .archives import FileTable, is_image_name, natural_key, under
from .decode import decode_images
from .decoded import Decoded, SplitArrays
from .errors import CorruptDataError, LayoutError

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)

#: Split folder names, in order of preference, for the library's two splits.
SPLIT_FOLDERS = {"train": ("train",), "test": ("test", "val")}


def _split_folder(names: Sequence[str], top: str) -> dict[str, str]:
    present = {n[len(top) + 1 :].split("/", 1)[0] for n in under(names, top)}
    chosen = {}
    for split, options in SPLIT_FOLDERS.items():
        folder = next((o for o in options if o in present), None)
        if folder is None:
            raise LayoutError(
                f"image tree {top!r} has no {'/'.join(options)} folder "
                f"(found {sorted(present)}); expected {top}/{{train,test}}/<class>/<image>"
            )
        chosen[split] = folder
    return chosen


def _images_by_class(names: Sequence[str], top: str, folder: str, where: str) -> dict[str, list[str]]:
    prefix = f"{top}/{folder}"
    by_class: dict[str, list[str]] = {}
    loose = []
    for name in under(names, prefix):
        if not is_image_name(name):
            continue
        rest = name[len(prefix) + 1 :].split("/")
        if len(rest) < 2:
            loose.append(name)
            continue
        by_class.setdefault(rest[0], []).append(name)
    if not by_class:
        detail = f"; it has {len(loose)} images directly inside it" if loose else ""
        raise LayoutError(
            f"{where}/{folder} has no class folders{detail}: "
            f"expected {prefix}/<class>/<image>"
        )
    return by_class


def _read_meta(table: FileTable, top: str) -> dict | None:
    name = f"{top}/meta.json"
    if name not in set(table.names):
        return None
    try:
        return json.loads(table.read(name))
    except (ValueError, UnicodeDecodeError) as err:
        raise CorruptDataError(f"{table.describe(name)} is not valid JSON: {err}") from err


def class_order(folders: set[str], meta: dict | None, where: str) -> list[str]:
    """Class names in label order (see the module docstring for the rule)."""
    if meta is not None and "fine_label_names" in meta:
        classes = [str(c) for c in meta["fine_label_names"]]
        unknown = sorted(folders - set(classes))
        if unknown:
            raise LayoutError(f"{where}: class folders {unknown} are not in meta.json fine_label_names")
        return classes
    if folders == set(CIFAR10_CLASSES):
        return list(CIFAR10_CLASSES)
    return sorted(folders)


def _coarse_map(meta: dict, classes: list[str], where: str) -> tuple[list[str], np.ndarray] | None:
    if "coarse_label_names" not in meta or "fine_to_coarse" not in meta:
        return None
    coarse_classes = [str(c) for c in meta["coarse_label_names"]]
    mapping = meta["fine_to_coarse"]
    table = np.empty(len(classes), dtype=np.int64)
    for i, fine in enumerate(classes):
        value = mapping.get(fine) if isinstance(mapping, dict) else mapping[i]
        if isinstance(value, str):
            if value not in coarse_classes:
                raise LayoutError(f"{where}: meta.json maps {fine!r} to unknown coarse class {value!r}")
            value = coarse_classes.index(value)
        if value is None or not 0 <= int(value) < len(coarse_classes):
            raise LayoutError(f"{where}: meta.json fine_to_coarse has no valid entry for {fine!r}")
        table[i] = int(value)
    return coarse_classes, table


def load_image_tree(table: FileTable, top: str, *, workers: int | None = None) -> Decoded:
    """Decode both splits of the tree ``<top>/<split>/<class>/<image>`` in ``table``."""
    where = str(table.location)
    folders = _split_folder(table.names, top)
    per_split = {s: _images_by_class(table.names, top, f, where) for s, f in folders.items()}
    meta = _read_meta(table, top)
    classes = class_order(set().union(*per_split.values()), meta, where)
    index = {c: i for i, c in enumerate(classes)}
    coarse = _coarse_map(meta, classes, where) if meta else None

    splits = {}
    for split, by_class in per_split.items():
        ordered = sorted(
            ((index[c], natural_key(n), n) for c, files in by_class.items() for n in files)
        )
        names = [n for _, _, n in ordered]
        labels = np.array([label for label, _, _ in ordered], dtype=np.int64)
        images = decode_images(table, names, workers=workers, desc=f"{top} {split}")
        splits[split] = SplitArrays(images, labels, coarse[1][labels] if coarse else None)
    return Decoded(
        splits=splits, classes=classes, coarse_classes=coarse[0] if coarse else None
    )
