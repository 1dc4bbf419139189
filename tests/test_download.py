"""Tests of ``download=True`` against a loopback HTTP server (127.0.0.1 only, no internet)."""
from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import pickle
import socket
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest

import patchinit.data.download as dl
from patchinit.data.datasets import load_dataset
from patchinit.data.download import MNIST_RAW_MD5, DownloadSpec, RemoteFile
from patchinit.data.errors import ChecksumError, DownloadError


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def tiny_cifar10_tarball(folder: Path) -> Path:
    """``cifar-10-python.tar.gz`` with the official structure and 2 images per batch."""
    rng = np.random.default_rng(0)
    top = folder / "build" / "cifar-10-batches-py"
    top.mkdir(parents=True)
    for file in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        entry = {b"data": rng.integers(0, 256, (2, 3072), dtype=np.uint8), b"labels": [1, 7]}
        (top / file).write_bytes(pickle.dumps(entry, protocol=2))
    names = [n.encode() for n in ("airplane automobile bird cat deer dog frog horse ship truck".split())]
    (top / "batches.meta").write_bytes(pickle.dumps({b"label_names": names}, protocol=2))
    archive = folder / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(top, arcname="cifar-10-batches-py")
    return archive


def tiny_mnist_gz(folder: Path) -> None:
    for prefix, n in (("train", 3), ("t10k", 2)):
        images = np.arange(n * 28 * 28, dtype=np.uint8).reshape(n, 28, 28)
        labels = np.arange(n, dtype=np.uint8)
        for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
            header = bytes([0, 0, 8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
            (folder / f"{prefix}-{kind}-ubyte.gz").write_bytes(gzip.compress(header + array.tobytes()))


REQUESTS: list[str] = []  # the paths the loopback server was asked for, in order


@pytest.fixture
def server(tmp_path, monkeypatch):
    """Serve ``tmp_path/served`` on 127.0.0.1; yields (folder, base_url)."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    served = tmp_path / "served"
    served.mkdir()

    REQUESTS.clear()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            REQUESTS.append(self.path)
            super().do_GET()

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(served)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PATCHINIT_CACHE", str(tmp_path / "cache"))


def patch_spec(monkeypatch, name: str, files: dict[str, str], subdir: str = "") -> None:
    """Replace the published checksums with those of the test's own files; no real mirror is kept."""
    spec = DownloadSpec(mirrors=("http://127.0.0.1:9/unused/",),
                        files=tuple(RemoteFile(f, m) for f, m in files.items()), subdir=subdir)
    monkeypatch.setitem(dl.DOWNLOADS, name, spec)


def test_download_cifar10_good(tmp_path, server, monkeypatch):
    served, url = server
    archive = tiny_cifar10_tarball(served)
    patch_spec(monkeypatch, "cifar10", {archive.name: md5(archive)})
    root = tmp_path / "root"
    data = load_dataset("cifar10", "train", root=root, download=True, base_url=url, strict=False)
    assert len(data) == 10 and data.labels[:2].tolist() == [1, 7]
    assert sorted(p.name for p in root.iterdir()) == ["cifar-10-python.tar.gz"]  # no temp files
    assert md5(root / "cifar-10-python.tar.gz") == md5(archive)
    assert data.source == str(root / "cifar-10-python.tar.gz")


def test_download_checksum_mismatch_leaves_nothing(tmp_path, server, monkeypatch):
    served, url = server
    archive = tiny_cifar10_tarball(served)
    patch_spec(monkeypatch, "cifar10", {archive.name: "0" * 32})
    existing = tmp_path / "existing-root"
    existing.mkdir()
    for root in (tmp_path / "new-root", existing):
        with pytest.raises(ChecksumError) as info:
            load_dataset("cifar10", "train", root=root, download=True, base_url=url, strict=False)
        assert md5(archive) in str(info.value) and "0" * 32 in str(info.value)
    assert not (tmp_path / "new-root").exists()  # a root the download created is removed again
    assert list(existing.iterdir()) == []


def test_download_mnist_four_files(tmp_path, server, monkeypatch):
    served, url = server
    tiny_mnist_gz(served)
    patch_spec(monkeypatch, "mnist", {p.name: md5(p) for p in served.iterdir()}, subdir="mnist")
    root = tmp_path / "root"
    data = load_dataset("mnist", "test", root=root, download=True, base_url=url, strict=False)
    assert len(data) == 2 and data.images.shape == (2, 28, 28, 1)
    assert len(list((root / "mnist").iterdir())) == 4


def test_download_partial_failure_leaves_nothing(tmp_path, server, monkeypatch):
    served, url = server
    tiny_mnist_gz(served)
    files = {p.name: md5(p) for p in sorted(served.iterdir())}
    (served / "t10k-labels-idx1-ubyte.gz").unlink()  # served with 404
    patch_spec(monkeypatch, "mnist", files, subdir="mnist")
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(DownloadError, match=r"t10k-labels-idx1-ubyte\.gz.*404"):
        load_dataset("mnist", "train", root=root, download=True, base_url=url, strict=False)
    assert list(root.iterdir()) == []


def test_download_unreachable_server(tmp_path, monkeypatch):
    with socket.socket() as s:  # a loopback port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    patch_spec(monkeypatch, "cifar10", {"cifar-10-python.tar.gz": "0" * 32})
    with pytest.raises(DownloadError, match=r"127\.0\.0\.1"):
        load_dataset("cifar10", "train", root=tmp_path / "r", download=True,
                     base_url=f"http://127.0.0.1:{port}/", strict=False)
    assert not (tmp_path / "r").exists()


def test_download_into_read_only_root(tmp_path, monkeypatch):
    patch_spec(monkeypatch, "cifar10", {"cifar-10-python.tar.gz": "0" * 32})
    root = tmp_path / "ro"
    root.mkdir()
    root.chmod(0o555)
    try:
        with pytest.raises(DownloadError, match="read-only"):
            load_dataset("cifar10", "train", root=root, download=True, base_url="http://127.0.0.1:9/")
        assert list(root.iterdir()) == []
    finally:
        root.chmod(0o755)


def test_download_skipped_when_data_present(tmp_path, server, monkeypatch):
    served, url = server  # serves nothing: any fetch would fail with 404
    archive = tiny_cifar10_tarball(tmp_path / "root")
    patch_spec(monkeypatch, "cifar10", {archive.name: "0" * 32})
    data = load_dataset("cifar10", "test", root=archive.parent, download=True, base_url=url, strict=False)
    assert len(data) == 2


def test_shared_mnist_is_lossless(data_root):
    """The CI copy is re-gzipped (its .gz MD5s differ from the published ones)
    but decompresses to the official bytes."""
    for stem, expected in MNIST_RAW_MD5.items():
        path = data_root / "mnist" / f"{stem}.gz"
        if not path.exists():
            pytest.skip(f"{path} not present")
        assert hashlib.md5(gzip.decompress(path.read_bytes())).hexdigest() == expected


def _dead_port_url() -> str:
    with socket.socket() as s:  # a loopback port that nothing listens on
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/"


def test_download_falls_back_to_the_next_mirror(tmp_path, server, monkeypatch):
    """Without base_url the spec's mirrors are tried in order: a refused connection, a 404 and a copy
    with the wrong MD5 are each passed over, and the first verified copy is kept."""
    served, url = server
    archive = tiny_cifar10_tarball(served / "good")
    (served / "bad").mkdir()
    (served / "bad" / archive.name).write_bytes(b"a corrupt copy")
    dead = _dead_port_url()

    def use_mirrors(*mirrors):
        spec = DownloadSpec(mirrors=mirrors, files=(RemoteFile(archive.name, md5(archive)),))
        monkeypatch.setitem(dl.DOWNLOADS, "cifar10", spec)

    use_mirrors(dead, url + "missing/", url + "bad/", url + "good/", url + "never/")
    root = tmp_path / "root"
    (path,) = dl.download("cifar10", root)
    assert md5(path) == md5(archive) and sorted(p.name for p in root.iterdir()) == [archive.name]
    assert REQUESTS == [f"/missing/{archive.name}", f"/bad/{archive.name}", f"/good/{archive.name}"]
    # when every mirror fails, the error names each one; a bad checksum anywhere makes it a ChecksumError
    use_mirrors(dead, url + "bad/")
    with pytest.raises(ChecksumError) as info:
        dl.download("cifar10", tmp_path / "r2")
    assert dead in str(info.value) and f"{url}bad/{archive.name}: MD5 {md5(served / 'bad' / archive.name)}" in str(info.value)
    use_mirrors(dead, url + "missing/")
    with pytest.raises(DownloadError, match=r"missing/cifar-10-python\.tar\.gz: HTTP Error 404") as info:
        dl.download("cifar10", tmp_path / "r3")
    assert not isinstance(info.value, ChecksumError) and dead in str(info.value)
    assert not (tmp_path / "r2").exists() and not (tmp_path / "r3").exists()


def test_published_mnist_checksums_against_the_local_copy(data_root, server, tmp_path):
    """The published MD5s of ``DOWNLOADS["mnist"]``, not replaced: the local MNIST files are served under
    their official names and fetched through the real spec (only the mirror is the loopback server).

    A file byte-identical to the official one must pass its published MD5.  A copy that was re-gzipped
    (as the CI copy is: same decompressed bytes, other gzip framing) must be refused with both MD5s
    named, and its content must still be the official one (MNIST_RAW_MD5), so that the refusal is the
    .gz checksum's doing.  (The published values were compared by hand with torchvision's list.)
    """
    served, url = server
    folder = data_root / "mnist"
    spec = dl.DOWNLOADS["mnist"]
    paths = {f.filename: folder / f.filename for f in spec.files}
    if not folder.is_dir() or not all(p.exists() for p in paths.values()):
        pytest.skip(f"no MNIST .gz files in {folder}")
    for name, path in paths.items():
        (served / name).write_bytes(path.read_bytes())
    official = {f.filename: md5(paths[f.filename]) == f.md5 for f in spec.files}
    work = tmp_path / "work"
    work.mkdir()
    for f in spec.files:
        if official[f.filename]:
            tmp = dl._fetch_verified(f, (url,), work, timeout=10)
            assert tmp.read_bytes() == paths[f.filename].read_bytes()
            tmp.unlink()
        else:
            with pytest.raises(ChecksumError) as info:
                dl._fetch_verified(f, (url,), work, timeout=10)
            assert f.md5 in str(info.value) and md5(paths[f.filename]) in str(info.value)
            raw = gzip.decompress(paths[f.filename].read_bytes())
            assert hashlib.md5(raw).hexdigest() == MNIST_RAW_MD5[f.filename.removesuffix(".gz")]
    assert list(work.iterdir()) == []
    root = tmp_path / "root"
    if all(official.values()):
        assert sorted(p.name for p in dl.download("mnist", root, base_url=url)) == sorted(paths)
    else:
        with pytest.raises(ChecksumError):
            dl.download("mnist", root, base_url=url)
        assert not root.exists()
