"""Reader for the official TinyImageNet-200 layout.

``tiny-imagenet-200/`` holds ``wnids.txt`` (the 200 WordNet ids; their order is
the class index), ``words.txt`` (id -> comma-separated names), training images in
``train/<wnid>/images/*.JPEG`` and validation images in ``val/images/*.JPEG``
labelled by ``val/val_annotations.txt``.  The official ``test/`` folder has no
labels and is ignored; the library's ``"test"`` split is the validation set.

Class names are the first name of each id in ``words.txt`` (``n01443537`` ->
``goldfish``); the ids stay available as :attr:`Decoded.wnids`.  Train images are
ordered by class index then natural file order (``_0, _1, ..., _10``); validation
images by natural file order (``val_0 .. val_9999``), the order of the
annotation file.  Grayscale JPEGs are converted to RGB while decoding.
"""
from __future__ import annotations

import numpy as np

from .archives import FileTable, is_image_name, natural_key, under
from .decode import decode_images
from .decoded import Decoded, SplitArrays
from .errors import LayoutError

TOP = "tiny-imagenet-200"


def keep_member(name: str) -> bool:
    """Archive members the reader needs (skips ``test/`` and the bounding boxes)."""
    if not name.startswith(TOP + "/"):
        return False
    rest = name[len(TOP) + 1 :]
    if rest in ("wnids.txt", "words.txt", "val/val_annotations.txt"):
        return True
    return (rest.startswith("train/") or rest.startswith("val/")) and is_image_name(name)


def _text(table: FileTable, name: str) -> str:
    if name not in set(table.names):
        raise LayoutError(f"{table.location} has no {name}; it is not the tiny-imagenet-200 layout")
    return table.read(name).decode("utf-8", errors="replace")


def _class_names(table: FileTable, wnids: list[str]) -> list[str]:
    words = {}
    if f"{TOP}/words.txt" in set(table.names):
        for line in _text(table, f"{TOP}/words.txt").splitlines():
            if "\t" in line:
                wnid, text = line.split("\t", 1)
                words[wnid.strip()] = text.split(",")[0].strip()
    names = [words.get(w, w) for w in wnids]
    return names if len(set(names)) == len(names) else list(wnids)


def _train_names(table: FileTable, index: dict[str, int]) -> list[tuple[int, str]]:
    items = []
    for name in under(table.names, f"{TOP}/train"):
        parts = name.split("/")
        if not is_image_name(name) or len(parts) != 5 or parts[3] != "images":
            continue
        if parts[2] not in index:
            raise LayoutError(f"{table.describe(name)}: class folder {parts[2]!r} is not in wnids.txt")
        items.append((index[parts[2]], name))
    if not items:
        raise LayoutError(f"{table.location}: no images in {TOP}/train/<wnid>/images/")
    return sorted(items, key=lambda item: (item[0], natural_key(item[1])))


def _val_names(table: FileTable, index: dict[str, int]) -> list[tuple[int, str]]:
    labels = {}
    for line in _text(table, f"{TOP}/val/val_annotations.txt").splitlines():
        fields = line.split("\t")
        if len(fields) >= 2:
            labels[fields[0].strip()] = fields[1].strip()
    items = []
    for name in under(table.names, f"{TOP}/val/images"):
        if not is_image_name(name):
            continue
        file = name.rsplit("/", 1)[-1]
        wnid = labels.get(file)
        if wnid is None or wnid not in index:
            raise LayoutError(
                f"{table.describe(name)} has no valid label in val/val_annotations.txt (found {wnid!r})"
            )
        items.append((index[wnid], name))
    if not items:
        raise LayoutError(f"{table.location}: no images in {TOP}/val/images/")
    return sorted(items, key=lambda item: natural_key(item[1]))


def load_tinyimagenet(table: FileTable, *, workers: int | None = None) -> Decoded:
    """Decode train and validation (as ``"test"``) of TinyImageNet-200 from ``table``."""
    wnids = [w.strip() for w in _text(table, f"{TOP}/wnids.txt").splitlines() if w.strip()]
    if len(set(wnids)) != len(wnids):
        raise LayoutError(f"{table.location}: wnids.txt lists an id twice")
    index = {w: i for i, w in enumerate(wnids)}
    splits = {}
    for split, items in (("train", _train_names(table, index)), ("test", _val_names(table, index))):
        names = [n for _, n in items]
        images = decode_images(table, names, workers=workers, desc=f"tinyimagenet {split}")
        splits[split] = SplitArrays(images, np.array([label for label, _ in items], dtype=np.int64))
    return Decoded(splits=splits, classes=_class_names(table, wnids), wnids=wnids)
