"""patchinit.cluster: reduction, k-means, selection by entropy, pattern formation."""
from __future__ import annotations

import numpy as np
import pytest

from patchinit import cluster


def _blobs(n_per=40, centres=((0, 0), (10, 0), (0, 10)), seed=0):
    rng = np.random.default_rng(seed)
    pts = [rng.normal(c, 0.5, size=(n_per, len(c))) for c in centres]
    return np.concatenate(pts).astype(np.float32), np.repeat(np.arange(len(centres)), n_per)


# -------------------------------------------------------------- reduction
def test_pca_reduce_shape_dtype_and_determinism():
    X = np.random.default_rng(0).integers(0, 256, size=(300, 1, 6, 6)).astype(np.uint8)
    Z = cluster.reduce(X, "pca", n_components=5, seed=1)
    assert Z.shape == (300, 5) and Z.dtype == np.float32
    np.testing.assert_array_equal(Z, cluster.reduce(X, "pca", n_components=5, seed=1))


def test_reduce_errors():
    X = np.zeros((10, 4), np.float32)
    with pytest.raises(ValueError, match="unknown reducer 'tsne'"):
        cluster.reduce(X, "tsne")
    with pytest.raises(ValueError, match="n_components=9"):
        cluster.reduce(X, "pca", n_components=9)
    with pytest.raises(ValueError, match="n_neighbors=15"):
        cluster.reduce(X, "umap")


@pytest.mark.slow
def test_umap_reduce_is_deterministic_for_a_seed():
    X, _ = _blobs(60, centres=((0,) * 8, (6,) * 8))
    a = cluster.reduce(X, "umap", 2, seed=0)
    b = cluster.reduce(X, "umap", 2, seed=0)
    assert a.shape == (120, 2) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- k-means
@pytest.mark.parametrize("minibatch", [False, True])
def test_kmeans_finds_separated_blobs_and_is_deterministic(minibatch):
    Z, truth = _blobs()
    labels, centers = cluster.kmeans(Z, 3, seed=0, minibatch=minibatch, max_iter=10 if minibatch else None)
    assert labels.shape == (120,) and labels.dtype == np.int64 and centers.shape == (3, 2)
    # a perfect clustering up to renaming: each true blob maps to one label
    assert all(len(set(labels[truth == t])) == 1 for t in range(3)) and len(set(labels)) == 3
    l2, c2 = cluster.kmeans(Z, 3, seed=0, minibatch=minibatch, max_iter=10 if minibatch else None)
    np.testing.assert_array_equal(labels, l2)
    np.testing.assert_array_equal(centers, c2)


def test_kmeans_errors():
    with pytest.raises(ValueError, match="k=5 clusters from 3 points"):
        cluster.kmeans(np.zeros((3, 2)), 5)
    with pytest.raises(ValueError, match="positive int"):
        cluster.kmeans(np.zeros((3, 2)), 0)


# ------------------------------------------------------- nearest patches
def test_nearest_points_overall_and_nearest_member():
    Z = np.array([[0.0, 0], [1, 0], [2, 0], [10, 0], [3, 0]], np.float32)
    centers = np.array([[0.1, 0], [9, 0]], np.float32)
    np.testing.assert_array_equal(cluster.nearest_points(Z, centers, 2), [[0, 1], [3, 4]])
    labels = np.array([0, 0, 0, 1, 0])
    # nearest *member* of cluster 1 is point 3 even though it is far
    np.testing.assert_array_equal(cluster.nearest_members(Z, labels, centers), [0, 3])
    np.testing.assert_array_equal(cluster.nearest_members(Z, labels, centers, clusters=[1]), [3])
    with pytest.raises(ValueError, match="cluster 1 is empty"):
        cluster.nearest_members(Z, np.zeros(5, int), centers)
    with pytest.raises(ValueError, match="m=6"):
        cluster.nearest_points(Z, centers, 6)


def test_form_patterns_mean_and_single():
    patches = np.arange(4 * 2 * 3 * 3, dtype=np.uint8).reshape(4, 2, 3, 3)
    single = cluster.form_patterns(patches, np.array([2, 0]))
    np.testing.assert_array_equal(single, patches[[2, 0]].astype(np.float32))
    mean = cluster.form_patterns(patches, np.array([[0, 1], [2, 3]]))
    assert mean.shape == (2, 2, 3, 3) and mean.dtype == np.float32
    np.testing.assert_allclose(mean[1], patches[2:4].mean(axis=0))


