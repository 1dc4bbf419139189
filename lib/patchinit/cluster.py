"""Reduction, k-means, cluster selection and pattern formation.

Shared by both methods; nothing here knows where patches came from.  The
steps, each a small pure function:

1. :func:`reduce`  flatten patches and reduce them (UMAP or PCA);
2. :func:`kmeans`  cluster the reduced points (KMeans or MiniBatchKMeans);
3. (method B) :func:`drop_small_clusters`, :func:`cluster_entropy`,
   :func:`select_by_entropy` choose which clusters become filters;
4. :func:`nearest_points` / :func:`nearest_members` find, *in the reduced
   space*, the patches that stand for each centre;
5. :func:`form_patterns` takes those patches from the *original* patch space
   (the mean of the m nearest, or the single nearest);
6. :func:`center_and_resize` makes each pattern zero-mean and resizes it to
   the filter size.

Every random step takes an explicit ``seed``; the same seed gives the same
patterns.
"""
from __future__ import annotations

import logging
import warnings

import numpy as np
import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

REDUCERS = ("umap", "pca")
RESIZE_MODES = ("area", "bilinear")


def flatten(X) -> np.ndarray:
    """``(n, ...)`` -> ``(n, d)`` float32 (patches unrolled to vectors)."""
    X = np.asarray(X)
    if X.ndim < 2 or X.shape[0] == 0:
        raise ValueError(f"expected a non-empty array of shape (n, ...), got shape {X.shape}")
    return np.ascontiguousarray(X.reshape(X.shape[0], -1), dtype=np.float32)


# ----------------------------------------------------------------- reduction
def reduce(X, method: str = "umap", n_components: int = 2, seed: int = 0, *,
           n_neighbors: int = 15, min_dist: float = 0.1, **kwargs) -> np.ndarray:
    """Reduce ``X`` (patches, any trailing shape) to ``(n, n_components)`` float32.

    ``"umap"`` is ``umap.UMAP(n_neighbors=15, min_dist=0.1)`` (umap-learn's
    defaults) with ``random_state=seed``; a fixed ``random_state`` makes UMAP run
    single-threaded and deterministic (``n_jobs=1`` is passed so it does not
    warn).  ``"pca"`` is scikit-learn's ``PCA`` with ``random_state=seed`` (used
    only by the randomised solver).  Values are used in the units given; both
    reducers are insensitive to a common scale factor.  ``kwargs`` go to the
    estimator.
    """
    Xf = flatten(X)
    n, d = Xf.shape
    if method not in REDUCERS:
        raise ValueError(f"unknown reducer {method!r}; choose one of {REDUCERS}")
    if n_components < 1 or n_components > d:
        raise ValueError(f"n_components={n_components} must be in [1, {d}] (the patch dimension)")
    log.info("reducing %d x %d to %d dims with %s", n, d, n_components, method)
    if method == "pca":
        from sklearn.decomposition import PCA

        if n_components > n:
            raise ValueError(f"PCA to {n_components} dims needs at least that many patches, got {n}")
        Z = PCA(n_components=n_components, random_state=seed, **kwargs).fit_transform(Xf)
    else:
        if n <= n_neighbors:
            raise ValueError(f"UMAP with n_neighbors={n_neighbors} needs more than {n_neighbors} "
                             f"patches, got {n}; lower n_neighbors or use more patches")
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*n_jobs.*")
            # umap imports tqdm.auto, which warns in a notebook without ipywidgets
            warnings.filterwarnings("ignore", message="IProgress not found")
            import umap

            Z = umap.UMAP(n_components=n_components, n_neighbors=n_neighbors, min_dist=min_dist,
                          random_state=seed, n_jobs=1, **kwargs).fit_transform(Xf)
    return np.ascontiguousarray(Z, dtype=np.float32)


# -------------------------------------------------------------------- k-means
def kmeans(Z, k: int, seed: int = 0, *, minibatch: bool = False, batch_size: int = 256,
           max_iter: int | None = None, n_init="auto",
           n_threads: int | None = 1) -> tuple[np.ndarray, np.ndarray]:
    """Cluster ``Z`` into ``k`` groups: ``(labels int64 (n,), centers float32 (k, d))``.

    ``minibatch=False`` is ``sklearn.cluster.KMeans`` (``max_iter`` default 300);
    ``minibatch=True`` is ``MiniBatchKMeans(batch_size=..., max_iter=...)``
    (default 100; method B uses ``batch_size=256, max_iter=10``).  ``n_init`` is
    scikit-learn's (``"auto"``: one k-means++ start for KMeans).

    ``n_threads=1`` (default) caps scikit-learn's OpenMP threads for the call:
    the sums are then taken in one order, so the centres are bit-identical on
    any machine (with more threads they differ in the 5th digit), and on a
    busy small CPU it is also faster (OpenMP threads spin against other
    processes).  ``None`` leaves the thread count alone.
    """
    Zf = flatten(Z)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    if k > Zf.shape[0]:
        raise ValueError(f"cannot form k={k} clusters from {Zf.shape[0]} points; "
                         f"use more patches or fewer clusters")
    if minibatch:
        from sklearn.cluster import MiniBatchKMeans

        est = MiniBatchKMeans(n_clusters=k, batch_size=batch_size, max_iter=max_iter or 100,
                              n_init=n_init, random_state=seed)
    else:
        from sklearn.cluster import KMeans

        est = KMeans(n_clusters=k, max_iter=max_iter or 300, n_init=n_init, random_state=seed)
    if n_threads is None:
        labels = est.fit_predict(Zf)
    else:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=n_threads, user_api="openmp"):
            labels = est.fit_predict(Zf)
    return labels.astype(np.int64), est.cluster_centers_.astype(np.float32)


