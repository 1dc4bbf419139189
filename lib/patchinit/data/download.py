"""Download the official dataset archives and verify their published checksums.

What is fetched (file name, published MD5) and from where is the module-level
mapping :data:`DOWNLOADS`.  ``base_url`` (an argument of :func:`download` and of
``load_dataset``) replaces the mirror list, so tests can serve archives from a
loopback HTTP server and users can point at an institutional mirror.

Files are streamed to a temporary name in the destination folder, their MD5 is
checked, and only when *every* file of the dataset is verified are they moved
into place with ``os.replace``.  On any failure the temporary files, and folders
this call created, are removed: the data root is left as it was.

The archives are not extracted; ``load_dataset`` reads them directly.
"""
from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from patchinit import bars

from .errors import ChecksumError, DownloadError
from .sources import is_writable_dir

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset and the MD5 its publisher lists for it."""

    filename: str
    md5: str


@dataclass(frozen=True)
class DownloadSpec:
    """Where a dataset's files come from and where below the data root they go."""

    mirrors: tuple[str, ...]
    files: tuple[RemoteFile, ...]
    subdir: str = ""
    megabytes: float = 0.0  # the download's size, for messages


#: Official sources.  MNIST: the four gzipped IDX files with the MD5s torchvision
#: publishes; yann.lecun.com is the original host, the S3 copy the mirror the
#: PyTorch project serves when it refuses downloads.  CIFAR: the Toronto tarballs
#: with the MD5s on https://www.cs.toronto.edu/~kriz/cifar.html.  TinyImageNet: the
#: Stanford CS231n zip.
DOWNLOADS: dict[str, DownloadSpec] = {
    "mnist": DownloadSpec(
        mirrors=("http://yann.lecun.com/exdb/mnist/", "https://ossci-datasets.s3.amazonaws.com/mnist/"),
        files=(
            RemoteFile("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
            RemoteFile("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
            RemoteFile("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
            RemoteFile("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
        ),
        subdir="mnist",
        megabytes=11.6,
    ),
    "cifar10": DownloadSpec(
        mirrors=("https://www.cs.toronto.edu/~kriz/",),
        files=(RemoteFile("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a"),),
        megabytes=170.5,
    ),
    "cifar100": DownloadSpec(
        mirrors=("https://www.cs.toronto.edu/~kriz/",),
        files=(RemoteFile("cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85"),),
        megabytes=169.0,
    ),
    "tinyimagenet": DownloadSpec(
        mirrors=("http://cs231n.stanford.edu/",),
        files=(RemoteFile("tiny-imagenet-200.zip", "90528d7ca1a48142e341f4ef8d21d0de"),),
        megabytes=248.1,
    ),
}

#: MD5 of the *decompressed* official MNIST files.  Re-gzipped copies (such as
#: the CI data) differ in their ``.gz`` MD5 but must match these.
MNIST_RAW_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}

_CHUNK = 1 << 20


def offline_help(root: str | os.PathLike) -> str:
    """What a newcomer without the data needs to know: what ``make book`` downloads, how long
    a first build takes, and how to use local copies instead."""
    sizes = ", ".join(f"{name} {spec.megabytes:.0f} MB from {spec.mirrors[0].split('/')[2]}"
                      for name, spec in DOWNLOADS.items())
    total = sum(spec.megabytes for spec in DOWNLOADS.values())
    return (f"The book needs all four datasets; with download=True a first build fetches the official archives "
            f"into the data root ({root}): {sizes} (about {total:.0f} MB in all). A first `make book` then takes "
            f"about 11 minutes on 2 cores (decoding the data and executing every chapter; later builds reuse the "
            f"decoded-data and execution caches). Without a network, put copies there yourself: "
            f"`export PATCHINIT_DATA=/path/to/data` (or pass root=) for a folder holding the official files "
            f"(mnist/*-ubyte.gz, cifar-10-python.tar.gz, cifar-100-python.tar.gz, tiny-imagenet-200.zip) or any "
            f"layout the README's 'Data' section lists; `make book` uses a shared/data folder beside the checkout "
            f"when there is one.")


def _fetch_to_temp(url: str, folder: Path, timeout: float) -> tuple[Path, str]:
    """Stream ``url`` into a temporary file in ``folder``; returns its path and MD5."""
    request = urllib.request.Request(url, headers={"User-Agent": "patchinit"})
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".download-", suffix=".part")
    md5 = hashlib.md5()
    try:
        os.chmod(tmp, 0o644)  # an ordinary data file, not mkstemp's private 0600
        with urllib.request.urlopen(request, timeout=timeout) as response, os.fdopen(fd, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=url.rsplit("/", 1)[-1],
                      disable=bars.disable(None), leave=False) as bar:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    md5.update(chunk)
                    bar.update(len(chunk))
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp), md5.hexdigest()


def _fetch_verified(file: RemoteFile, mirrors: tuple[str, ...], folder: Path, timeout: float) -> Path:
    """Try each mirror until one serves the file with the published MD5."""
    failures: list[str] = []
    bad_checksum = False
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + file.filename
        logger.info("downloading %s", url)
        try:
            tmp, md5 = _fetch_to_temp(url, folder, timeout)
        except (urllib.error.URLError, OSError, ValueError) as err:
            failures.append(f"{url}: {err}")
            continue
        if md5 == file.md5:
            return tmp
        tmp.unlink(missing_ok=True)
        bad_checksum = True
        failures.append(f"{url}: MD5 {md5}, expected the published {file.md5}")
    message = f"could not download {file.filename}:\n  " + "\n  ".join(failures)
    raise (ChecksumError if bad_checksum else DownloadError)(message)


def download(
    name: str,
    root: str | os.PathLike,
    *,
    base_url: str | None = None,
    timeout: float = 60.0,
) -> list[Path]:
    """Fetch the official files of ``name`` into ``root`` and verify their MD5s.

    ``base_url`` replaces the official mirrors (the file name is appended).
    Returns the paths written.  Raises :class:`ChecksumError` on a checksum
    mismatch and :class:`DownloadError` on any other failure; in both cases
    nothing is left behind in ``root``.
    """
    if name not in DOWNLOADS:
        raise DownloadError(f"no download is defined for dataset {name!r}; known: {sorted(DOWNLOADS)}")
    spec = DOWNLOADS[name]
    root = Path(root).expanduser()
    folder = root / spec.subdir if spec.subdir else root
    mirrors = (base_url,) if base_url else spec.mirrors

    created = [p for p in (folder, *folder.parents) if not p.exists()]
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not is_writable_dir(existing):
        raise DownloadError(
            f"{existing} is read-only, so {name} cannot be downloaded into {folder}; "
            "pass a writable root= (or set PATCHINIT_DATA)"
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DownloadError(f"cannot create {folder} for the download ({err}); pass a writable root=") from err
    verified: list[tuple[Path, Path]] = []
    try:
        for file in spec.files:
            try:
                verified.append((_fetch_verified(file, mirrors, folder, timeout), folder / file.filename))
            except ChecksumError:
                raise
            except DownloadError as err:
                if base_url:
                    raise
                raise DownloadError(f"{err}\n{offline_help(root)}") from err
        for tmp, final in verified:
            os.replace(tmp, final)
    except BaseException:
        for tmp, _ in verified:
            tmp.unlink(missing_ok=True)
        for path in created:  # innermost first
            try:
                path.rmdir()
            except OSError:
                break
        raise
    logger.info("downloaded %s into %s", name, folder)
    return [final for _, final in verified]