# ------------------------------------------------------ centre and resize
def test_zero_mean_is_per_pattern_over_all_channels():
    p = np.zeros((2, 3, 2, 2), np.float32)
    p[0, 0] = 3.0                      # one bright channel
    p[1] = np.arange(12).reshape(3, 2, 2)
    z = cluster.zero_mean(p)
    np.testing.assert_allclose(z.reshape(2, -1).mean(axis=1), 0, atol=1e-6)
    # a single scalar is removed per pattern, so channel differences survive
    np.testing.assert_allclose(z[0, 0] - z[0, 1], 3.0)


def test_area_resize_14_to_5_uses_overlapping_windows():
    p = np.random.default_rng(0).normal(size=(1, 1, 14, 14)).astype(np.float32)
    out = cluster.resize_patterns(p, 5, "area")
    windows = [(0, 3), (2, 6), (5, 9), (8, 12), (11, 14)]  # the docstring's rows
    expect = np.array([[p[0, 0, r0:r1, c0:c1].mean() for c0, c1 in windows] for r0, r1 in windows])
    np.testing.assert_allclose(out[0, 0], expect, rtol=1e-5, atol=1e-6)


def test_center_and_resize_gives_zero_mean_filters_of_the_right_size():
    p = np.random.default_rng(0).uniform(0, 255, size=(20, 1, 14, 14))
    for mode in ("area", "bilinear"):
        out = cluster.center_and_resize(p, (5, 5), mode)
        assert out.shape == (20, 1, 5, 5) and out.dtype == np.float32
        np.testing.assert_allclose(out.reshape(20, -1).mean(axis=1), 0, atol=1e-5)
    same = cluster.resize_patterns(p, 14)
    np.testing.assert_allclose(same, p.astype(np.float32))
    with pytest.raises(ValueError, match="unknown resize mode 'cubic'"):
        cluster.resize_patterns(p, 5, "cubic")


def test_resize_channels_tiles_a_grey_pattern():
    p = np.random.default_rng(0).normal(size=(3, 1, 5, 5)).astype(np.float32)
    t = cluster.resize_channels(p, 20)
    assert t.shape == (3, 20, 5, 5)
    np.testing.assert_array_equal(t, np.repeat(p, 20, axis=1))
    down = cluster.resize_channels(np.repeat(p, 4, axis=1), 2)
    np.testing.assert_allclose(down, np.repeat(p, 2, axis=1), rtol=1e-6)


# -------------------------------------------------- entropy and selection
def test_cluster_entropy_in_bits():
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2])
    classes = np.array([0, 0, 1, 1, 3, 3, 3, 3, 0, 1, 2, 3])
    h = cluster.cluster_entropy(labels, classes, k=4)
    np.testing.assert_allclose(h[:3], [1.0, 0.0, 2.0])
    assert np.isnan(h[3])          # empty cluster
    with pytest.raises(ValueError, match="same shape"):
        cluster.cluster_entropy(labels, classes[:-1])


def test_drop_small_clusters_and_select_by_entropy():
    labels = np.array([0] * 6 + [1] * 4 + [2] * 5 + [3] * 9)
    kept = cluster.drop_small_clusters(labels, k=5, min_size=5)
    np.testing.assert_array_equal(kept, [0, 2, 3])
    entropy = np.array([0.5, 3.0, 2.0, 2.0, np.nan])
    np.testing.assert_array_equal(cluster.select_by_entropy(entropy, 2, highest=True), [1, 2])  # tie 2/3 -> id 2
    np.testing.assert_array_equal(cluster.select_by_entropy(entropy, 2, highest=False), [0, 2])
    np.testing.assert_array_equal(cluster.select_by_entropy(entropy, 2, candidates=kept), [2, 3])
    with pytest.raises(ValueError, match="only 3 are candidates"):
        cluster.select_by_entropy(entropy, 4, candidates=kept)


def test_same_seed_same_patterns_pca_pipeline():
    X = np.random.default_rng(0).integers(0, 256, size=(400, 3, 15, 15)).astype(np.uint8)

    def run(seed):
        Z = cluster.reduce(X, "pca", 2, seed=seed)
        labels, centers = cluster.kmeans(Z, 16, seed=seed)
        idx = cluster.nearest_points(Z, centers, 1)[:, 0]
        return cluster.center_and_resize(cluster.form_patterns(X, idx), 3)

    a, b = run(0), run(0)
    assert a.shape == (16, 3, 3, 3)
    np.testing.assert_array_equal(a, b)
