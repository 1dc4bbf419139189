"""Uniform read access to a dataset stored as a folder, a tar archive or a zip.

Every format reader in :mod:`patchinit.data` works on a *file table*: a sorted
list of POSIX relative paths plus ``read(name) -> bytes``.  That lets one parser
serve an extracted folder and an archive of the same folder, so the two can never
disagree about labels or order.

Archives are never extracted: the data root may be read-only, and extracting
would leave half-written trees behind after a crash.  Tar archives are read as
one forward stream (``"r|*"``), because random access into a gzip tar
re-decompresses from the start for every member and is many times slower.  The
members a reader needs are kept in memory (a few tens of MiB for the archives
used here), decoded, and the decoded arrays are cached by
:mod:`patchinit.data.cache`; that decode-and-cache is the "extract once".
"""
from __future__ import annotations

import logging
import os
import re
import gzip
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .errors import CorruptDataError

logger = logging.getLogger(__name__)

#: File-name endings recognised as archives when the data root is scanned.
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".tar.xz", ".tar.bz2", ".zip")

#: Image file endings an image-folder tree may contain (decoded with OpenCV).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


def is_archive(path: Path) -> bool:
    """True when the file name ends in one of :data:`ARCHIVE_SUFFIXES`."""
    return path.name.lower().endswith(ARCHIVE_SUFFIXES)


def is_image_name(name: str) -> bool:
    """True for a non-hidden file whose extension is a supported image format."""
    base = name.rsplit("/", 1)[-1]
    return not base.startswith(".") and base.lower().endswith(IMAGE_SUFFIXES)


def natural_key(text: str) -> tuple:
    """Sort key that orders embedded numbers numerically (``img_2`` before ``img_10``).

    Used for image order within a class, so the order is deterministic and also
    matches the numbering of the original files (TinyImageNet's ``n..._0..499``).
    """
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text))


def normalise_member(name: str) -> str:
    """Archive member name as a clean relative POSIX path (no ``./``, no trailing ``/``)."""
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    return "/".join(parts)


@dataclass
class DirTable:
    """Files below ``base/top``, named relative to ``base`` (so names start with ``top/``)."""

    base: Path
    top: str
    names: list[str] = field(init=False)

    def __post_init__(self) -> None:
        start = self.base / self.top
        found = []
        for dirpath, dirnames, filenames in os.walk(start):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            rel = Path(dirpath).relative_to(self.base).as_posix()
            found.extend(f"{rel}/{f}" for f in filenames if not f.startswith("."))
        self.names = sorted(found)

    @property
    def location(self) -> Path:
        return self.base / self.top

    def read(self, name: str) -> bytes:
        try:
            return (self.base / name).read_bytes()
        except OSError as err:
            raise CorruptDataError(f"cannot read {self.describe(name)}: {err}") from err

    def describe(self, name: str) -> str:
        """Human-readable address of one file, for error messages."""
        return str(self.base / name)


@dataclass
class MemoryTable:
    """Members of an archive held in memory, keyed by normalised member name."""

    archive: Path
    members: dict[str, bytes]
    names: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.names = sorted(self.members)

    @property
    def location(self) -> Path:
        return self.archive

    def read(self, name: str) -> bytes:
        return self.members[name]

    def describe(self, name: str) -> str:
        """``archive:member``, so an error names both the file and the member."""
        return f"{self.archive}:{name}"


FileTable = DirTable | MemoryTable


def _keep_all(_name: str) -> bool:
    return True


def read_archive(path: Path, keep: Callable[[str], bool] = _keep_all) -> MemoryTable:
    """Read the regular-file members of a tar or zip archive that ``keep`` accepts.

    Raises :class:`CorruptDataError` naming the archive (and the last member read)
    when the archive is truncated or damaged.
    """
    path = Path(path)
    if path.name.lower().endswith(".zip"):
        return MemoryTable(path, _read_zip(path, keep))
    return MemoryTable(path, _read_tar_stream(path, keep))


def _read_tar_stream(path: Path, keep: Callable[[str], bool]) -> dict[str, bytes]:
    members: dict[str, bytes] = {}
    last = "<none: failed before the first member>"
    try:
        # tarfile's stream mode never reads the gzip trailer, so an archive cut near a
        # header boundary would end quietly; gzip checks length and CRC at the very end.
        with open(path, "rb") as probe:
            gzipped = probe.read(2) == b"\x1f\x8b"
        with (gzip.open(path, "rb") if gzipped else open(path, "rb")) as raw, \
                tarfile.open(fileobj=raw, mode="r|*") as tar:
            for member in tar:
                last = member.name
                name = normalise_member(member.name)
                if not member.isfile() or not keep(name):
                    continue
                handle = tar.extractfile(member)
                data = handle.read() if handle is not None else b""
                if len(data) != member.size:
                    raise CorruptDataError(
                        f"archive {path} is truncated: member {member.name!r} has "
                        f"{len(data)} of {member.size} bytes; download the archive again"
                    )
                members[name] = data
            while raw.read(1 << 20):  # drain the padding so the trailer is checked
                pass
    except (tarfile.TarError, gzip.BadGzipFile, EOFError, zlib.error, OSError) as err:
        raise CorruptDataError(
            f"archive {path} is truncated or corrupt (failed at or after member {last!r}: "
            f"{err}); download the archive again"
        ) from err
    return members


def _read_zip(path: Path, keep: Callable[[str], bool]) -> dict[str, bytes]:
    members: dict[str, bytes] = {}
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                name = normalise_member(info.filename)
                if info.is_dir() or not keep(name):
                    continue
                try:
                    members[name] = zf.read(info)
                except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as err:
                    raise CorruptDataError(
                        f"archive {path}: member {info.filename!r} is corrupt ({err}); "
                        "download the archive again"
                    ) from err
    except (zipfile.BadZipFile, OSError) as err:
        raise CorruptDataError(f"archive {path} is not a readable zip file ({err})") from err
    return members


def top_folders(path: Path, probe: int = 8) -> set[str]:
    """First path components of the first few members of an archive.

    Used to recognise which dataset an arbitrarily named archive in the data root
    holds (``cifar10/...`` vs ``cifar100/...``) without reading it all.  Reading
    the first members of a gzip stream costs milliseconds.  Returns an empty set
    when the archive cannot be read at all.
    """
    try:
        if path.name.lower().endswith(".zip"):
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()[:probe]
        else:
            names = []
            with tarfile.open(path, "r|*") as tar:
                for member in tar:
                    names.append(member.name)
                    if len(names) >= probe:
                        break
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, OSError) as err:
        logger.warning("skipping unreadable archive %s while scanning the data root: %s", path, err)
        return set()
    return {n.split("/", 1)[0] for n in map(normalise_member, names) if n}


def under(names: Iterable[str], prefix: str) -> list[str]:
    """Names that lie below the folder ``prefix`` (given without trailing slash)."""
    start = prefix.rstrip("/") + "/"
    return [n for n in names if n.startswith(start)]
