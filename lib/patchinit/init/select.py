"""Cluster patches and pick the patterns that become filters: the selectors of both recipes.

Reducers and clusterers are :mod:`patchinit.cluster`'s; this module composes them.

==============  ====================================  =====================================
step            method A (:func:`kmeans_patterns`)    method B (:func:`choose_patterns`)
==============  ====================================  =====================================
reduce          UMAP to 2-D, or PCA                   PCA to 27 dims
cluster         ``KMeans(k = filters, n_init=10)``    ``MiniBatchKMeans(C)``
which clusters  every one                             by label entropy, high or low
                                                      (:func:`pick_clusters`); "simple": all
which patch     mean of the m nearest points          the member nearest the centroid
                (:func:`mean_of_nearest`), or the
                nearest point
form            zero-mean, resize to the filter       as cut (scaled later, eq. 4.2)
==============  ====================================  =====================================
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from patchinit import cluster
from patchinit.patches import PatchSet, subsample

__all__ = ["kmeans_patterns", "mean_of_nearest", "pick_clusters", "choose_patterns", "PatternChoice",
           "CRITERIA"]

CRITERIA = ("high", "low", "simple")


def mean_of_nearest(patches: np.ndarray, Z: np.ndarray, centers: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Method A's selector: per centre, the mean of the ``m`` points nearest it in the reduced space
    (among all points), taken from the original patch space; ``m = 1`` is the nearest point.
    Returns ``(patterns, nearest)`` with ``nearest`` the ``(k, m)`` indices."""
    nearest = cluster.nearest_points(Z, centers, m)
    return cluster.form_patterns(patches, nearest if m > 1 else nearest[:, 0]), nearest


def pick_clusters(entropy: np.ndarray, candidates: np.ndarray, n: int, criterion: str) -> np.ndarray:
    """Method B's selector: ``n`` of the ``candidates`` clusters, the highest-entropy ("high"), the
    lowest ("low"), or the first in id order ("simple", SimpleInit: no selection)."""
    if criterion == "simple":
        return candidates[:n]
    return cluster.select_by_entropy(entropy, n, highest=criterion == "high", candidates=candidates)


def kmeans_patterns(ps: PatchSet, filter_shape, opts, to_units,
                           rng: np.random.Generator, timings: dict) -> dict:
    """Budget, reduce, cluster, pick, and form filter-shaped patterns from ``ps``.

    ``to_units`` turns raw-valued patterns into the units the filters get.
    ``opts`` is a :class:`~patchinit.init.method_a.MethodAOptions`.  Returns the fields of
    :class:`~patchinit.init.record.MethodAResult` that these stages fill.
    """
    k, c_in, kh, kw = filter_shape
    t = time.perf_counter()
    ps = subsample(ps, opts.budget, rng)
    timings["subsample"] = time.perf_counter() - t

    t = time.perf_counter()
    emb = cluster.reduce(ps.patches, opts.reducer, opts.n_components, opts.seed,
                         n_neighbors=opts.n_neighbors)
    timings["reduce"] = time.perf_counter() - t

    t = time.perf_counter()
    labels, centers = cluster.kmeans(emb, k, opts.seed, n_init=opts.n_init)
    timings["kmeans"] = time.perf_counter() - t

    t = time.perf_counter()
    raw, nearest = mean_of_nearest(ps.patches, emb, centers, opts.m)
    before = cluster.zero_mean(to_units(raw))
    timings["patterns"] = time.perf_counter() - t

    t = time.perf_counter()
    patterns = cluster.center_and_resize(before, (kh, kw), opts.resize_mode)
    if patterns.shape[1] != c_in:
        patterns = cluster.zero_mean(cluster.resize_channels(patterns, c_in))
    timings["resize"] = time.perf_counter() - t

    return dict(n_used=len(ps), embedding=emb, cluster_labels=labels, centers=centers,
                nearest=nearest,
                chosen_image_index=(ps.image_index[nearest] if ps.image_index is not None
                                    else np.full(nearest.shape, -1)),
                chosen_patches=ps.patches[nearest],
                patterns_before_resize=before, patterns=patterns)


@dataclass(frozen=True)
class PatternChoice:
    """Outcome of :func:`choose_patterns` for one layer."""

    patterns: np.ndarray   # (n, C, k, k) chosen patterns, original patch space, in selection order
    clusters: np.ndarray   # (n,) their cluster ids
    entropy: np.ndarray    # (n,) their clusters' label entropy, bits
    n_clusters: int        # k asked of k-means
    n_kept: int            # clusters with >= min_size patches
    n_degenerate: int      # kept clusters whose pattern is constant (unusable)
    times: dict[str, float]
    labels: np.ndarray | None = None       # (P,) k-means cluster of every patch
    entropy_all: np.ndarray | None = None  # (n_clusters,) label entropy of every cluster, bits
    kept: np.ndarray | None = None         # ids of the clusters with >= min_size patches


