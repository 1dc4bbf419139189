"""The settings of the two recipes: :class:`MethodAOptions` (Lehmann & Ebner) and :class:`MethodBConfig`
(PatchesInit), each checked when it is made.  The defaults are each paper's own recipe."""
from __future__ import annotations

from dataclasses import dataclass, field

from patchinit import cluster
from patchinit.init.normalise import PIXEL_SPACES
from patchinit.init.scale import SCALINGS

__all__ = ["MethodAOptions", "MethodBConfig", "SOURCES", "PATTERNS", "DEEP_MAPPINGS"]

SOURCES = ("grid", "sift")
PATTERNS = ("mean", "nearest")
DEEP_MAPPINGS = ("activations", "volume")


@dataclass(frozen=True)
class MethodAOptions:
    """Every setting of method A; the defaults are the paper's MNIST recipe.

    Where the patches come from: ``source`` "grid" (every ``patch_size`` square at ``stride``, MNIST) or
    "sift" (squares around SIFT keypoints, CIFAR; ``sift`` passes options to the detector); the
    information filter keeps a patch only if more than ``min_pixels`` of its pixels exceed
    ``black_level`` (raw uint8); ``budget`` draws at most that many of the kept patches (None: all, as
    the paper).  How they are clustered: ``reducer`` "umap" (to ``n_components`` dimensions, with
    ``n_neighbors``) or "pca", then k-means with ``n_init`` restarts and one cluster per filter.  How a
    filter is formed: ``pattern`` "mean" of the ``n_nearest`` patches to each centroid (MNIST) or the
    "nearest" patch (CIFAR), resized to the filter with ``resize_mode``, in ``pixel_space`` units
    ("unit": [0, 1] pixels less the channel ``mean``; "normalized": divided by ``std`` as well; None:
    measured on the images).  ``seed`` fixes UMAP, k-means and the budget's draws; ``progress`` shows bars.
    """

    source: str = "grid"            # "grid" (MNIST) or "sift" (CIFAR)
    patch_size: int = 14
    stride: int = 7                 # grid only
    min_pixels: int = 20            # information filter; 0 disables it
    black_level: int = 0            # a pixel is non-black when > black_level (raw uint8)
    sift: dict = field(default_factory=dict)  # keyword options of patches.sift_patches
    budget: int | None = None       # None: every kept patch (the paper)
    reducer: str = "umap"           # "umap" (MNIST) or "pca" (CIFAR)
    n_components: int = 2
    n_neighbors: int = 15           # UMAP only
    n_init: int = 10                # k-means restarts
    pattern: str = "mean"           # "mean" of n_nearest (MNIST) or "nearest" (CIFAR)
    n_nearest: int = 10
    resize_mode: str = "area"
    pixel_space: str = "unit"
    mean: tuple | None = None       # per-channel, in [0, 1] units; None: measured
    std: tuple | None = None
    seed: int = 0                   # UMAP, k-means and the budget's draws
    progress: bool | None = None   # None: bars on a terminal (patchinit.bars)

    def __post_init__(self):
        for name, value, allowed in (("source", self.source, SOURCES),
                                     ("pattern", self.pattern, PATTERNS),
                                     ("reducer", self.reducer, cluster.REDUCERS),
                                     ("resize_mode", self.resize_mode, cluster.RESIZE_MODES),
                                     ("pixel_space", self.pixel_space, PIXEL_SPACES)):
            if value not in allowed:
                raise ValueError(f"unknown {name}={value!r}; choose one of {allowed}")
        if self.patch_size < 1 or self.stride < 1 or self.n_nearest < 1:
            raise ValueError(f"patch_size, stride and n_nearest must be >= 1, got "
                             f"{self.patch_size}, {self.stride}, {self.n_nearest}")

    @property
    def m(self) -> int:
        """Patches per pattern: ``n_nearest`` for "mean", 1 for "nearest"."""
        return self.n_nearest if self.pattern == "mean" else 1


@dataclass(frozen=True)
class MethodBConfig:
    """The thesis's fixed settings (§5.2); change them only for ablations.

    Patches: ``per_image`` from each image (boxes of selective search covering at most
    ``max_box_fraction`` of it); activation maps are computed ``forward_batch`` images at a time.
    Clustering: PCA to ``n_components`` (``pca_solver``), MiniBatchKMeans with ``batch_size`` and
    ``max_iter``, clusters of fewer than ``min_cluster_size`` patches dropped, a pattern with std at or
    below ``degenerate_tol`` counted as constant; ``shortfall`` says what too few usable clusters do
    ("raise", or keep the ``baseline`` filters).  Scale: eq. 4.2 with n read as ``scaling`` ("fan",
    "neurons" or "channels"); ``match_random_std`` (our extension) rescales each layer to the output std
    of the baseline filters, measured on ``probe_images`` training images.  ``blas_threads`` caps the
    threads of PCA and k-means; ``keep_clusters`` keeps every patch's cluster in the records.
    """

    per_image: int = 50             # "50 patches from each input data point without replacement"
    n_components: int = 27          # PCA dimensions
    batch_size: int = 256           # MiniBatchKMeans
    max_iter: int = 10              # MiniBatchKMeans
    min_cluster_size: int = 5       # "filter out clusters that contain less than five patches"
    max_box_fraction: float = 0.5   # drop boxes covering more than 50% of the image
    scaling: str = "fan"            # n_{l-1}, n_{l+1}: "fan" (C*k*k), "neurons" (C*H*W) or "channels" (C)
    shortfall: str = "raise"        # "raise" or "baseline" when too few usable clusters
    pca_solver: str = "auto"        # sklearn PCA svd_solver; "auto" is sklearn's default, as in the thesis
    forward_batch: int = 500        # images per forward pass for activation maps
    degenerate_tol: float = 1e-6    # sigma at or below this counts as a constant pattern
    blas_threads: int | None = None  # cap BLAS/OpenMP threads in PCA and k-means (None: library default)
    keep_clusters: bool = False     # keep every patch's cluster and class in the records (LayerClusters)
    # Our extension, not the thesis's: after eq. 4.2, rescale each layer's patch filters so that its output
    # std on a batch of training images equals the std the baseline (Random) filters give on the same input
    # (the idea of LSUV, Mishkin & Matas 2016).  The patterns keep their directions; only their scale changes.
    match_random_std: bool = False
    probe_images: int = 256         # images in the batch that match_random_std measures on

    def __post_init__(self):
        if self.scaling not in SCALINGS:
            raise ValueError(f"scaling must be one of {SCALINGS}, got {self.scaling!r}")
        if self.shortfall not in ("raise", "baseline"):
            raise ValueError(f"shortfall must be 'raise' or 'baseline', got {self.shortfall!r}")
        for name in ("per_image", "n_components", "batch_size", "max_iter", "forward_batch"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