# ----------------------------------------------------- method B: which clusters
def cluster_sizes(labels, k: int | None = None) -> np.ndarray:
    """``(k,)`` number of points in each cluster (``k`` defaults to ``max(label) + 1``)."""
    labels = np.asarray(labels, dtype=np.int64)
    return np.bincount(labels, minlength=k or 0).astype(np.int64)


def drop_small_clusters(labels, k: int | None = None, min_size: int = 5) -> np.ndarray:
    """Ids of the clusters with at least ``min_size`` members (method B: 5), ascending."""
    return np.flatnonzero(cluster_sizes(labels, k) >= min_size).astype(np.int64)


def cluster_entropy(labels, classes, k: int | None = None) -> np.ndarray:
    """Shannon entropy, in bits, of the class labels inside each cluster.

    ``labels[i]`` is patch i's cluster, ``classes[i]`` the class of the image it
    came from.  ``H(c) = -sum_j p_j log2 p_j`` over the classes present; an empty
    cluster gets ``nan``.  A cluster holding classes [0, 0, 1, 1] has 1 bit.
    """
    labels = np.asarray(labels, dtype=np.int64)
    classes = np.asarray(classes, dtype=np.int64)
    if labels.shape != classes.shape:
        raise ValueError(f"labels {labels.shape} and classes {classes.shape} must have the same shape")
    k = k or (int(labels.max()) + 1 if labels.size else 0)
    n_cls = int(classes.max()) + 1 if classes.size else 1
    counts = np.zeros((k, n_cls), dtype=np.float64)
    np.add.at(counts, (labels, classes), 1.0)
    totals = counts.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = counts / totals
        h = -np.where(p > 0, p * np.log2(np.where(p > 0, p, 1.0)), 0.0).sum(axis=1)
    h[totals[:, 0] == 0] = np.nan
    return h + 0.0  # turn -0.0 into 0.0


def select_by_entropy(entropy, n: int, highest: bool = True, candidates=None) -> np.ndarray:
    """Ids of the ``n`` clusters with the highest (or lowest) entropy.

    Only ``candidates`` (default: every cluster with a finite entropy) are
    considered; ties go to the lower cluster id, so the choice is deterministic.
    """
    entropy = np.asarray(entropy, dtype=np.float64)
    cand = (np.flatnonzero(np.isfinite(entropy)) if candidates is None
            else np.asarray(candidates, dtype=np.int64))
    if n > cand.size:
        raise ValueError(f"asked for {n} clusters but only {cand.size} are candidates; "
                         f"raise the number of clusters C or lower min_size")
    key = -entropy[cand] if highest else entropy[cand]
    order = np.lexsort((cand, key))  # primary: entropy key, secondary: id
    return cand[order[:n]].astype(np.int64)


# ------------------------------------------------- which patches stand for a centre
def nearest_points(Z, centers, m: int) -> np.ndarray:
    """``(k, m)`` indices of the ``m`` points of ``Z`` closest to each centre, nearest first.

    Points are searched among *all* points, not only the centre's members
    (Lehmann & Ebner: "the 10 closest patches from each of the cluster centers").
    """
    from sklearn.neighbors import NearestNeighbors

    Zf, C = flatten(Z), flatten(centers)
    if m < 1 or m > Zf.shape[0]:
        raise ValueError(f"m={m} nearest points requested but there are {Zf.shape[0]} points")
    nn_ = NearestNeighbors(n_neighbors=m).fit(Zf)
    return nn_.kneighbors(C, return_distance=False).astype(np.int64)


