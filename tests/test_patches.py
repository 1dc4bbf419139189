"""patchinit.patches: grid and SIFT extraction, the information filter, budgets."""
from __future__ import annotations

import numpy as np
import pytest

from patchinit.patches import (PatchSet, count_nonblack, cut_patches, filter_informative, grid_patches,
                               grid_positions, patches_per_image, sift_patches, subsample)


def _random_images(n=4, h=28, w=28, c=1, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w, c), dtype=np.uint8)


# ------------------------------------------------------------------- grid
def test_grid_mnist_geometry_nine_per_image():
    imgs = _random_images(5)
    ps = grid_patches(imgs, size=14, stride=7)
    assert len(ps) == 45 and ps.patch_shape == (1, 14, 14)
    assert ps.patches.dtype == np.uint8
    assert patches_per_image(28, 28, 14, 7) == 9
    np.testing.assert_array_equal(ps.image_index, np.repeat(np.arange(5), 9))
    assert sorted(set(map(tuple, ps.positions.tolist()))) == [(r, c) for r in (0, 7, 14) for c in (0, 7, 14)]


def test_grid_patch_content_matches_image_and_channels_first():
    imgs = _random_images(3, 10, 12, 3)
    ps = grid_patches(imgs, size=4, stride=3)
    for j in [0, 7, len(ps) - 1]:
        i, (r, c) = ps.image_index[j], ps.positions[j]
        np.testing.assert_array_equal(ps.patches[j], imgs[i, r:r + 4, c:c + 4].transpose(2, 0, 1))


def test_grid_accepts_channels_first_maps():
    maps = np.random.default_rng(1).normal(size=(2, 20, 12, 12)).astype(np.float32)
    ps = grid_patches(maps, size=6, stride=3, channels_last=False)
    assert len(ps) == 2 * 9 and ps.patch_shape == (20, 6, 6) and ps.patches.dtype == np.float32
    np.testing.assert_array_equal(ps.patches[10], maps[1, :, 0:6, 3:9])


def test_grid_errors_name_the_bad_value():
    with pytest.raises(ValueError, match="larger than the 28x28"):
        grid_positions(28, 28, 30, 7)
    with pytest.raises(ValueError, match="stride"):
        grid_positions(28, 28, 14, 0)
    with pytest.raises(ValueError, match="empty"):
        grid_patches(np.zeros((0, 28, 28, 1), np.uint8), 14, 7)


def test_cut_patches_rejects_windows_outside_the_image():
    with pytest.raises(ValueError, match="outside"):
        cut_patches(_random_images(1), [0], [[20, 0]], 14)


def test_patchset_select_keeps_provenance_aligned():
    ps = grid_patches(_random_images(3), 14, 7)
    sub = ps.select(np.array([26, 3, 9]))
    np.testing.assert_array_equal(sub.image_index, [2, 0, 1])
    np.testing.assert_array_equal(sub.patches[0], ps.patches[26])
    np.testing.assert_array_equal(sub.positions[1], ps.positions[3])
    with pytest.raises(ValueError, match="image_index"):
        PatchSet(ps.patches, ps.image_index[:3])


# ----------------------------------------------------------------- filter
def test_information_filter_drops_near_empty_patches():
    patches = np.zeros((4, 1, 14, 14), np.uint8)
    patches[1].reshape(-1)[:19] = 255   # 19 bright pixels: dropped
    patches[2].reshape(-1)[:20] = 1     # 20 dim but non-black pixels: kept
    patches[3].reshape(-1)[:100] = 200
    ps = PatchSet(patches, np.arange(4))
    np.testing.assert_array_equal(count_nonblack(ps), [0, 19, 20, 100])
    kept, mask = filter_informative(ps, min_pixels=20)
    np.testing.assert_array_equal(mask, [False, False, True, True])
    np.testing.assert_array_equal(kept.image_index, [2, 3])
    # raising the black level makes the dim pixels count as black
    _, mask = filter_informative(ps, min_pixels=20, black_level=1)
    np.testing.assert_array_equal(mask, [False, False, False, True])


def test_information_filter_colour_pixel_counts_once_if_any_channel_lit():
    p = np.zeros((1, 3, 5, 5), np.uint8)
    p[0, 0, 0, :] = 9      # 5 pixels lit in red
    p[0, 2, 0, :3] = 9     # 3 of the same pixels also lit in blue
    p[0, 1, 4, 4] = 9      # one more pixel in green
    assert count_nonblack(p)[0] == 6


