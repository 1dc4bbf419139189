"""Find where a dataset lives under the data root, and open it for reading.

Each dataset has an ordered list of candidate locations; the first that exists
wins.  Extracted official files come before archives (nothing to decompress) and
official formats before image-folder re-encodings (lossless before lossy).
Every location tried is recorded, so "not found" can list them all.

Archives with unofficial names (``cifar10-jpeg.tar.gz``) are recognised by the
top folder of their first members, not by their file name, because ``cifar10``
is a prefix of ``cifar100``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .archives import DirTable, FileTable, is_archive, read_archive, top_folders
from .cifar_pickle import PICKLE_LAYOUTS
from .fingerprint import file_sha256, files_sha256, tree_fingerprint
from .idx import MNIST_FILES
from .tinyimagenet import TOP as TINY_TOP
from .tinyimagenet import keep_member as tiny_keep_member

DATASETS = ("mnist", "cifar10", "cifar100", "tinyimagenet")

#: Official archive file names recognised by name alone.
OFFICIAL_ARCHIVES = {
    "cifar10": ("cifar-10-python.tar.gz",),
    "cifar100": ("cifar-100-python.tar.gz",),
    "tinyimagenet": ("tiny-imagenet-200.zip",),
}

#: Top folder inside a tree or archive -> the format it implies, per dataset.
TOP_FORMATS = {
    "cifar10": {"cifar-10-batches-py": "cifar-pickle", "cifar10": "image-tree"},
    "cifar100": {"cifar-100-python": "cifar-pickle", "cifar100": "image-tree"},
    "tinyimagenet": {TINY_TOP: "tinyimagenet"},
}


@dataclass(frozen=True)
class Source:
    """One located copy of a dataset.

    ``kind`` is the format (``idx``, ``cifar-pickle``, ``image-tree``,
    ``tinyimagenet``); ``path`` is the folder or archive to report; ``top`` the
    top folder inside it; ``files`` the MNIST files as ``{split: (images, labels)}``.
    """

    name: str
    kind: str
    path: Path
    top: str = ""
    archive: bool = False
    files: dict = field(default_factory=dict, compare=False)

    @property
    def location(self) -> Path:
        """The archive, the dataset folder, or (MNIST) the folder of the IDX files."""
        if self.archive or not self.top:
            return self.path
        return self.path / self.top

    def checksum(self) -> str:
        """Fingerprint of the source (see :mod:`patchinit.data.fingerprint`)."""
        if self.kind == "idx":
            return files_sha256([p for pair in self.files.values() for p in pair])
        if self.archive:
            return file_sha256(self.path)
        return tree_fingerprint(self.path / self.top)

    def table(self) -> FileTable:
        """The source's files: read lazily from a folder, or streamed from an archive."""
        if not self.archive:
            return DirTable(self.path, self.top)
        keep_top = self.top + "/"
        if self.kind == "tinyimagenet":
            keep = tiny_keep_member
        else:
            keep = lambda n: n.startswith(keep_top)  # noqa: E731
        return read_archive(self.path, keep)


@dataclass
class Search:
    """Result of a search: the source found (or None) and every location tried."""

    source: Source | None
    searched: list[str]


def _idx_file(folder: Path, stem: str) -> Path | None:
    """The raw or gzipped IDX file ``stem`` in ``folder`` (raw preferred: no decompression)."""
    return next((folder / (stem + ext) for ext in ("", ".gz") if (folder / (stem + ext)).is_file()), None)


def _mnist(root: Path) -> Search:
    """MNIST needs all four files in one folder: the test split's statistics come from train."""
    searched = []
    for folder in (root / "mnist", root / "MNIST" / "raw", root):
        searched.append(f"{folder}/{{train,t10k}}-{{images-idx3,labels-idx1}}-ubyte[.gz]")
        files = {split: tuple(_idx_file(folder, stem) for stem in stems) for split, stems in MNIST_FILES.items()}
        if all(path is not None for pair in files.values() for path in pair):
            return Search(Source("mnist", "idx", folder, files=files), searched)
    return Search(None, searched)


def _folder_sources(name: str, root: Path) -> tuple[list[Source], list[str]]:
    sources, searched = [], []
    for top, kind in TOP_FORMATS[name].items():
        if kind == "cifar-pickle":
            searched.append(f"{root / top}/ (extracted official python pickles)")
            present = (root / top / PICKLE_LAYOUTS[name]["meta"]).is_file()
        elif kind == "image-tree":
            searched.append(f"{root / top}/{{train,test}}/<class>/<image> (image folders)")
            present = (root / top / "train").is_dir()
        else:
            searched.append(f"{root / top}/ (extracted official layout)")
            present = (root / top / "wnids.txt").is_file()
        if present:
            sources.append(Source(name, kind, root, top=top))
    return sources, searched


def _archive_sources(name: str, root: Path) -> tuple[list[Source], list[str]]:
    sources, searched = [], []
    formats = TOP_FORMATS[name]
    official = OFFICIAL_ARCHIVES.get(name, ())
    for file in official:
        searched.append(f"{root / file} (official archive)")
    listing = sorted(root.iterdir()) if root.is_dir() else []
    others = [p for p in listing if p.is_file() and is_archive(p) and p.name not in official]
    searched.append(
        f"{root}/*.tar.gz|*.tgz|*.tar|*.zip whose top folder is one of {sorted(formats)} "
        f"(archives examined: {[p.name for p in others] or 'none'})"
    )
    candidates = [root / f for f in official if (root / f).is_file()] + others
    for path in candidates:
        tops = top_folders(path)
        for top, kind in formats.items():
            if top in tops:
                sources.append(Source(name, kind, path, top=top, archive=True))
                break
    return sources, searched


def find_source(name: str, root: Path) -> Search:
    """Locate ``name`` under ``root``; returns the first candidate and all locations tried."""
    root = Path(root)
    if name == "mnist":
        return _mnist(root)
    folders, searched_f = _folder_sources(name, root)
    if folders:
        return Search(folders[0], searched_f)
    archives, searched_a = _archive_sources(name, root)
    return Search(archives[0] if archives else None, searched_f + searched_a)


def is_writable_dir(path: Path) -> bool:
    """True when ``path`` is a folder we may write into.

    Besides ``os.access``, a folder with no write bit for anyone counts as
    read-only: ``os.access`` answers True for root on any local folder, and a
    ``chmod a-w`` data root (as in CI) must not receive a cache or downloads.
    """
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return path.is_dir() and os.access(path, os.W_OK) and bool(mode & 0o222)
