"""Fingerprints that identify the exact bytes a dataset was decoded from.

The cache key contains the fingerprint, so a changed source gets a new key and
is decoded again.  Three kinds, each prefixed so the string says how it was made:

- ``sha256:<hex>``: SHA-256 of one file's contents (archives, tarballs, zips);
- ``sha256-files:<hex>``: SHA-256 over the names and SHA-256s of several files
  (the four MNIST files);
- ``tree:<hex>``: a *cheap* fingerprint of an extracted folder: SHA-256 over every
  file's relative path, size and modification time (ns).  Hashing the contents
  of 100,000 files on every load would cost more than the cache saves; the price
  is that touching a file (new mtime) also invalidates the cache, and an edit that
  keeps size and mtime would not (no ordinary tool does that).

Content hashes are memoised in-process by (path, size, mtime, inode), so loading
both splits of one archive hashes it once.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

_CHUNK = 1 << 20
_memo: dict[tuple, str] = {}


def _stat_key(path: Path) -> tuple:
    st = path.stat()
    return (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file's contents, read in 1 MiB chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    """``sha256:<hex>`` of one file, memoised while the file is unchanged."""
    path = Path(path)
    key = _stat_key(path)
    if key not in _memo:
        _memo[key] = "sha256:" + file_digest(path)
    return _memo[key]


def files_sha256(paths: list[Path]) -> str:
    """``sha256-files:<hex>`` over ``name sha256`` lines of several files (order-independent)."""
    lines = sorted(f"{Path(p).name} {file_sha256(p)}" for p in paths)
    return "sha256-files:" + hashlib.sha256("\n".join(lines).encode()).hexdigest()


def tree_fingerprint(folder: Path) -> str:
    """``tree:<hex>`` over relative path, size and mtime of every non-hidden file below ``folder``."""
    folder = Path(folder)
    lines = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if name.startswith("."):
                continue
            full = Path(dirpath) / name
            st = full.stat()
            lines.append(f"{full.relative_to(folder).as_posix()}\t{st.st_size}\t{st.st_mtime_ns}")
    lines.sort()
    return "tree:" + hashlib.sha256("\n".join(lines).encode()).hexdigest()


def arrays_fingerprint(splits: dict) -> str:
    """``arrays-sha256:<hex>`` over the decoded arrays of every split (name, shape, dtype, bytes
    of images and labels), in sorted split order.

    Unlike the source fingerprints above, this names the *data* a run saw, however it was
    stored: the official CIFAR-10 archive and an extracted copy of it give the same value,
    while our JPEG re-encoding gives another.  ``splits`` maps a split name to an object
    with ``images`` and ``labels`` arrays (a :class:`patchinit.data.Dataset`).
    """
    import numpy as np

    digest = hashlib.sha256()
    for name in sorted(splits):
        for field in ("images", "labels"):
            a = np.ascontiguousarray(getattr(splits[name], field))
            digest.update(f"{name}.{field} {a.dtype.str} {a.shape}\n".encode())
            digest.update(memoryview(a).cast("B"))
    return "arrays-sha256:" + digest.hexdigest()[:24]
