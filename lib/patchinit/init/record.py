"""What a patch init did to each layer: the records both recipes return.

One conv layer, one record.  The fields both kinds share mean the same thing:
``layer`` (the conv's module name), the number of patches drawn from the layer's
source (``n_patches``), the images they came from (``n_images``) and the seconds
per stage (``times``; :attr:`total_time`).  :class:`MethodAResult` adds what
Fig. 1-style notebooks show of method A (the embedding, the clusters, the chosen
patches, the patterns); :class:`LayerRecord` what Tables 5.3 and 5.4 read of
method B (clusters kept, entropy of the chosen ones, filters left at the baseline).
Their flat summaries (:meth:`MethodAResult.summary`, :meth:`LayerRecord.as_dict`)
are what a results record stores, key for key as before.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import numpy as np

__all__ = ["MethodAResult", "LayerRecord", "LayerClusters", "STAGES"]

#: method B's stages, the ``time_<stage>`` columns of :meth:`LayerRecord.as_dict`
STAGES = ("selective_search", "patch_sampling", "activation_forward", "pca", "kmeans", "selection")


@dataclass
class MethodAResult:
    """What method A did for one conv layer (or, from :func:`method_a_patterns`, for a filter shape).

    Indices in ``nearest`` refer to the ``n_used`` clustered patches, whose
    2-D (or k-D) coordinates are ``embedding``.
    """

    filter_shape: tuple             # (out, in, kh, kw) of the filters formed
    mapping: str                    # where the patches came from: "image" (the images), "activations"
                                    # (the layer's input maps) or "volume" (image patterns resized in depth)
    n_images: int                   # images given
    n_patches: int                  # patches cut from them (or from their maps)
    n_kept: int                     # after the information filter (min_pixels)
    n_used: int                     # after the budget: the patches clustered
    skipped_images: np.ndarray      # rows of the images without SIFT keypoints
    kept_mask: np.ndarray           # (n_patches,) bool: passed the information filter
    embedding: np.ndarray           # (n_used, n_components) reduced coordinates (UMAP or PCA)
    cluster_labels: np.ndarray      # (n_used,) k-means cluster of every clustered patch
    centers: np.ndarray             # (k, n_components) k-means centres
    nearest: np.ndarray             # (k, m) the patches nearest each centre, nearest first
    chosen_image_index: np.ndarray  # (k, m) the image each of them was cut from (-1: unknown)
    chosen_patches: np.ndarray      # (k, m, C, h, w) those patches, raw values
    patterns_before_resize: np.ndarray  # (k, C, h, w) zero-mean patterns in pixel_space units
    patterns: np.ndarray            # (out, in, kh, kw) the filters, before ``scale``
    timings: dict                   # seconds per stage (extract, filter, subsample, reduce, kmeans, ...)
    options: dict                   # the MethodAOptions used, with the measured mean/std
    layer: str | None = None        # the conv's module name (None from method_a_patterns)
    scale: float = 1.0              # the uniform factor the patterns were written with
    from_cache: bool = False        # loaded from the on-disk pattern cache (timings: of the run that computed them)

    @property
    def times(self) -> dict:
        """``timings``, under the name method B's records use."""
        return self.timings

    @property
    def total_time(self) -> float:
        return float(sum(self.timings.values()))

    def summary(self, filter_std: float | None = None) -> dict:
        """The flat summary a results record stores for this layer."""
        out = {"n_patches": int(self.n_patches), "n_kept": int(self.n_kept), "n_used": int(self.n_used),
               "mapping": self.mapping, "timings": {k: round(float(v), 3) for k, v in self.timings.items()}}
        if filter_std is not None:
            out["filter_std"] = float(filter_std)
        if self.from_cache:
            out["from_cache"] = True
        return out


@dataclass
class LayerClusters:
    """The whole clustering of one layer (method B), for analysis beyond the selected clusters."""

    labels: np.ndarray       # (P,) k-means cluster of every patch
    classes: np.ndarray      # (P,) class of every patch's source image
    image_index: np.ndarray  # (P,) row of the source image in the images given
    entropy: np.ndarray      # (C,) label entropy of every cluster, bits
    kept: np.ndarray         # ids of the clusters large enough to be selected
    n_clusters: int


@dataclass
class LayerRecord:
    """What PatchesInit / SimpleInit (method B) did to one conv layer (Tables 5.3 and 5.4 read these)."""

    layer: str                    # the conv's module name
    index: int                    # 1-based position among the initialised convs, bottom-up
    criterion: str                # "high" (l < D), "low" (l >= D) or "simple"
    n_filters: int                # the conv's out_channels
    patch_shape: tuple[int, int, int]  # (C, k, k) of the patches: the filter's shape
    n_patches: int                # patches sampled (P, or fewer where the images ran out)
    n_images: int                 # distinct images they came from
    n_clusters: int               # C asked of k-means
    n_clusters_kept: int          # after dropping clusters smaller than min_cluster_size
    n_degenerate: int             # kept clusters whose pattern is constant (skipped)
    n_selected: int               # filters written from patterns
    n_baseline_filters: int       # filters left at the baseline (shortfall="baseline")
    mean_entropy_selected: float | None  # bits; Table 5.4 (None if no filter was written)
    entropy_selected: list[float]
    n_whole_image: int = 0        # layer 1: images sampled from the whole frame (too few box windows)
    mean_boxes: float | None = None  # layer 1: kept boxes per image
    per_image: int | None = None  # set where a small map gave fewer windows per image than config.per_image
    times: dict[str, float] = field(default_factory=dict)  # seconds per stage (STAGES)
    clusters: "LayerClusters | None" = None  # with config.keep_clusters: the full clustering
    gain: float | None = None     # match_random_std: the factor applied to the eq. 4.2 filters

    @property
    def total_time(self) -> float:
        return float(sum(self.times.values()))

    def as_dict(self) -> dict:
        """Flat dict (``time_<stage>`` columns), e.g. for a DataFrame or a results record."""
        d = asdict(replace(self, clusters=None))  # the clustering's arrays stay on the record only
        d.pop("clusters")
        times = d.pop("times")
        d["patch_shape"] = list(d["patch_shape"])
        for stage in STAGES:
            d[f"time_{stage}"] = float(times.get(stage, 0.0))
        d["time_total"] = self.total_time
        return d