def nearest_members(Z, labels, centers, clusters=None) -> np.ndarray:
    """Index of the member of each cluster closest to its centre (method B).

    ``clusters`` lists the cluster ids wanted (default all); asking for an empty
    cluster is an error (drop it with :func:`drop_small_clusters` first).
    """
    Zf, C = flatten(Z), flatten(centers)
    labels = np.asarray(labels, dtype=np.int64)
    ids = np.arange(C.shape[0]) if clusters is None else np.asarray(clusters, dtype=np.int64)
    out = np.empty(ids.size, dtype=np.int64)
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(C.shape[0] + 1))
    for j, c in enumerate(ids):
        members = order[bounds[c]:bounds[c + 1]]
        if members.size == 0:
            raise ValueError(f"cluster {c} is empty; drop it (drop_small_clusters) before asking "
                             f"for its nearest member")
        d = ((Zf[members] - C[c]) ** 2).sum(axis=1)
        out[j] = members[np.argmin(d)]
    return out


# ------------------------------------------------------------------- patterns
def form_patterns(patches, indices) -> np.ndarray:
    """Patterns from patches in their original space: ``(k, C, h, w)`` float32.

    ``indices`` of shape ``(k,)`` take one patch per pattern (the nearest);
    ``(k, m)`` average the ``m`` patches of each row (Lehmann & Ebner, MNIST, m=10).
    """
    arr = np.asarray(getattr(patches, "patches", patches))
    idx = np.asarray(indices, dtype=np.int64)
    if idx.ndim == 1:
        return arr[idx].astype(np.float32)
    if idx.ndim == 2:
        return arr[idx].astype(np.float32).mean(axis=1)
    raise ValueError(f"indices must have shape (k,) or (k, m), got {idx.shape}")


def zero_mean(patterns) -> np.ndarray:
    """Subtract from each pattern its mean over all its pixels *and* channels.

    One scalar per pattern, as the paper's "normalize each patch to have zero
    mean"; the colour balance between channels is kept.
    """
    p = np.asarray(patterns, dtype=np.float32)
    return p - p.reshape(p.shape[0], -1).mean(axis=1).reshape((-1,) + (1,) * (p.ndim - 1))


def resize_patterns(patterns, size, mode: str = "area") -> np.ndarray:
    """Resize ``(k, C, h, w)`` patterns to ``size`` = ``(kh, kw)`` (or an int).

    ``"area"`` is ``torch.nn.functional.interpolate(mode="area")``, i.e. adaptive
    average pooling: output cell i averages input rows ``floor(i*h/kh)`` to
    ``ceil((i+1)*h/kh) - 1``, unweighted.  When ``h/kh`` is not an integer the
    windows differ in size and overlap: 14 -> 5 averages rows [0-2], [2-5],
    [5-8], [8-11], [11-13] (3, 4, 4, 4, 3 rows).  ``"bilinear"`` is bilinear with
    ``antialias=True`` (a triangle filter widened by the scale factor).  The same
    size returns a copy.
    """
    if mode not in RESIZE_MODES:
        raise ValueError(f"unknown resize mode {mode!r}; choose one of {RESIZE_MODES}")
    size = (size, size) if isinstance(size, int) else tuple(size)
    p = np.asarray(patterns, dtype=np.float32)
    if p.ndim != 4:
        raise ValueError(f"patterns must have shape (k, C, h, w), got {p.shape}")
    if p.shape[2:] == size:
        return p.copy()
    t = torch.from_numpy(np.ascontiguousarray(p))
    if mode == "area":
        out = F.interpolate(t, size=size, mode="area")
    else:
        out = F.interpolate(t, size=size, mode="bilinear", align_corners=False, antialias=True)
    return out.numpy()


def resize_channels(patterns, n_channels: int) -> np.ndarray:
    """Resize the channel axis of ``(k, C, h, w)`` patterns to ``n_channels`` by area.

    Used to turn an image-patch pattern into a filter with a different number
    of input channels (the literal reading of Lehmann & Ebner's "reshaped
    according to the required filter tensor shape").  Going up, "area" copies:
    1 -> 20 channels tiles the grey pattern 20 times; 3 -> 16 repeats each
    colour channel about 5 times (with a few averaged neighbours).  Going down,
    it averages neighbouring channels.
    """
    p = np.asarray(patterns, dtype=np.float32)
    if p.ndim != 4:
        raise ValueError(f"patterns must have shape (k, C, h, w), got {p.shape}")
    if p.shape[1] == n_channels:
        return p.copy()
    k, c, h, w = p.shape
    t = torch.from_numpy(np.ascontiguousarray(p)).permute(0, 2, 3, 1).reshape(k * h * w, 1, c)
    out = F.interpolate(t, size=n_channels, mode="area")
    return out.reshape(k, h, w, n_channels).permute(0, 3, 1, 2).contiguous().numpy()


def center_and_resize(patterns, size, mode: str = "area") -> np.ndarray:
    """Zero-mean, then resize, then re-centre.

    Both resize modes are linear and keep constants, so centring before or after
    resizing differs only by the resized pattern's small residual mean (unequal
    "area" windows weight pixels unequally).  The last re-centring removes it:
    the result is exactly zero-mean per pattern, as the filters should be.
    """
    return zero_mean(resize_patterns(zero_mean(patterns), size, mode))
