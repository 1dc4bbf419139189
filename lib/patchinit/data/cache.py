"""On-disk cache of decoded dataset arrays.

Decoding 60,000 JPEGs takes tens of seconds; loading the same arrays from
``.npy`` files takes a fraction of a second.  One cache entry holds every split
of one source:

    <cache>/<name>-<key>.<split>.images.npy
    <cache>/<name>-<key>.<split>.labels.npy
    <cache>/<name>-<key>.<split>.coarse_labels.npy   (CIFAR-100 only)
    <cache>/<name>-<key>.meta.json                   (classes, stats, counts)

``<key>`` is derived from the source fingerprint and :data:`FORMAT_VERSION`, so
a changed source, or a change in how arrays are decoded, misses the cache.

Writes are atomic: each file is written to a temporary name in the same folder
and moved into place with ``os.replace``; ``meta.json`` is written last and acts
as the commit marker.  A crash leaves either no entry or a complete one; an
entry whose arrays do not match its metadata is treated as a miss.

Cache folder: ``cache_dir`` argument, else ``$PATCHINIT_CACHE``, else
``<root>/.patchinit-cache`` when the data root is writable, else
``$XDG_CACHE_HOME/patchinit`` (default ``~/.cache/patchinit``).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .decoded import Decoded, SplitArrays
from .sources import is_writable_dir

logger = logging.getLogger(__name__)

#: Bump when decoding changes what arrays a source yields, to orphan old entries.
FORMAT_VERSION = 1


def resolve_cache_dir(root: Path, cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache folder for a data root (see the module docstring for the order)."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("PATCHINIT_CACHE")
    if env:
        return Path(env).expanduser()
    if is_writable_dir(Path(root)):
        return Path(root) / ".patchinit-cache"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "patchinit"


def entry_stem(name: str, checksum: str) -> str:
    """File-name stem of a cache entry: dataset name plus a digest of the checksum and format."""
    key = hashlib.sha256(f"{checksum}|v{FORMAT_VERSION}".encode()).hexdigest()[:24]
    return f"{name}-{key}"


def atomic_write(path: Path, write: Callable) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide a shared cache from other users
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_array(path: Path, array: np.ndarray) -> None:
    atomic_write(path, lambda fh: np.save(fh, np.ascontiguousarray(array), allow_pickle=False))


def _write_json(path: Path, obj: dict) -> None:
    atomic_write(path, lambda fh: fh.write(json.dumps(obj, indent=1).encode()))


def _array_fields(split: SplitArrays) -> dict[str, np.ndarray]:
    fields = {"images": split.images, "labels": split.labels}
    if split.coarse_labels is not None:
        fields["coarse_labels"] = split.coarse_labels
    return fields


class ArrayCache:
    """Store and load decoded datasets below one folder."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)

    def _path(self, stem: str, suffix: str) -> Path:
        return self.directory / f"{stem}.{suffix}"

    def store(self, name: str, checksum: str, decoded: Decoded, meta: dict) -> bool:
        """Write every split, then ``meta`` (JSON-able) plus counts and array names.

        Returns False, with a warning, when the folder cannot be written: a cache
        failure must not stop the data from being used.
        """
        stem = entry_stem(name, checksum)
        record = dict(meta, name=name, checksum=checksum, format=FORMAT_VERSION,
                      counts={s: int(len(a.labels)) for s, a in decoded.splits.items()},
                      arrays={s: sorted(_array_fields(a)) for s, a in decoded.splits.items()})
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            for split, arrays in decoded.splits.items():
                for field, array in _array_fields(arrays).items():
                    _write_array(self._path(stem, f"{split}.{field}.npy"), array)
            _write_json(self._path(stem, "meta.json"), record)
        except OSError as err:
            logger.warning("could not write the dataset cache in %s (%s); the next load decodes again. "
                           "Set PATCHINIT_CACHE to a writable folder.", self.directory, err)
            return False
        logger.info("cached %s (%s) in %s", name, checksum, self.directory)
        return True

    def load_meta(self, name: str, checksum: str) -> dict | None:
        """The entry's metadata, or None when there is no complete entry."""
        path = self._path(entry_stem(name, checksum), "meta.json")
        try:
            meta = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as err:
            logger.warning("ignoring unreadable cache metadata %s: %s", path, err)
            return None
        if meta.get("checksum") != checksum or meta.get("format") != FORMAT_VERSION:
            return None
        return meta

    def load_split(self, name: str, checksum: str, split: str, meta: dict, *,
                   mmap: bool = False) -> SplitArrays | None:
        """One split's arrays, or None when a file is missing or does not match ``meta``."""
        stem = entry_stem(name, checksum)
        fields = meta.get("arrays", {}).get(split)
        if fields is None:
            return None
        arrays = {}
        for field in fields:
            path = self._path(stem, f"{split}.{field}.npy")
            try:
                arrays[field] = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
            except (OSError, ValueError, EOFError) as err:
                logger.warning("ignoring damaged cache file %s: %s", path, err)
                return None
            if len(arrays[field]) != meta["counts"][split]:
                logger.warning("ignoring cache file %s: %d rows, metadata says %d",
                               path, len(arrays[field]), meta["counts"][split])
                return None
        return SplitArrays(arrays["images"], arrays["labels"], arrays.get("coarse_labels"))