def choose_patterns(patches, classes, n_filters: int, n_clusters: int, criterion: str,
                    config=None, seed: int = 0) -> PatternChoice:
    """Cluster patches and pick up to ``n_filters`` patterns (thesis §4.2.2).

    PCA to ``config.n_components`` dims, ``MiniBatchKMeans(n_clusters)``, drop
    clusters with fewer than ``config.min_cluster_size`` patches, label entropy of
    each cluster (``classes[i]`` is patch i's image class), then ``criterion``
    ``"high"``/``"low"`` takes the highest/lowest-entropy clusters and ``"simple"``
    takes every non-empty cluster in id order (SimpleInit: no selection, no size
    filter).  Each pattern is the member nearest its centroid in the PCA space,
    taken from ``patches`` (original space).  Clusters whose pattern is constant are
    skipped.  Fewer than ``n_filters`` patterns come back when too few clusters are
    usable; the caller decides what that means.  ``seed`` fixes PCA and k-means.
    """
    if config is None:
        from patchinit.init.options import MethodBConfig

        config = MethodBConfig()
    cfg = config
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be 'high', 'low' or 'simple', got {criterion!r}")
    arr = np.asarray(getattr(patches, "patches", patches))
    classes = np.asarray(classes, dtype=np.int64)
    if classes.shape != (arr.shape[0],):
        raise ValueError(f"classes has shape {classes.shape}, expected ({arr.shape[0]},)")
    ss = np.random.SeedSequence(int(seed)).generate_state(2)
    pca_seed, km_seed = int(ss[0]) % 2**31, int(ss[1]) % 2**31
    simple = criterion == "simple"
    times: dict[str, float] = {}

    flat = arr.reshape(arr.shape[0], -1)
    if arr.shape[0] and float(np.ptp(flat, axis=0).max(initial=0.0)) <= cfg.degenerate_tol:
        # every patch is the same (blank images, or a layer whose inputs are all zero): nothing to reduce or
        # cluster, and PCA would divide by a total variance of 0; one constant cluster, no usable pattern
        labels = np.zeros(arr.shape[0], dtype=np.int64)
        entropy = cluster.cluster_entropy(labels, classes, n_clusters)
        kept = cluster.drop_small_clusters(labels, n_clusters, 1 if simple else cfg.min_cluster_size)
        return PatternChoice(arr[:0], np.zeros(0, dtype=np.int64), np.zeros(0), int(n_clusters), int(kept.size),
                             int(kept.size), {"pca": 0.0, "kmeans": 0.0, "selection": 0.0}, labels=labels,
                             entropy_all=entropy, kept=kept)
    with threadpool_limits(cfg.blas_threads):
        t0 = time.perf_counter()
        n_comp = min(cfg.n_components, int(np.prod(arr.shape[1:])))
        Z = cluster.reduce(arr, method="pca", n_components=n_comp, seed=pca_seed, svd_solver=cfg.pca_solver)
        t1 = time.perf_counter()
        labels, centers = cluster.kmeans(Z, n_clusters, seed=km_seed, minibatch=True,
                                         batch_size=cfg.batch_size, max_iter=cfg.max_iter)
        t2 = time.perf_counter()
    entropy = cluster.cluster_entropy(labels, classes, n_clusters)
    kept = cluster.drop_small_clusters(labels, n_clusters, 1 if simple else cfg.min_cluster_size)
    patterns = cluster.form_patterns(arr, cluster.nearest_members(Z, labels, centers, kept))
    usable = patterns.reshape(len(kept), -1).std(axis=1) > cfg.degenerate_tol
    candidates = kept[usable]
    n_take = min(int(n_filters), candidates.size)
    chosen = pick_clusters(entropy, candidates, n_take, criterion)
    row_of = {c: i for i, c in enumerate(kept.tolist())}
    picked = patterns[[row_of[c] for c in chosen.tolist()]] if n_take else patterns[:0]
    times["pca"], times["kmeans"] = t1 - t0, t2 - t1
    times["selection"] = time.perf_counter() - t2
    return PatternChoice(picked, chosen, entropy[chosen], int(n_clusters), int(kept.size),
                         int((~usable).sum()), times, labels=np.asarray(labels), entropy_all=entropy,
                         kept=kept)