# ---------------------------------------------------------------- budgets
def test_subsample_is_seeded_sorted_and_aligned():
    ps = grid_patches(_random_images(20), 14, 7)
    a, b, c = subsample(ps, 50, seed=3), subsample(ps, 50, seed=3), subsample(ps, 50, seed=4)
    assert len(a) == 50
    np.testing.assert_array_equal(a.patches, b.patches)
    assert not np.array_equal(a.positions, c.positions) or not np.array_equal(a.image_index, c.image_index)
    assert np.all(np.diff(a.image_index) >= 0)
    for j in range(0, 50, 7):
        i, (r, col) = a.image_index[j], a.positions[j]
        np.testing.assert_array_equal(a.patches[j, 0], _random_images(20)[i, r:r + 14, col:col + 14, 0])
    assert subsample(ps, None, seed=0) is ps and subsample(ps, 10_000, seed=0) is ps
    with pytest.raises(ValueError, match="budget"):
        subsample(ps, 0, seed=0)
    with pytest.raises(TypeError, match="seed"):
        subsample(ps, 5, seed=None)


# ------------------------------------------------------------------- SIFT
def _blobs_image(size=32, seed=0):
    rng = np.random.default_rng(seed)
    img = np.full((size, size, 3), 40, np.uint8)
    for _ in range(6):
        r, c = rng.integers(4, size - 4, 2)
        img[r - 2:r + 3, c - 2:c + 3] = rng.integers(120, 255, 3)
    return img


def test_sift_flat_image_is_skipped_and_counted():
    imgs = np.stack([_blobs_image(seed=0), np.full((32, 32, 3), 128, np.uint8), _blobs_image(seed=1)])
    ps, skipped = sift_patches(imgs, size=15, progress=False)
    np.testing.assert_array_equal(skipped, [1])
    assert len(ps) > 0 and ps.patch_shape == (3, 15, 15) and ps.patches.dtype == np.uint8
    assert set(ps.image_index.tolist()) <= {0, 2}
    # windows are clamped inside the image: every patch holds real pixels
    assert ps.positions.min() >= 0 and ps.positions.max() <= 32 - 15
    for j in range(len(ps)):
        i, (r, c) = ps.image_index[j], ps.positions[j]
        np.testing.assert_array_equal(ps.patches[j], imgs[i, r:r + 15, c:c + 15].transpose(2, 0, 1))


def test_sift_all_flat_gives_empty_set_not_error():
    ps, skipped = sift_patches(np.full((2, 32, 32, 3), 7, np.uint8), size=15, progress=False)
    assert len(ps) == 0 and ps.patch_shape == (3, 15, 15)
    np.testing.assert_array_equal(skipped, [0, 1])


def test_sift_max_keypoints_and_unique_windows():
    imgs = np.stack([_blobs_image(seed=s) for s in range(4)])
    full, _ = sift_patches(imgs, size=15, unique=False, progress=False)
    capped, _ = sift_patches(imgs, size=15, max_keypoints=2, unique=False, progress=False)
    assert np.bincount(capped.image_index).max() <= 2 < np.bincount(full.image_index).max()
    uniq, _ = sift_patches(imgs, size=15, progress=False)
    keys = set(zip(uniq.image_index.tolist(), map(tuple, uniq.positions.tolist())))
    assert len(keys) == len(uniq) <= len(full)


def test_sift_upscale_finds_more_keypoints():
    imgs = np.stack([_blobs_image(seed=s) for s in range(4)])
    base, _ = sift_patches(imgs, size=15, unique=False, progress=False)
    up, _ = sift_patches(imgs, size=15, unique=False, upscale=2, progress=False)
    assert len(up) > len(base)
    with pytest.raises(ValueError, match="patch size 40"):
        sift_patches(imgs, size=40, progress=False)


def test_real_mnist_grid_and_filter(data_root):
    from patchinit.data import load_dataset

    imgs = load_dataset("mnist", "train", root=data_root).images[:200]
    ps = grid_patches(imgs, 14, 7)
    kept, mask = filter_informative(ps, 20)
    assert len(ps) == 1800 and mask.sum() == len(kept)
    # MNIST digits sit in the centre: the centre window is always kept, a corner
    # window is dropped when the digit does not reach it (about 6% of all patches)
    centre = (ps.positions == [7, 7]).all(axis=1)
    corner = (ps.positions == [0, 0]).all(axis=1)
    assert mask[centre].all() and mask[corner].mean() < 0.9
    assert 0.85 < mask.mean() < 0.99
