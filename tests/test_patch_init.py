"""patch_init_ and the method A recipe (patchinit.init.patch, patchinit.init.method_a)."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn as nn

from patchinit.init import CIFAR, MNIST, baseline_init_, method_a_init_, method_a_patterns, patch_init_
from patchinit.models import build_model

FAST = dict(MNIST, reducer="pca", progress=False)  # the MNIST recipe with PCA: no numba compile


def _digits(n=60, seed=0):
    """MNIST-like uint8 images: black, with a few bright strokes near the centre."""
    rng = np.random.default_rng(seed)
    imgs = np.zeros((n, 28, 28, 1), np.uint8)
    for i in range(n):
        for _ in range(4):
            r, c = rng.integers(3, 16, 2)
            if rng.random() < 0.5:
                imgs[i, r:r + 2, c:c + rng.integers(8, 13)] = rng.integers(150, 256)
            else:
                imgs[i, r:r + rng.integers(8, 13), c:c + 2] = rng.integers(150, 256)
    return imgs


def _lenet(seed=0):
    return baseline_init_(build_model("lenet", 10), "kaiming_uniform", seed=seed)


def _snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _changed(before, model):
    return sorted(k for k, v in model.state_dict().items() if not torch.equal(v, before[k]))


# -------------------------------------------------------------- patch_init_
def test_patch_init_writes_patterns_in_place_and_scales():
    conv = nn.Conv2d(3, 4, 3)
    bias = conv.bias.detach().clone()
    p = np.random.default_rng(0).normal(size=(4, 3, 3, 3)).astype(np.float32)
    out = patch_init_(conv, p, scale=0.5)
    assert out is conv.weight
    torch.testing.assert_close(conv.weight.detach(), torch.from_numpy(p) * 0.5)
    assert torch.equal(conv.bias.detach(), bias)
    # a bare weight tensor and torch patterns work too
    w = torch.zeros(4, 3, 3, 3)
    patch_init_(w, torch.from_numpy(p))
    assert torch.equal(w, torch.from_numpy(p))


def test_patch_init_accepts_3d_patterns_for_one_input_channel():
    conv = nn.Conv2d(1, 20, 5)
    p = np.random.default_rng(0).normal(size=(20, 5, 5)).astype(np.float32)
    patch_init_(conv, p)
    assert torch.equal(conv.weight.detach()[:, 0], torch.from_numpy(p))


def test_patch_init_changes_only_its_target_layer():
    model = _lenet()
    before = _snapshot(model)
    patch_init_(model.conv1, np.ones((20, 1, 5, 5)))
    assert _changed(before, model) == ["conv1.weight"]


def test_patch_init_errors_name_both_shapes():
    conv = nn.Conv2d(1, 20, 5)
    with pytest.raises(ValueError, match=r"pattern shape \(20, 1, 3, 3\).*filter shape \(20, 1, 5, 5\)"):
        patch_init_(conv, np.zeros((20, 1, 3, 3)))
    with pytest.raises(ValueError, match="only 12 patterns for 20 filters"):
        patch_init_(conv, np.zeros((12, 1, 5, 5)))
    with pytest.raises(ValueError, match="NaN"):
        patch_init_(conv, np.full((20, 1, 5, 5), np.nan))
    with pytest.raises(TypeError, match="Linear"):
        patch_init_(nn.Linear(3, 4), np.zeros((4, 3)))


# ------------------------------------------------------- method A patterns
def test_method_a_patterns_counts_shapes_and_zero_mean():
    imgs = _digits(60)
    r = method_a_patterns(imgs, (20, 1, 5, 5), **dict(FAST, pixel_space="normalized"))
    assert r.n_images == 60 and r.n_patches == 540 and len(r.kept_mask) == 540
    assert r.n_kept == r.kept_mask.sum() == r.n_used < 540
    assert r.patterns.shape == (20, 1, 5, 5) and r.patterns.dtype == np.float32
    np.testing.assert_allclose(r.patterns.reshape(20, -1).mean(axis=1), 0, atol=1e-5)
    assert r.patterns_before_resize.shape == (20, 1, 14, 14)
    assert r.nearest.shape == (20, 10) and r.chosen_patches.shape == (20, 10, 1, 14, 14)
    assert r.embedding.shape == (r.n_used, 2) and r.cluster_labels.shape == (r.n_used,)
    assert {"extract", "filter", "reduce", "kmeans", "patterns", "resize"} <= set(r.timings)
    # the pattern is the mean of its 10 patches, in normalised units, then centred
    mean, std = r.options["mean"][0], r.options["std"][0]
    manual = (r.chosen_patches[3].astype(np.float32) / 255 - mean).mean(axis=0) / std
    np.testing.assert_allclose(r.patterns_before_resize[3], manual - manual.mean(), atol=1e-5)


def test_method_a_same_seed_identical_patterns_other_seed_differs():
    imgs = _digits(60)
    a = method_a_patterns(imgs, (20, 1, 5, 5), **FAST, budget=300, seed=1)
    b = method_a_patterns(imgs, (20, 1, 5, 5), **FAST, budget=300, seed=1)
    c = method_a_patterns(imgs, (20, 1, 5, 5), **FAST, budget=300, seed=2)
    assert a.n_used == 300
    np.testing.assert_array_equal(a.patterns, b.patterns)
    assert not np.array_equal(a.patterns, c.patterns)


def test_method_a_nearest_pattern_and_pixel_spaces():
    imgs = _digits(40)
    unit = method_a_patterns(imgs, (8, 1, 5, 5), **dict(FAST, pattern="nearest", pixel_space="unit"))
    raw = method_a_patterns(imgs, (8, 1, 5, 5), **dict(FAST, pattern="nearest", pixel_space="raw"))
    assert unit.nearest.shape == (8, 1)
    np.testing.assert_allclose(raw.patterns, unit.patterns * 255, rtol=1e-4, atol=1e-3)


def test_method_a_too_few_patches_says_what_to_change():
    imgs = np.zeros((3, 28, 28, 1), np.uint8)
    imgs[:, 10:14, 10:14] = 255      # 16 lit pixels: every patch fails min_pixels=20
    imgs[0, 5:25, 12] = 255          # one image with a stroke gives a few patches
    with pytest.raises(ValueError, match=r"only \d+ usable patches.*20 filters.*min_pixels"):
        method_a_patterns(imgs, (20, 1, 5, 5), **FAST)
    with pytest.raises(ValueError, match="raise budget"):
        method_a_patterns(_digits(30), (20, 1, 5, 5), **FAST, budget=15)


def test_method_a_rejects_empty_black_and_bad_options():
    with pytest.raises(ValueError, match="empty"):
        method_a_patterns(np.zeros((0, 28, 28, 1), np.uint8), (20, 1, 5, 5), **FAST)
    with pytest.raises(ValueError, match="all 4 images are black"):
        method_a_patterns(np.zeros((4, 28, 28, 1), np.uint8), (20, 1, 5, 5), **FAST)
    with pytest.raises(ValueError, match="unknown pattern='median'"):
        method_a_patterns(_digits(5), (20, 1, 5, 5), **dict(FAST, pattern="median"))
    with pytest.raises(ValueError, match="uint8"):
        method_a_patterns(_digits(5).astype(np.float32), (20, 1, 5, 5), **FAST)
    with pytest.raises(TypeError):
        method_a_patterns(_digits(5), (20, 1, 5, 5), **FAST, min_pixel=3)  # misspelt option


# ------------------------------------------------------ method A in place
def test_method_a_init_conv1_changes_only_conv1_and_accepts_dataset():
    model = _lenet()
    before = _snapshot(model)
    ds = SimpleNamespace(images=_digits(60), mean=(0.13,), std=(0.31,))
    (r,) = method_a_init_(model, ds, ["conv1"], **dict(FAST, pixel_space="normalized"))
    assert _changed(before, model) == ["conv1.weight"]
    assert r.layer == "conv1" and r.mapping == "image" and r.options["std"] == [0.31]
    torch.testing.assert_close(model.conv1.weight.detach(), torch.from_numpy(r.patterns))


def test_method_a_init_conv2_from_activations():
    model = _lenet()
    imgs = _digits(60)
    method_a_init_(model, imgs, ["conv1"], **FAST)
    before = _snapshot(model)
    (r,) = method_a_init_(model, imgs, ["conv2"], **FAST, budget=400)
    assert _changed(before, model) == ["conv2.weight"]
    assert r.mapping == "activations" and r.patterns.shape == (50, 20, 5, 5)
    assert (r.options["activation_patch_size"], r.options["activation_stride"]) == (6, 3)
    # ceil(400 / 9) = 45 images are forwarded, then the 405 patches cut down to 400
    assert r.n_patches == 405 and r.n_used == 400 and r.chosen_patches.shape[2:] == (20, 6, 6)
    np.testing.assert_allclose(r.patterns.reshape(50, -1).mean(axis=1), 0, atol=1e-4)
    assert model.training  # the training flag is restored after the forward pass


def test_method_a_init_conv2_volume_tiles_the_image_pattern():
    model = _lenet()
    (r,) = method_a_init_(model, _digits(60), ["conv2"], deep_mapping="volume", **FAST)
    assert r.mapping == "volume" and r.patterns.shape == (50, 20, 5, 5)
    w = model.conv2.weight.detach()
    assert torch.equal(w[:, 0], w[:, 19])


def test_method_a_init_unknown_layer_lists_conv_layers():
    with pytest.raises(ValueError, match=r"'conv3' does not exist.*\['conv1', 'conv2'\]"):
        method_a_init_(_lenet(), _digits(5), ["conv3"], **FAST)
    with pytest.raises(ValueError, match="'fc1' is not a Conv2d"):
        method_a_init_(_lenet(), _digits(5), ["fc1"], **FAST)
    with pytest.warns(DeprecationWarning, match="deprecated"), pytest.raises(ValueError, match="'conv4' does not exist"):
        method_a_init_(_lenet(), "conv4", _digits(5), **FAST)  # the old (model, layer, images) form still works
    with pytest.raises(ValueError, match="takes 1 channels, but the images have 3"):
        method_a_init_(_lenet(), np.repeat(_digits(5), 3, axis=-1), ["conv1"], **FAST)


def test_cifar_recipe_on_colour_images_uses_sift_and_pca():
    rng = np.random.default_rng(0)
    imgs = np.full((40, 32, 32, 3), 30, np.uint8)
    for i in range(40):
        for _ in range(5):
            r, c = rng.integers(3, 27, 2)
            imgs[i, r:r + 4, c:c + 4] = rng.integers(100, 256, 3)
    imgs[7] = 128  # flat: no keypoint, skipped
    conv = nn.Conv2d(3, 16, 3)
    model = nn.Sequential()
    model.add_module("conv1", conv)
    (r,) = method_a_init_(model, imgs, ["conv1"], **dict(CIFAR, progress=False))
    assert r.patterns.shape == (16, 3, 3, 3) and r.chosen_patches.shape == (16, 1, 3, 15, 15)
    assert 7 in r.skipped_images.tolist()
    np.testing.assert_allclose(r.patterns.reshape(16, -1).mean(axis=1), 0, atol=1e-5)


def test_cifar_recipe_without_keypoints_says_how_to_find_more():
    model = nn.Sequential()
    model.add_module("conv1", nn.Conv2d(3, 16, 3))
    with pytest.raises(ValueError, match=r"only 0 usable patches.*upscale"):
        method_a_init_(model, np.full((5, 32, 32, 3), 90, np.uint8), ["conv1"],
                       **dict(CIFAR, progress=False, mean=(0.49, 0.48, 0.45), std=(0.2, 0.2, 0.2)))


@pytest.mark.slow
def test_real_mnist_umap_recipe_is_deterministic(data_root):
    from patchinit.data import load_dataset

    ds = load_dataset("mnist", "train", root=data_root)
    imgs = ds.images[:1000]
    opts = dict(MNIST, budget=2000, seed=0, progress=False, mean=ds.mean, std=ds.std)
    a = method_a_patterns(imgs, (20, 1, 5, 5), **opts)
    b = method_a_patterns(imgs, (20, 1, 5, 5), **opts)
    assert a.n_patches == 9000 and 0.85 * 9000 < a.n_kept < 9000 and a.n_used == 2000
    np.testing.assert_array_equal(a.patterns, b.patterns)
    np.testing.assert_allclose(a.patterns.reshape(20, -1).mean(axis=1), 0, atol=1e-5)


def test_the_pattern_cache_serves_another_process_the_same_filters(tmp_path, monkeypatch, caplog):
    from patchinit.init import method_a, pattern_cache

    def fresh_process():  # what a new process has: an empty in-process memo
        monkeypatch.setattr(method_a, "_MEMO", type(method_a._MEMO)())

    computed = []
    real = method_a.method_a_patterns
    monkeypatch.setattr(method_a, "method_a_patterns", lambda *a, **k: computed.append(1) or real(*a, **k))
    imgs = _digits(60)

    monkeypatch.delenv(pattern_cache.ENV, raising=False)  # unset: no disk cache, nothing written
    fresh_process()
    (plain,) = method_a_init_(_lenet(), imgs, ["conv1"], **FAST)
    assert len(computed) == 1 and not plain.from_cache and "from_cache" not in plain.summary()

    monkeypatch.setenv(pattern_cache.ENV, str(tmp_path / "patterns"))
    filters = []
    for _ in range(2):
        fresh_process()
        model = _lenet()
        (r,) = method_a_init_(model, imgs, ["conv1"], **FAST)
        filters.append((model.conv1.weight.detach().clone(), r))
    assert len(computed) == 2  # computed once more, to fill the cache; then loaded
    (w1, r1), (w2, r2) = filters
    torch.testing.assert_close(w1, w2, rtol=0, atol=0)
    torch.testing.assert_close(w1, model.conv1.weight.detach().new_tensor(plain.patterns), rtol=0, atol=0)
    assert not r1.from_cache and r2.from_cache and r2.summary()["from_cache"] is True
    assert r2.timings == r1.timings  # the timings of the run that computed them
    (entry,) = (tmp_path / "patterns").iterdir()

    fresh_process()  # another seed is another key
    method_a_init_(_lenet(), imgs, ["conv1"], **FAST, seed=1)
    assert len(computed) == 3 and len(list((tmp_path / "patterns").iterdir())) == 2

    entry.write_bytes(b"torn")  # an unreadable entry is recomputed and replaced
    fresh_process()
    with caplog.at_level("WARNING"):
        (r,) = method_a_init_(_lenet(), imgs, ["conv1"], **FAST)
    assert len(computed) == 4 and not r.from_cache and "cannot be read" in caplog.text
    fresh_process()
    (r,) = method_a_init_(_lenet(), imgs, ["conv1"], **FAST)
    assert len(computed) == 4 and r.from_cache


def test_the_pattern_cache_key_names_the_library_versions(monkeypatch, tmp_path):
    from patchinit.init import pattern_cache

    here = pattern_cache.entry_path("k", tmp_path)
    monkeypatch.setattr(pattern_cache, "_versions", lambda: "umap-learn=9.9")
    assert pattern_cache.entry_path("k", tmp_path) != here  # an upgrade misses the cache
    assert pattern_cache.entry_path("k2", tmp_path) != pattern_cache.entry_path("k", tmp_path)
