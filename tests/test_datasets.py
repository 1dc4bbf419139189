"""Tests of ``patchinit.data.load_dataset``: real data, every source format, errors, cache."""
from __future__ import annotations

import gzip
import json
import os
import pickle
import tarfile
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

import patchinit.data.cache as cache_mod
import patchinit.data.datasets as ds_mod
from patchinit.data.cache import resolve_cache_dir
from patchinit.data.datasets import channel_stats, check_counts, load_dataset
from patchinit.data.decoded import SplitArrays
from patchinit.data.errors import (
    CorruptDataError,
    CountMismatchError,
    DatasetError,
    DatasetNotFoundError,
    LayoutError,
)
from patchinit.data.imagefolder import CIFAR10_CLASSES

# --------------------------------------------------------------------------- builders


def write_idx(path: Path, array: np.ndarray, gz: bool) -> Path:
    """Write ``array`` (uint8) as an IDX file, gzipped when ``gz``."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path = path.with_name(path.name + ".gz") if gz else path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def make_mnist(folder: Path, n_train: int = 6, n_test: int = 4, gz: bool = True, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        write_idx(folder / f"{prefix}-images-idx3-ubyte", images, gz)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels, gz)
        arrays[split] = (images, labels)
    return arrays


def make_cifar_pickles(root: Path, name: str, per_batch: int = 2, seed: int = 0) -> dict:
    """A tiny official-format pickle set; returns the planar data and labels per split."""
    rng = np.random.default_rng(seed)
    cifar100 = name == "cifar100"
    top = root / ("cifar-100-python" if cifar100 else "cifar-10-batches-py")
    top.mkdir(parents=True)
    files = {"train": ["train"], "test": ["test"]} if cifar100 else {
        "train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
    out = {}
    for split, names in files.items():
        datas, labels, coarse = [], [], []
        for file in names:
            data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
            fine = rng.integers(0, 100 if cifar100 else 10, per_batch).tolist()
            entry = {b"data": data, b"batch_label": file.encode()}
            if cifar100:
                entry[b"fine_labels"] = fine
                entry[b"coarse_labels"] = [f // 5 for f in fine]
                coarse += [f // 5 for f in fine]
            else:
                entry[b"labels"] = fine
            (top / file).write_bytes(pickle.dumps(entry, protocol=2))
            datas.append(data)
            labels += fine
        out[split] = (np.concatenate(datas), np.array(labels), np.array(coarse))
    if cifar100:
        meta = {b"fine_label_names": [f"fine{i:02d}".encode() for i in range(100)],
                b"coarse_label_names": [f"coarse{i:02d}".encode() for i in range(20)]}
        (top / "meta").write_bytes(pickle.dumps(meta, protocol=2))
    else:
        meta = {b"label_names": [c.encode() for c in CIFAR10_CLASSES], b"num_cases_per_batch": per_batch}
        (top / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return out


def png(value: int, size: int = 8, gray: bool = False) -> bytes:
    """Lossless image whose red channel is ``value`` (green ``value+1``, blue ``value+2``)."""
    if gray:
        image = np.full((size, size), value, np.uint8)
    else:
        image = np.empty((size, size, 3), np.uint8)
        image[..., 2], image[..., 1], image[..., 0] = value, value + 1, value + 2  # cv2 writes BGR
    ok, buf = cv2.imencode(".png", image)
    assert ok
    return buf.tobytes()


def make_tree(root: Path, top: str, classes: list[str], files: list[str], value=None) -> None:
    """``root/top/{train,test}/<class>/<file>``; red value encodes (split, class, file)."""
    for s, split in enumerate(("train", "test")):
        for c, cls in enumerate(classes):
            folder = root / top / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for f, file in enumerate(files):
                v = value(s, c, f) if value else 100 * s + 10 * c + f
                (folder / file).write_bytes(png(v))


def tar_folder(archive: Path, root: Path, top: str) -> Path:
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(root / top, arcname=top)
    return archive


def make_tiny(root: Path, wnids=("n001", "n002", "n003"), per_class: int = 3, n_val: int = 5) -> None:
    top = root / "tiny-imagenet-200"
    (top / "val" / "images").mkdir(parents=True)
    (top / "wnids.txt").write_text("\n".join(wnids) + "\n")
    (top / "words.txt").write_text("".join(f"{w}\tname {w}, other\n" for w in wnids) + "n999\tunused\n")
    for c, w in enumerate(wnids):
        folder = top / "train" / w / "images"
        folder.mkdir(parents=True)
        (top / "train" / w / f"{w}_boxes.txt").write_text("ignored")
        for i in range(per_class):  # PNG bytes under a .JPEG name: lossless, decoded by content
            (folder / f"{w}_{i}.JPEG").write_bytes(png(10 * c + i, size=64, gray=(c == 0 and i == 0)))
    lines = []
    for i in range(n_val):
        (top / "val" / "images" / f"val_{i}.JPEG").write_bytes(png(200 + i, size=64))
        lines.append(f"val_{i}.JPEG\t{wnids[i % len(wnids)]}\t0\t0\t63\t63")
    (top / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A fresh cache folder per test, so synthetic tests never share entries."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("PATCHINIT_CACHE", str(folder))
    return folder


@pytest.fixture
def count_decodes(monkeypatch):
    """Wrap the decoder and count how often a source is decoded."""
    calls = []
    original = ds_mod.decode_source

    def counting(source, **kw):
        calls.append(source.location)
        return original(source, **kw)

    monkeypatch.setattr(ds_mod, "decode_source", counting)
    return calls


# --------------------------------------------------------------------------- real data


@pytest.fixture(scope="module")
def real(data_root):
    loaded = {}

    def get(name, split):
        if (name, split) not in loaded:
            loaded[name, split] = load_dataset(name, split, root=data_root)
        return loaded[name, split]

    return get


def test_mnist_real(real):
    train, test = real("mnist", "train"), real("mnist", "test")
    assert (len(train), len(test)) == (60000, 10000)
    assert train.images.shape == (60000, 28, 28, 1) and train.images.dtype == np.uint8
    assert train.labels.dtype == np.int64 and set(np.unique(train.labels)) == set(range(10))
    assert train.labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert train.mean[0] == pytest.approx(0.1307, abs=1e-4)
    assert train.std[0] == pytest.approx(0.3081, abs=1e-4)
    assert test.mean == train.mean and test.std == train.std
    assert train.num_classes == 10 and train.coarse_labels is None
    assert train.checksum.startswith("sha256-files:")


def test_cifar10_real(real):
    train, test = real("cifar10", "train"), real("cifar10", "test")
    assert train.images.shape == (50000, 32, 32, 3) and test.images.shape == (10000, 32, 32, 3)
    assert train.classes == list(CIFAR10_CLASSES)
    assert np.bincount(train.labels).tolist() == [5000] * 10
    assert np.bincount(test.labels).tolist() == [1000] * 10
    assert train.mean == pytest.approx((0.4913, 0.4821, 0.4465), abs=2e-4)
    assert test.mean == train.mean
    assert train.source.endswith("cifar10-jpeg.tar.gz") and train.checksum.startswith("sha256:")


def test_cifar100_real(real):
    train, test = real("cifar100", "train"), real("cifar100", "test")
    assert (len(train), len(test)) == (50000, 10000)
    assert train.num_classes == 100 and len(train.coarse_classes) == 20
    assert train.classes == sorted(train.classes)  # official fine names are alphabetical
    fine_to_coarse = {}
    for data in (train, test):
        assert data.coarse_labels.dtype == np.int64 and data.coarse_labels.shape == data.labels.shape
        for fine, coarse in set(zip(data.labels.tolist(), data.coarse_labels.tolist())):
            assert fine_to_coarse.setdefault(fine, coarse) == coarse, "fine class maps to two coarse"
    assert len(fine_to_coarse) == 100
    assert np.bincount(list(fine_to_coarse.values())).tolist() == [5] * 20
    assert train.mean == pytest.approx((0.5075, 0.4869, 0.4414), abs=2e-4)


def test_tinyimagenet_real(real):
    train, val = real("tinyimagenet", "train"), real("tinyimagenet", "val")
    assert train.images.shape == (20000, 64, 64, 3) and val.images.shape == (10000, 64, 64, 3)
    assert train.is_subset and not val.is_subset
    assert train.num_classes == 200 and len(train.wnids) == 200 and train.classes != train.wnids
    assert np.bincount(train.labels, minlength=200).tolist() == [100] * 200
    assert np.bincount(val.labels, minlength=200).tolist() == [50] * 200
    assert val.split == "test" and val.mean == train.mean
    assert train.mean == pytest.approx((0.4814, 0.4491, 0.3986), abs=2e-4)
    gray = lambda x: np.all((x[..., 0] == x[..., 1]) & (x[..., 1] == x[..., 2]), axis=(1, 2))  # noqa: E731
    assert gray(train.images).sum() > 0  # grayscale JPEGs became three equal channels


# --------------------------------------------------------------------------- MNIST IDX


@pytest.mark.parametrize("folder,gz", [("mnist", True), ("MNIST/raw", False), ("", True)])
def test_mnist_layouts(tmp_path, cache, folder, gz):
    arrays = make_mnist(tmp_path / folder, gz=gz)
    data = load_dataset("mnist", "test", root=tmp_path, strict=False)
    images, labels = arrays["test"]
    np.testing.assert_array_equal(data.images[..., 0], images)
    np.testing.assert_array_equal(data.labels, labels)
    assert data.images.shape[-1] == 1 and data.labels.dtype == np.int64
    train_images = arrays["train"][0]
    assert data.mean[0] == pytest.approx(train_images.mean() / 255)
    assert data.std[0] == pytest.approx(train_images.std() / 255)


def test_mnist_truncated_gz(tmp_path, cache):
    make_mnist(tmp_path / "mnist")
    path = tmp_path / "mnist" / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CorruptDataError, match="train-images-idx3-ubyte.gz"):
        load_dataset("mnist", "train", root=tmp_path, strict=False)
    assert not list(cache.glob("*.meta.json"))


def test_mnist_wrong_magic(tmp_path, cache):
    make_mnist(tmp_path / "mnist", gz=False)
    labels = tmp_path / "mnist" / "train-labels-idx1-ubyte"
    (tmp_path / "mnist" / "train-images-idx3-ubyte").write_bytes(labels.read_bytes())  # 0x801 magic
    with pytest.raises(LayoutError, match=r"train-images-idx3-ubyte has magic 0x00000801"):
        load_dataset("mnist", "train", root=tmp_path, strict=False)
    (tmp_path / "mnist" / "train-images-idx3-ubyte").write_bytes(b"PK\x03\x04 not idx")
    with pytest.raises(LayoutError, match="not an IDX file"):
        load_dataset("mnist", "train", root=tmp_path, strict=False)


def test_mnist_truncated_raw_idx(tmp_path, cache):
    make_mnist(tmp_path / "mnist", gz=False)
    path = tmp_path / "mnist" / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CorruptDataError, match=r"t10k-images-idx3-ubyte.*truncated"):
        load_dataset("mnist", "test", root=tmp_path, strict=False)


def test_strict_count_mismatch(tmp_path, cache):
    make_mnist(tmp_path / "mnist")
    with pytest.raises(CountMismatchError, match=r"expected 60000 images, found 6.*strict=False"):
        load_dataset("mnist", "train", root=tmp_path)
    assert len(load_dataset("mnist", "train", root=tmp_path, strict=False)) == 6


def test_check_counts_subset_and_per_class():
    def split(labels, shape):
        images = np.broadcast_to(np.zeros((1, *shape), np.uint8), (len(labels), *shape))
        return SplitArrays(images, np.asarray(labels))

    subset = np.repeat(np.arange(200), 100)
    assert check_counts("tinyimagenet", "train", split(subset, (64, 64, 3)), 200, "x") is True
    uneven = subset.copy()
    uneven[0] = 1  # class 0 has 99, class 1 has 101: not the documented subset
    with pytest.raises(CountMismatchError, match="expected 100000 images, found 20000"):
        check_counts("tinyimagenet", "train", split(uneven, (64, 64, 3)), 200, "x")
    labels = np.repeat(np.arange(10), 1000)
    labels[0] = 1
    with pytest.raises(CountMismatchError, match="class 0 has 999"):
        check_counts("cifar10", "test", split(labels, (32, 32, 3)), 10, "x")
    with pytest.raises(CountMismatchError, match=r"shape \(32, 32, 3\)"):
        check_counts("cifar10", "test", split(np.repeat(np.arange(10), 1000), (8, 8, 3)), 10, "x")


# --------------------------------------------------------------------------- CIFAR pickles


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_pickles_dir_and_tarball(tmp_path, cache, name):
    extracted = tmp_path / "extracted"
    arrays = make_cifar_pickles(extracted, name)
    data = load_dataset(name, "train", root=extracted, strict=False)
    planar, labels, coarse = arrays["train"]
    assert data.images.shape == (10 if name == "cifar10" else 2, 32, 32, 3)
    np.testing.assert_array_equal(data.images, planar.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    assert data.images[0, 0, 1, 2] == planar[0, 2 * 1024 + 1]  # (row 0, col 1, blue) of image 0
    np.testing.assert_array_equal(data.labels, labels)
    if name == "cifar100":
        np.testing.assert_array_equal(data.coarse_labels, coarse)
        assert data.coarse_classes[3] == "coarse03" and data.num_classes == 100
    else:
        assert data.classes == list(CIFAR10_CLASSES) and data.coarse_labels is None

    top = "cifar-100-python" if name == "cifar100" else "cifar-10-batches-py"
    official = "cifar-100-python.tar.gz" if name == "cifar100" else "cifar-10-python.tar.gz"
    packed = tar_folder(tmp_path / "packed" / official, extracted, top)
    from_tar = load_dataset(name, "test", root=packed.parent, strict=False)
    np.testing.assert_array_equal(from_tar.images, arrays["test"][0].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    assert from_tar.source == str(packed) and from_tar.checksum.startswith("sha256:")
    assert data.checksum.startswith("tree:")


def test_cifar_pickle_refuses_foreign_globals(tmp_path, cache):
    make_cifar_pickles(tmp_path, "cifar10")

    class Sneaky:
        def __reduce__(self):
            return (os.getcwd, ())

    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(pickle.dumps({b"data": Sneaky()}, protocol=2))
    with pytest.raises(CorruptDataError, match=r"data_batch_3.*posix.getcwd is not allowed"):
        load_dataset("cifar10", "train", root=tmp_path, strict=False)


def test_cifar_pickle_missing_batch(tmp_path, cache):
    make_cifar_pickles(tmp_path, "cifar10")
    (tmp_path / "cifar-10-batches-py" / "data_batch_5").unlink()
    with pytest.raises(LayoutError, match="data_batch_5"):
        load_dataset("cifar10", "train", root=tmp_path, strict=False)


# --------------------------------------------------------------------------- image trees


def test_tree_official_cifar10_order_and_natural_file_order(tmp_path, cache):
    make_tree(tmp_path, "cifar10", list(CIFAR10_CLASSES), ["10.png", "2.png", "1.png"])
    data = load_dataset("cifar10", "test", root=tmp_path, strict=False)
    assert data.classes == list(CIFAR10_CLASSES)
    assert data.labels.tolist() == [c for c in range(10) for _ in range(3)]
    # red channel = 100*split + 10*class + index-in-["10","2","1"]; natural order is 1, 2, 10
    assert data.images[:3, 0, 0, 0].tolist() == [102, 101, 100]
    assert data.images[0, 0, 0].tolist() == [102, 103, 104]  # RGB, not BGR
    assert data.images.shape == (30, 8, 8, 3)


def test_tree_sorted_classes_and_archive_matches_folder(tmp_path, cache):
    folder_root, archive_root = tmp_path / "f", tmp_path / "a"
    make_tree(folder_root, "cifar10", ["zebra", "ant"], ["a.png", "b.png"])
    from_dir = load_dataset("cifar10", "train", root=folder_root, strict=False)
    assert from_dir.classes == ["ant", "zebra"]
    tar_folder(archive_root / "my-copy.tar.gz", folder_root, "cifar10")
    from_tar = load_dataset("cifar10", "train", root=archive_root, strict=False)
    np.testing.assert_array_equal(from_tar.images, from_dir.images)
    np.testing.assert_array_equal(from_tar.labels, from_dir.labels)
    assert from_tar.source.endswith("my-copy.tar.gz")


def test_archive_recognised_by_top_folder_not_name(tmp_path, cache):
    make_tree(tmp_path / "src", "cifar100", ["b", "a"], ["0.png"])
    tar_folder(tmp_path / "root" / "cifar10-misleading.tar.gz", tmp_path / "src", "cifar100")
    with pytest.raises(DatasetNotFoundError):
        load_dataset("cifar10", "train", root=tmp_path / "root", strict=False)
    assert load_dataset("cifar100", "train", root=tmp_path / "root", strict=False).classes == ["a", "b"]


def test_cifar100_tree_meta_json(tmp_path, cache):
    fine = ["pear", "apple", "oak", "whale"]
    make_tree(tmp_path, "cifar100", fine, ["0.png"])
    meta = {"fine_label_names": fine, "coarse_label_names": ["fruit", "tree", "animal"],
            "fine_to_coarse": {"pear": "fruit", "apple": "fruit", "oak": "tree", "whale": "animal"}}
    (tmp_path / "cifar100" / "meta.json").write_text(json.dumps(meta))
    data = load_dataset("cifar100", "train", root=tmp_path, strict=False)
    assert data.classes == fine  # meta order, not sorted
    assert data.labels.tolist() == [0, 1, 2, 3]
    assert data.coarse_labels.tolist() == [0, 0, 1, 2]
    assert data.coarse_classes == ["fruit", "tree", "animal"]


def test_tree_corrupt_image_named(tmp_path, cache):
    make_tree(tmp_path / "src", "cifar10", ["a", "b"], ["0.png", "1.png"])
    bad = tmp_path / "src" / "cifar10" / "test" / "b" / "1.png"
    bad.write_bytes(b"\x89PNG but not really")
    with pytest.raises(CorruptDataError, match=r"cifar10/test/b/1\.png"):
        load_dataset("cifar10", "train", root=tmp_path / "src", strict=False)
    archive = tar_folder(tmp_path / "arc" / "x.tar.gz", tmp_path / "src", "cifar10")
    with pytest.raises(CorruptDataError, match=rf"{archive}:cifar10/test/b/1\.png"):
        load_dataset("cifar10", "train", root=archive.parent, strict=False)
    assert not list(cache.glob("*.meta.json"))


def test_truncated_jpeg_in_tree(tmp_path, cache):
    make_tree(tmp_path, "cifar10", ["a"], ["0.png"])
    ok, jpeg = cv2.imencode(".jpg", np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8))
    (tmp_path / "cifar10" / "train" / "a" / "1.jpg").write_bytes(jpeg.tobytes()[: len(jpeg) // 2])
    with pytest.raises(CorruptDataError, match=r"train/a/1\.jpg"):
        load_dataset("cifar10", "train", root=tmp_path, strict=False)


def test_truncated_archive_named(tmp_path, cache):
    make_tree(tmp_path / "src", "cifar10", ["a", "b"], [f"{i}.png" for i in range(20)])
    archive = tar_folder(tmp_path / "arc" / "cifar10-jpeg.tar.gz", tmp_path / "src", "cifar10")
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size * 2 // 3])
    with pytest.raises(CorruptDataError, match=r"cifar10-jpeg\.tar\.gz is truncated or corrupt"):
        load_dataset("cifar10", "train", root=archive.parent, strict=False)


def test_tree_without_class_folders(tmp_path, cache):
    for split in ("train", "test"):
        (tmp_path / "cifar10" / split).mkdir(parents=True)
        (tmp_path / "cifar10" / split / "0.png").write_bytes(png(1))
    with pytest.raises(LayoutError, match="no class folders; it has 1 images directly"):
        load_dataset("cifar10", "train", root=tmp_path, strict=False)


def test_tree_missing_test_split(tmp_path, cache):
    make_tree(tmp_path, "cifar10", ["a"], ["0.png"])
    for f in (tmp_path / "cifar10" / "test" / "a").iterdir():
        f.unlink()
    (tmp_path / "cifar10" / "test" / "a").rmdir()
    (tmp_path / "cifar10" / "test").rmdir()
    with pytest.raises(LayoutError, match="no test/val folder"):
        load_dataset("cifar10", "train", root=tmp_path, strict=False)


def test_tree_mixed_image_sizes(tmp_path, cache):
    make_tree(tmp_path, "cifar10", ["a"], ["0.png", "1.png"])
    (tmp_path / "cifar10" / "train" / "a" / "1.png").write_bytes(png(5, size=9))
    with pytest.raises(LayoutError, match=r"train/a/1\.png has shape \(9, 9, 3\)"):
        load_dataset("cifar10", "train", root=tmp_path, strict=False)


# --------------------------------------------------------------------------- TinyImageNet


@pytest.mark.parametrize("packed", ["folder", "tar.gz", "zip"])
def test_tinyimagenet_synthetic(tmp_path, cache, packed):
    make_tiny(tmp_path / "src")
    root = tmp_path / "src"
    if packed == "tar.gz":
        root = tar_folder(tmp_path / "arc" / "tiny.tar.gz", tmp_path / "src", "tiny-imagenet-200").parent
    elif packed == "zip":
        root = tmp_path / "arc"
        root.mkdir()
        with zipfile.ZipFile(root / "tiny-imagenet-200.zip", "w") as zf:
            for path in sorted((tmp_path / "src").rglob("*")):
                zf.write(path, path.relative_to(tmp_path / "src").as_posix())
    train = load_dataset("tinyimagenet", "train", root=root, strict=False)
    val = load_dataset("tiny-imagenet", "val", root=root, strict=False)
    assert train.wnids == ["n001", "n002", "n003"] and train.classes == ["name n001", "name n002", "name n003"]
    assert train.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert train.images[:, 0, 0, 0].tolist()[3:] == [10, 11, 12, 20, 21, 22]
    assert np.all(train.images[0] == 0)  # grayscale value 0 -> three equal channels
    assert val.labels.tolist() == [0, 1, 2, 0, 1] and val.split == "test"
    assert val.images[:, 0, 0, 0].tolist() == [200, 201, 202, 203, 204]
    assert val.images.shape == (5, 64, 64, 3)
    with pytest.raises(CountMismatchError, match="expected 200 classes, found 3"):
        load_dataset("tinyimagenet", "train", root=root)


def test_tinyimagenet_val_without_annotation(tmp_path, cache):
    make_tiny(tmp_path)
    (tmp_path / "tiny-imagenet-200" / "val" / "images" / "val_99.JPEG").write_bytes(png(1, size=64))
    with pytest.raises(LayoutError, match=r"val_99\.JPEG has no valid label"):
        load_dataset("tinyimagenet", "test", root=tmp_path, strict=False)


# --------------------------------------------------------------------------- not found, names


def test_missing_dataset_lists_every_path(tmp_path, cache):
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("cifar10", "train", root=tmp_path)
    message = str(info.value)
    for expected in (f"{tmp_path}/cifar-10-batches-py", f"{tmp_path}/cifar10/{{train,test}}",
                     f"{tmp_path}/cifar-10-python.tar.gz", "download=True", "PATCHINIT_DATA"):
        assert expected in message
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("mnist", "train", root=tmp_path)
    assert f"{tmp_path}/mnist/" in str(info.value) and f"{tmp_path}/MNIST/raw/" in str(info.value)


def test_root_from_environment(tmp_path, cache, monkeypatch):
    make_mnist(tmp_path / "mnist")
    monkeypatch.setenv("PATCHINIT_DATA", str(tmp_path))
    assert load_dataset("mnist", "train", strict=False).source == str(tmp_path / "mnist")


def test_unknown_name_and_split(tmp_path):
    with pytest.raises(DatasetError, match="unknown dataset name='svhn'"):
        load_dataset("svhn", "train", root=tmp_path)
    with pytest.raises(DatasetError, match="unknown split='val' for mnist"):
        load_dataset("mnist", "val", root=tmp_path)


# --------------------------------------------------------------------------- cache


def test_cache_hit_does_not_decode(tmp_path, cache, count_decodes):
    make_tree(tmp_path, "cifar10", ["a", "b"], ["0.png", "1.png"])
    first = load_dataset("cifar10", "train", root=tmp_path, strict=False)
    second = load_dataset("cifar10", "train", root=tmp_path, strict=False)
    other = load_dataset("cifar10", "test", root=tmp_path, strict=False)
    assert len(count_decodes) == 1  # one decode served both splits
    np.testing.assert_array_equal(first.images, second.images)
    assert other.mean == first.mean and len(other) == 4
    mapped = load_dataset("cifar10", "train", root=tmp_path, strict=False, mmap=True)
    assert isinstance(mapped.images, np.memmap) and not mapped.images.flags.writeable
    np.testing.assert_array_equal(mapped.images, first.images)


def test_cache_invalidated_by_changed_tree(tmp_path, cache, count_decodes):
    make_tree(tmp_path, "cifar10", ["a", "b"], ["0.png", "1.png"])
    before = load_dataset("cifar10", "train", root=tmp_path, strict=False)
    path = tmp_path / "cifar10" / "train" / "a" / "0.png"
    path.write_bytes(png(77))
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    after = load_dataset("cifar10", "train", root=tmp_path, strict=False)
    assert len(count_decodes) == 2 and before.checksum != after.checksum
    assert after.images[0, 0, 0, 0] == 77


def test_cache_invalidated_by_changed_archive(tmp_path, cache, count_decodes):
    make_tree(tmp_path / "v1", "cifar10", ["a"], ["0.png"])
    make_tree(tmp_path / "v2", "cifar10", ["a"], ["0.png", "1.png"])
    archive = tar_folder(tmp_path / "root" / "c.tar.gz", tmp_path / "v1", "cifar10")
    assert len(load_dataset("cifar10", "train", root=archive.parent, strict=False)) == 1
    tar_folder(archive, tmp_path / "v2", "cifar10")
    assert len(load_dataset("cifar10", "train", root=archive.parent, strict=False)) == 2
    assert len(count_decodes) == 2


def test_interrupted_cache_write_leaves_no_entry(tmp_path, cache, count_decodes, monkeypatch):
    make_tree(tmp_path, "cifar10", ["a"], ["0.png"])
    original = cache_mod._write_json

    def crash(path, obj):
        raise OSError("simulated crash before the commit marker")

    monkeypatch.setattr(cache_mod, "_write_json", crash)
    data = load_dataset("cifar10", "train", root=tmp_path, strict=False)  # still usable
    assert len(data) == 1 and not list(cache.glob("*.meta.json")) and not list(cache.glob(".*.tmp"))
    monkeypatch.setattr(cache_mod, "_write_json", original)
    load_dataset("cifar10", "train", root=tmp_path, strict=False)
    assert len(count_decodes) == 2  # the arrays without a commit marker were not used
    assert len(list(cache.glob("*.meta.json"))) == 1


def test_partial_array_write_is_cleaned_up(tmp_path, cache, monkeypatch):
    make_tree(tmp_path, "cifar10", ["a"], ["0.png"])

    def half_save(fh, array, allow_pickle=False):
        fh.write(b"\x93NUMPY partial")
        raise OSError("disk full")

    monkeypatch.setattr(cache_mod.np, "save", half_save)
    load_dataset("cifar10", "train", root=tmp_path, strict=False)
    assert list(cache.iterdir()) == []  # no temp file, no final file


def test_damaged_cache_file_is_redecoded(tmp_path, cache, count_decodes):
    make_tree(tmp_path, "cifar10", ["a"], ["0.png", "1.png"])
    first = load_dataset("cifar10", "train", root=tmp_path, strict=False)
    (images,) = cache.glob("*.train.images.npy")
    images.write_bytes(images.read_bytes()[:-50])
    again = load_dataset("cifar10", "train", root=tmp_path, strict=False)
    assert len(count_decodes) == 2
    np.testing.assert_array_equal(again.images, first.images)


def test_format_version_bump_orphans_old_entries(tmp_path, cache, count_decodes, monkeypatch):
    """A change in how arrays are decoded (FORMAT_VERSION) misses every entry written before it;
    the old entry is left in place, and is served again under its own version."""
    make_tree(tmp_path, "cifar10", ["a", "b"], ["0.png", "1.png"])
    first = load_dataset("cifar10", "train", root=tmp_path, strict=False)
    version = cache_mod.FORMAT_VERSION
    monkeypatch.setattr(cache_mod, "FORMAT_VERSION", version + 1)
    bumped = load_dataset("cifar10", "train", root=tmp_path, strict=False)
    assert len(count_decodes) == 2
    np.testing.assert_array_equal(bumped.images, first.images)
    metas = sorted(cache.glob("*.meta.json"))
    assert len(metas) == 2 and sorted(json.loads(p.read_text())["format"] for p in metas) == [version, version + 1]
    load_dataset("cifar10", "train", root=tmp_path, strict=False)
    monkeypatch.setattr(cache_mod, "FORMAT_VERSION", version)
    load_dataset("cifar10", "train", root=tmp_path, strict=False)
    assert len(count_decodes) == 2  # each version found its own entry
    # an entry whose metadata names another format is a miss even under the right file name
    stem = cache_mod.entry_stem("cifar10", first.checksum)
    meta_path = cache / f"{stem}.meta.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps(dict(meta, format=version - 1)))
    load_dataset("cifar10", "train", root=tmp_path, strict=False)
    assert len(count_decodes) == 3 and json.loads(meta_path.read_text())["format"] == version


def test_cache_row_count_mismatch_is_redecoded(tmp_path, cache, count_decodes):
    """A cache array that loads fine but has another number of rows than its metadata is a miss."""
    make_tree(tmp_path, "cifar10", ["a", "b"], ["0.png", "1.png"])
    first = load_dataset("cifar10", "train", root=tmp_path, strict=False)
    (labels,) = cache.glob("*.train.labels.npy")
    np.save(labels, np.load(labels)[:-1])  # a valid .npy file, one row short
    again = load_dataset("cifar10", "train", root=tmp_path, strict=False)
    assert len(count_decodes) == 2 and len(again) == len(first) == 4
    np.testing.assert_array_equal(again.labels, first.labels)
    assert len(np.load(labels)) == 4  # the entry was written again
    load_dataset("cifar10", "train", root=tmp_path, strict=False)
    assert len(count_decodes) == 2


def test_resolve_cache_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("PATCHINIT_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    root = tmp_path / "root"
    root.mkdir()
    assert resolve_cache_dir(root) == root / ".patchinit-cache"
    root.chmod(0o555)
    try:
        assert resolve_cache_dir(root) == tmp_path / "xdg" / "patchinit"
    finally:
        root.chmod(0o755)
    monkeypatch.setenv("PATCHINIT_CACHE", str(tmp_path / "env"))
    assert resolve_cache_dir(root) == tmp_path / "env"
    assert resolve_cache_dir(root, tmp_path / "arg") == tmp_path / "arg"


# --------------------------------------------------------------------------- statistics


def test_channel_stats_matches_float_reference():
    images = np.random.default_rng(3).integers(0, 256, (50, 5, 7, 3), dtype=np.uint8)
    mean, std = channel_stats(images, chunk=7)
    reference = images.reshape(-1, 3).astype(np.float64) / 255
    np.testing.assert_allclose(mean, reference.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(std, reference.std(axis=0), rtol=1e-9)


def test_dataset_is_frozen(tmp_path, cache):
    make_mnist(tmp_path / "mnist")
    data = load_dataset("mnist", "train", root=tmp_path, strict=False)
    with pytest.raises(AttributeError):
        data.labels = None
    assert "n=6" in repr(data) and data.image_shape == (28, 28, 1)


def test_every_truncation_of_a_gzip_archive_is_caught(tmp_path):
    """tarfile's stream mode alone accepts some cuts (near a header); the gzip trailer check must not."""
    from patchinit.data.archives import _read_tar_stream

    make_tree(tmp_path / "src", "cifar10", ["a", "b"], [f"{i}.png" for i in range(20)])
    archive = tar_folder(tmp_path / "arc" / "c.tar.gz", tmp_path / "src", "cifar10")
    full = archive.read_bytes()
    assert len(_read_tar_stream(archive, lambda n: True)) == 80
    for cut in range(10, len(full) - 1, 97):
        archive.write_bytes(full[:cut])
        with pytest.raises(CorruptDataError, match="truncated or corrupt"):
            _read_tar_stream(archive, lambda n: True)
