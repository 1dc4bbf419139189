"""An on-disk cache of method A's image-layer patterns, shared by processes.

Method A's patterns for the image layer depend only on the images, the options (seed included) and the
filter shape, not on the run: every seed of a grid and every learning rate of a sweep reuses them.  Within
one process :func:`patchinit.init.method_a.method_a_init_` memoises them; this cache carries them across
processes.  On MNIST's 60,000 images their UMAP alone takes 14-18 minutes of one core, which every new fill
process paid again.

The cache is used only when ``$PATCHINIT_PATTERN_CACHE`` names a folder (``tools/fill_results.py`` and the
GPU session script set it).  An entry is keyed by the memo's key (the images' SHA-256, their shape, the
filter shape and the options) together with :data:`FORMAT_VERSION` and the versions of the libraries that
compute the patterns, so an upgrade of UMAP or scikit-learn misses the cache instead of serving patterns
those versions would not compute.  Entries are written atomically; an entry that cannot be read is
recomputed and replaced.  A pattern served from the cache says so (``from_cache`` in its record).
"""
from __future__ import annotations

import hashlib
import logging
import os
import pickle
from dataclasses import replace
from importlib import metadata
from pathlib import Path
from typing import Callable

from patchinit.data.cache import atomic_write

from .record import MethodAResult

log = logging.getLogger(__name__)

#: The environment variable naming the cache folder (unset: no disk cache).
ENV = "PATCHINIT_PATTERN_CACHE"
#: Bump when method A's patterns change for the same key, to orphan old entries.
FORMAT_VERSION = 1
#: The libraries whose versions are part of every entry's key.
LIBRARIES = ("numpy", "scikit-learn", "umap-learn", "pynndescent", "numba", "opencv-contrib-python-headless", "torch")


def folder() -> Path | None:
    """The cache folder, or None when ``$PATCHINIT_PATTERN_CACHE`` is unset."""
    value = os.environ.get(ENV)
    return Path(value).expanduser() if value else None


def _versions() -> str:
    out = []
    for name in LIBRARIES:
        try:
            out.append(f"{name}={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            out.append(f"{name}=none")
    return ",".join(out)


def entry_path(key: str, where: Path) -> Path:
    digest = hashlib.sha256(f"{key}|v{FORMAT_VERSION}|{_versions()}".encode()).hexdigest()[:32]
    return where / f"method-a-{digest}.pkl"


def load_or_compute(key: str, compute: Callable[[], MethodAResult]) -> MethodAResult:
    """The patterns stored under ``key``, else ``compute()``'s, stored for the next process."""
    where = folder()
    if where is None:
        return compute()
    path = entry_path(key, where)
    if path.exists():
        try:
            with open(path, "rb") as f:
                stored_key, result = pickle.load(f)
            if stored_key == key and isinstance(result, MethodAResult):
                return replace(result, from_cache=True)
            log.warning("pattern cache entry %s holds another key; recomputing it", path)
        except Exception as e:  # torn or unreadable: recompute and replace it
            log.warning("pattern cache entry %s cannot be read (%s); recomputing it", path, e)
    result = compute()
    try:
        where.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda f: pickle.dump((key, result), f, protocol=pickle.HIGHEST_PROTOCOL))
    except OSError as e:  # a full or read-only cache must not lose the computed patterns
        log.warning("could not write the pattern cache entry %s (%s); going on without it", path, e)
    return result
