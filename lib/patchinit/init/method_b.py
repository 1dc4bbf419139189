"""Method B: PatchesInit and SimpleInit (Rencoret's thesis, §4 and §5.2).

A recipe over the shared parts, layer by layer in forward order:

===========  =================================================================
where from   layer 1: patches inside selective-search boxes of the images
             (:mod:`patchinit.patches.boxes`); layer l > 1: patches of the input
             maps of layer l, produced by the already-initialised layers 1..l-1
             (:mod:`patchinit.patches.activations`).  P patches, 50 per image,
             the filter's size, no resizing.
clusters     PCA to 27 dims, ``MiniBatchKMeans(C, batch_size=256, max_iter=10)``,
             drop clusters with fewer than 5 patches (:mod:`patchinit.cluster`).
which ones   label entropy in bits of every cluster; layers l < D take the
             highest-entropy clusters ("common"), layers l >= D the lowest
             ("discriminative").  SimpleInit: C = number of filters, no selection.
pattern      the member nearest its centroid (distance in the PCA space), taken
             in the original patch space.
scaling      ``(pattern - mu) / sigma * sqrt(2) / sqrt(n_{l-1} + n_{l+1})``,
             see :func:`scale_patterns`.
===========  =================================================================

Reading of the thesis where it is not explicit (the book states these):

* **mu, sigma** -- "the mean and standard deviation of the pattern" (§4.2.3): one
  scalar each per pattern, over all its ``C*k*k`` values; sigma is the population
  standard deviation (``ddof=0``).  Each filter therefore has mean 0 and standard
  deviation exactly the factor below.
* **n_{l-1}, n_{l+1}** -- "the number of neurons in the previous and next layer",
  used as "the normalization factor used by the Xavier initialization" (§3.1,
  eq. 3.1; Glorot & Bengio).  For a conv layer that factor is
  ``sqrt(2 / (fan_in + fan_out))`` with ``fan_in = C_in*k*k`` and
  ``fan_out = C_out*k*k`` (``torch.nn.init.xavier_normal_``, which is the thesis's
  *Random* baseline), so we read ``n_{l-1} = fan_in`` and ``n_{l+1} = fan_out``.
  Then every PatchesInit filter has the same standard deviation as a Xavier-normal
  filter, and only the *direction* of the weights comes from the data.  The
  literal alternative, channel counts ``n_{l-1} = C_in``, ``n_{l+1} = C_out``,
  gives filters ``k = 3`` times larger; ``config.scaling = "channels"`` selects it.
* **inputs** -- images are scaled to [0, 1] and normalised with the dataset's
  ``mean``/``std`` when given, i.e. patches are what the first conv sees; deeper
  patches are the conv's input (after ReLU and pooling), windows of the map
  zero-padded as the conv pads it.
* **images** -- one seeded sample of ``ceil(P / 50)`` images without replacement
  serves every layer (Algorithm 1 passes the same X through the model for each
  layer); selective search runs only on these images.  Each layer draws its own
  50 positions per image.  Labels for the entropy are the classes of the patches'
  source images.  ``P`` not a multiple of 50: the last image gives fewer patches.
* **degenerate patterns** -- a selected cluster whose nearest member is constant
  (sigma = 0, e.g. all-zero ReLU maps of flat image regions) cannot be
  standardised; such clusters are skipped and the next one in entropy order
  is taken.  The count is recorded (``n_degenerate``).
* **too few clusters** -- if fewer usable clusters remain than the layer has
  filters, ``config.shortfall = "raise"`` (default) raises an error naming P, C
  and the counts; ``"baseline"`` keeps the baseline values for the remaining
  filters and records how many (``n_baseline_filters``).  SimpleInit (C equals the
  number of filters) does not drop small clusters -- that filter is part of the
  selection it skips -- so a shortfall there comes only from empty or degenerate
  clusters.
* **residual networks** -- the convs are walked in forward order (a ResNet's
  ``conv1, conv2``, then the block's 1x1 ``downsample`` conv, whose input is the
  block's input); each one's maps come from a forward pass through the
  residual structure of the layers already initialised.  Batch-norm layers
  normalise with the statistics of each forward batch (``forward_batch``
  images), as in training.  The 1x1 shortcut convs get PatchesInit too: their
  patches are single positions of the block input (one value per channel),
  clustered and scaled like any other layer.  Partial-PatchesInit (``layers``)
  leaves them at the baseline, as the thesis's layer count implies.  A map with
  fewer distinct windows than ``per_image`` (the 4x4 and 2x2 maps of the last
  stages of a ResNet-18 on 64x64 images give 16 and 4 padded 3x3 windows) gives
  all of them, from as many more seeded images as P needs (at most every image);
  the record holds ``per_image`` for such layers.
* **D** -- 1-based index of the first layer that selects low-entropy clusters
  (the thesis's "5C-1D" on Conv6 is ``D = 6``, "0C-6D" is ``D = 1`` and "6C-0D" is
  ``D = 7``, i.e. ``len(layers) + 1``); default: the last conv.

Order: :func:`patches_init_` first applies ``baseline_init_(model, baseline,
seed)`` to every layer, so the FC layers (and any filter not overwritten) equal
the *Random* model of the same seed exactly, then overwrites the convs in forward
order.  Convert to a supermask afterwards (``to_supermask_``).
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from patchinit import bars, cluster
from patchinit.init.baselines import baseline_init_
from patchinit.init.patch import patch_init_
from patchinit.patches.activations import concat_patchsets, conv_window, layer_input, window_patches
from patchinit.patches.base import PatchSet
from patchinit.patches.boxes import sample_box_patches, selective_search_many

log = logging.getLogger(__name__)

__all__ = ["MethodBConfig", "LayerRecord", "PatternChoice", "patches_init_", "partial_patches_init_",
           "partial_options", "choose_patterns",
           "LayerClusters", "scale_patterns", "xavier_counts", "matching_gain", "conv_map_sizes", "criteria", "STAGES", "SCALINGS"]

SCALINGS = ("fan", "channels", "neurons")
STAGES = ("selective_search", "patch_sampling", "activation_forward", "pca", "kmeans", "selection")


@dataclass(frozen=True)
class MethodBConfig:
    """The thesis's fixed settings (§5.2); change them only for ablations."""

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


@dataclass
class LayerClusters:
    """The whole clustering of one layer, for analysis beyond the selected clusters."""

    labels: np.ndarray       # (P,) k-means cluster of every patch
    classes: np.ndarray      # (P,) class of every patch's source image
    image_index: np.ndarray  # (P,) row of the source image in the images given
    entropy: np.ndarray      # (C,) label entropy of every cluster, bits
    kept: np.ndarray         # ids of the clusters large enough to be selected
    n_clusters: int


@dataclass
class LayerRecord:
    """What PatchesInit did to one conv layer (Tables 5.3 and 5.4 read these)."""

    layer: str
    index: int                    # 1-based position among the initialised convs
    criterion: str                # "high" (l < D), "low" (l >= D) or "simple"
    n_filters: int
    patch_shape: tuple[int, int, int]
    n_patches: int
    n_images: int
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


# ----------------------------------------------------------------- scaling
@torch.no_grad()
def matching_gain(conv: nn.Conv2d, x: torch.Tensor, baseline: torch.Tensor, patterns: torch.Tensor) -> float:
    """The factor that gives filters ``patterns`` the output std that ``baseline`` filters (the same
    rows of the layer) give on input ``x``: std(conv_baseline(x)) / std(conv_patterns(x))."""
    def out_std(w):
        return float(torch.nn.functional.conv2d(x, w, None, conv.stride, conv.padding, conv.dilation, conv.groups).std())

    target, current = out_std(baseline), out_std(patterns)
    if not (current > 0 and math.isfinite(current)):
        raise ValueError(f"cannot match the baseline's output std: the patch filters give std {current} on the probe batch")
    return target / current


def xavier_counts(conv: nn.Conv2d, scaling: str = "fan",
                  maps: tuple[tuple[int, int], tuple[int, int]] | None = None) -> tuple[int, int]:
    """``(n_{l-1}, n_{l+1})`` of the thesis's eq. 4.2 for ``conv`` (module docstring).

    ``scaling="neurons"`` counts the units of the conv's input and output maps,
    ``C_in*H_in*W_in`` and ``C_out*H_out*W_out``, and needs their spatial sizes
    ``maps = ((H_in, W_in), (H_out, W_out))`` (see :func:`conv_map_sizes`).
    """
    c_out, c_in_per_group = conv.weight.shape[:2]
    c_in = c_in_per_group * conv.groups
    if scaling == "channels":
        return c_in, c_out
    if scaling == "fan":
        receptive = conv.weight[0, 0].numel()
        return c_in_per_group * receptive, c_out * receptive
    if scaling == "neurons":
        if maps is None:
            raise ValueError("scaling='neurons' needs the conv's input and output map sizes (maps=...)")
        (h_in, w_in), (h_out, w_out) = maps
        return c_in * h_in * w_in, c_out * h_out * w_out
    raise ValueError(f"scaling must be one of {SCALINGS}, got {scaling!r}")


@torch.no_grad()
def conv_map_sizes(model: nn.Module, image_shape: tuple[int, int, int],
                   names: Sequence[str]) -> dict[str, tuple[tuple[int, int], tuple[int, int]]]:
    """Spatial sizes ``((H_in, W_in), (H_out, W_out))`` of the named convs for one
    ``image_shape = (C, H, W)`` input, from a single forward pass of a zero image."""
    modules = dict(model.named_modules())
    sizes: dict = {}
    hooks = [modules[n].register_forward_hook(
        lambda m, i, o, n=n: sizes.__setitem__(n, (tuple(i[0].shape[-2:]), tuple(o.shape[-2:]))))
        for n in names]
    was_training = model.training
    try:
        model.eval()
        device = next(model.parameters()).device
        model(torch.zeros((1, *image_shape), device=device))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    missing = [n for n in names if n not in sizes]
    if missing:
        raise ValueError(f"layers {missing} were not reached by the forward pass")
    return sizes


def scale_patterns(patterns: np.ndarray, n_prev: int, n_next: int) -> np.ndarray:
    """Eq. 4.2: ``(pattern - mu) / sigma * sqrt(2) / sqrt(n_prev + n_next)`` per pattern.

    ``mu`` and ``sigma`` are each pattern's own mean and population standard
    deviation over all its values.  A constant pattern (sigma = 0) is an error:
    callers skip such patterns before scaling.
    """
    p = np.asarray(patterns, dtype=np.float64)
    flat = p.reshape(p.shape[0], -1)
    mu = flat.mean(axis=1, keepdims=True)
    sigma = flat.std(axis=1, keepdims=True)
    if np.any(sigma == 0):
        raise ValueError(f"{int((sigma == 0).sum())} pattern(s) are constant (sigma = 0) and cannot be "
                         f"standardised; drop them first")
    if n_prev < 1 or n_next < 1:
        raise ValueError(f"n_prev and n_next must be positive, got {n_prev}, {n_next}")
    factor = math.sqrt(2.0) / math.sqrt(n_prev + n_next)
    return ((flat - mu) / sigma * factor).reshape(p.shape).astype(np.float32)


def criteria(n_layers: int, D: int | None) -> list[str]:
    """``"high"`` for layers ``l < D``, ``"low"`` for ``l >= D`` (1-based ``l``)."""
    if D is None:
        D = n_layers
    if isinstance(D, bool) or not isinstance(D, (int, np.integer)) or not 1 <= D <= n_layers + 1:
        raise ValueError(f"D must be an int in [1, {n_layers + 1}] (1-based first layer with low-entropy "
                         f"clusters; {n_layers + 1} = none), got D={D!r}")
    return ["high" if l < D else "low" for l in range(1, n_layers + 1)]


# ------------------------------------------------------------ inputs and layers
def _channel_stats(value, n_channels: int, name: str, default: float) -> np.ndarray:
    if value is None:
        return np.full(n_channels, default, dtype=np.float32)
    arr = np.asarray(value, dtype=np.float32).reshape(-1)
    if arr.size == 1:
        arr = np.repeat(arr, n_channels)
    if arr.size != n_channels:
        raise ValueError(f"{name} has {arr.size} values for {n_channels}-channel images")
    if name == "mean" and np.any(np.abs(arr) > 1):
        raise ValueError(f"mean must be in [0, 1] pixel units (e.g. 0.4914), got {arr.tolist()}")
    if name == "std" and np.any(arr <= 0):
        raise ValueError(f"std must be positive, got {arr.tolist()}")
    return arr


class _Normaliser:
    """uint8 channels-last pixels -> what the model's first layer sees."""

    def __init__(self, n_channels: int, mean=None, std=None):
        self.mean = _channel_stats(mean, n_channels, "mean", 0.0)
        self.std = _channel_stats(std, n_channels, "std", 1.0)

    def patches(self, p: np.ndarray) -> np.ndarray:
        """``(n, C, k, k)`` uint8 patches -> float32."""
        return ((p.astype(np.float32) / 255.0 - self.mean[:, None, None]) / self.std[:, None, None])

    def images(self, imgs: np.ndarray, device) -> torch.Tensor:
        """``(n, H, W, C)`` uint8 -> ``(n, C, H, W)`` float32 tensor on ``device``."""
        x = torch.from_numpy(np.ascontiguousarray(imgs)).to(device).permute(0, 3, 1, 2).float() / 255.0
        mean = torch.from_numpy(self.mean).to(device)[:, None, None]
        std = torch.from_numpy(self.std).to(device)[:, None, None]
        return (x - mean) / std


def _conv_layers(model: nn.Module, layers: Sequence[str] | None) -> list[tuple[str, nn.Conv2d]]:
    if layers is None:
        layers = getattr(model, "conv_names", None)
    if layers is None:
        layers = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    out = []
    for name in layers:
        try:
            m = model.get_submodule(name)
        except AttributeError:
            raise ValueError(f"model has no layer {name!r}; check the layers argument") from None
        if not isinstance(m, nn.Conv2d):
            raise ValueError(f"layer {name!r} is a {type(m).__name__}, not an nn.Conv2d")
        out.append((name, m))
    if not out:
        raise ValueError("no conv layer to initialise; pass layers=[...] names of nn.Conv2d layers")
    return out


def _check_data(images, labels) -> tuple[np.ndarray, np.ndarray]:
    imgs = np.asarray(images)
    if imgs.ndim == 3:
        imgs = imgs[..., None]
    if imgs.ndim != 4 or imgs.dtype != np.uint8:
        raise ValueError(f"images must be uint8 (N, H, W, C) as load_dataset returns them; "
                         f"got {imgs.dtype} {imgs.shape}")
    labs = np.asarray(labels).astype(np.int64, copy=False).reshape(-1)
    if labs.shape[0] != imgs.shape[0]:
        raise ValueError(f"{labs.shape[0]} labels for {imgs.shape[0]} images")
    return imgs, labs


def _layer_seeds(seed: int, index: int) -> tuple[np.random.Generator, int]:
    """Independent streams per layer: (patch-sampling rng, seed for PCA and k-means)."""
    rng_seed, choice_seed = np.random.SeedSequence([int(seed), int(index)]).generate_state(2)
    return np.random.default_rng(int(rng_seed)), int(choice_seed)


# ---------------------------------------------------------------- one layer
class _PatchSource:
    """The P patches of each layer, from one seeded sample of ``ceil(P / 50)`` images.

    Layer 1: selective-search boxes of those images.  Layer l > 1: windows of the
    maps those images produce at the layer's input.  For a chain model that offers
    ``forward_from(x, start, stop)`` (``ConvNet``), the previous layer's input is
    kept and only the segment between the two convs runs, so the whole init costs
    one forward pass; any other model runs from the images up to the layer
    (:func:`~patchinit.patches.activations.layer_input`).  The cached maps of the
    sampled images are held in memory (262 MB for Conv2/4/6's second conv at P=50k).
    """

    def __init__(self, model, imgs, norm, n_patches, cfg, seed, workers, progress):
        self.model, self.imgs, self.norm, self.cfg = model, imgs, norm, cfg
        self.n_patches, self.workers, self.progress = n_patches, workers, progress
        n_img = math.ceil(n_patches / cfg.per_image)
        if n_img > imgs.shape[0]:
            raise ValueError(f"P={n_patches} patches at {cfg.per_image} per image need {n_img} images but "
                             f"only {imgs.shape[0]} are given; lower P or pass more images")
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0]).generate_state(1)[0])
        self.rows = np.sort(rng.choice(imgs.shape[0], size=n_img, replace=False))
        self.device = next(model.parameters()).device
        self.cached: tuple[str, list[torch.Tensor]] | None = None  # (conv name, its input per batch)

    def _batches(self, rows: np.ndarray | None = None) -> list[np.ndarray]:
        """``rows`` (default: the shared image sample) in ``forward_batch`` pieces."""
        rows = self.rows if rows is None else rows
        step = self.cfg.forward_batch
        return [rows[i:i + step] for i in range(0, rows.size, step)]

    def first_layer(self, name, conv, rng, times) -> tuple[PatchSet, dict]:
        if conv.in_channels != self.imgs.shape[3]:
            raise ValueError(f"first layer {name!r} takes {conv.in_channels} channels but images have "
                             f"{self.imgs.shape[3]}")
        t0 = time.perf_counter()
        boxes = selective_search_many(self.imgs, self.rows, self.cfg.max_box_fraction, workers=self.workers,
                                      progress=self.progress)
        t1 = time.perf_counter()
        sampled = sample_box_patches(self.imgs, self.rows, boxes, conv.kernel_size[0], self.cfg.per_image, rng)
        ps = sampled.patchset
        ps = PatchSet(self.norm.patches(ps.patches), ps.image_index, ps.positions)
        if hasattr(self.model, "forward_from"):
            self.cached = (name, [self.norm.images(self.imgs[r], self.device) for r in self._batches()])
        times["selective_search"] = t1 - t0
        times["patch_sampling"] = time.perf_counter() - t1
        return self._trim(ps), {"n_whole_image": sampled.n_whole_image, "mean_boxes": sampled.mean_boxes}

    @torch.no_grad()
    def later_layer(self, name, conv, rng, times) -> tuple[PatchSet, dict]:
        t0 = time.perf_counter()
        size, padding = conv_window(conv, name)
        rows = self.rows
        batches = self._batches()  # the image rows of each map batch
        if self.cached is not None:
            prev, inputs = self.cached
            maps = [self.model.forward_from(x, prev, name) for x in inputs]
            self.cached = (name, maps)
        else:
            maps = self._maps(name, batches)
        h, w = maps[0].shape[-2:]
        n_windows = (h + 2 * padding - size + 1) * (w + 2 * padding - size + 1)
        per_image = min(self.cfg.per_image, n_windows)
        extra = {}
        if per_image < self.cfg.per_image:
            # a small map (a ResNet's last stages) has fewer distinct windows than per_image: take them all,
            # from as many more images (seeded, disjoint from the shared sample) as P needs
            need = min(math.ceil(self.n_patches / per_image), self.imgs.shape[0])
            if need > rows.size:
                rest = np.setdiff1d(np.arange(self.imgs.shape[0]), rows)
                more = self._batches(np.sort(rng.choice(rest, size=need - rows.size, replace=False)))
                maps, batches = maps + self._maps(name, more), batches + more
            extra = {"per_image": per_image}
        parts = [window_patches(m, size, padding, per_image, rng, r) for m, r in zip(maps, batches)]
        times["activation_forward"] = time.perf_counter() - t0
        return self._trim(concat_patchsets(parts)), extra

    def _maps(self, name: str, batches: list[np.ndarray]) -> list[torch.Tensor]:
        """The input maps of conv ``name`` for each batch of image rows.  BN layers normalise with each
        batch's statistics, as in training (a fresh net's running statistics would leave them
        un-normalised), and their running statistics are left as they were."""
        return [layer_input(self.model, name, self.norm.images(self.imgs[r], self.device), batch_norm="batch")
                for r in batches]

    @torch.no_grad()
    def probe(self, name: str, index: int) -> torch.Tensor:
        """The input of conv ``name`` for the first ``config.probe_images`` sampled images, through the
        layers initialised so far (for ``match_random_std``)."""
        rows = self.rows[:self.cfg.probe_images]
        x = self.norm.images(self.imgs[rows], self.device)
        return x if index == 1 else layer_input(self.model, name, x, batch_norm="batch")

    def _trim(self, ps: PatchSet) -> PatchSet:
        return ps.select(np.arange(self.n_patches)) if len(ps) > self.n_patches else ps


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
                    config: MethodBConfig | None = None, seed: int = 0) -> PatternChoice:
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
    cfg = config or MethodBConfig()
    if criterion not in ("high", "low", "simple"):
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
    if simple:
        chosen = candidates[:n_take]
    else:
        chosen = cluster.select_by_entropy(entropy, n_take, highest=criterion == "high",
                                           candidates=candidates)
    row_of = {c: i for i, c in enumerate(kept.tolist())}
    picked = patterns[[row_of[c] for c in chosen.tolist()]] if n_take else patterns[:0]
    times["pca"], times["kmeans"] = t1 - t0, t2 - t1
    times["selection"] = time.perf_counter() - t2
    return PatternChoice(picked, chosen, entropy[chosen], int(n_clusters), int(kept.size),
                         int((~usable).sum()), times, labels=np.asarray(labels), entropy_all=entropy,
                         kept=kept)


def _init_layer(source: _PatchSource, index, name, conv, criterion, labs, n_clusters, cfg,
                seed, maps=None) -> LayerRecord:
    """Sample, choose, scale and write the filters of one conv layer."""
    times: dict[str, float] = {}
    rng, choice_seed = _layer_seeds(seed, index)
    sample = source.first_layer if index == 1 else source.later_layer
    ps, extra = sample(name, conv, rng, times)
    n_patches = source.n_patches
    n_filters = conv.out_channels
    k = n_filters if criterion == "simple" else n_clusters
    what = f"layer {index} ({name!r})"
    if k > len(ps):
        n_img = int(np.unique(ps.image_index).size)
        raise ValueError(
            f"{what}: cannot form {'its ' + str(k) + ' SimpleInit' if criterion == 'simple' else 'C=' + str(k)} "
            f"clusters from {len(ps)} patches (P={n_patches} asked; {n_img} images gave {len(ps)}); "
            + ("lower C, or raise P and give more images" if criterion != "simple" else "raise P or give more images"))
    try:
        choice = choose_patterns(ps, labs[ps.image_index], n_filters, k, criterion, cfg, choice_seed)
    except ValueError as e:
        raise ValueError(f"{what}: {e}") from e
    n_take = len(choice.clusters)
    if n_take < n_filters and cfg.shortfall == "raise":
        blank = (" Every patch of this layer is the same: are the images blank (all one value)?"
                 if n_take == 0 and choice.n_kept <= 1 and choice.n_degenerate == choice.n_kept else "")
        raise ValueError(
            f"{what} has {n_filters} filters but only {n_take} usable clusters from "
            f"P={n_patches} patches and C={k} clusters ({choice.n_kept} with enough patches, "
            f"{choice.n_degenerate} with a constant pattern); raise C or P, or pass "
            f"config=MethodBConfig(shortfall='baseline') to keep baseline filters.{blank}")
    t0 = time.perf_counter()
    gain = None
    if n_take:
        filters = scale_patterns(choice.patterns, *xavier_counts(conv, cfg.scaling, maps))
        weight = conv.weight.detach().clone()  # rows past n_take keep their baseline values
        new = torch.from_numpy(filters).to(weight.device, weight.dtype)
        if cfg.match_random_std:
            x = source.probe(name, index)
            gain = matching_gain(conv, x, weight[:n_take], new)
            new = new * gain
        weight[:n_take] = new
        patch_init_(conv, weight)
    times.update(choice.times)
    times["selection"] += time.perf_counter() - t0
    if n_take < n_filters:
        log.warning("layer %d (%s): %d of %d filters keep their baseline values (only %d usable clusters)",
                    index, name, n_filters - n_take, n_filters, n_take)
    ent = choice.entropy.astype(float).tolist()
    clusters = None
    if cfg.keep_clusters:
        clusters = LayerClusters(labels=choice.labels, classes=labs[ps.image_index], image_index=ps.image_index,
                                 entropy=choice.entropy_all, kept=choice.kept, n_clusters=k)
    return LayerRecord(
        layer=name, index=index, criterion=criterion, n_filters=n_filters, patch_shape=ps.patch_shape,
        n_patches=len(ps), n_images=int(np.unique(ps.image_index).size), n_clusters=k,
        n_clusters_kept=choice.n_kept, n_degenerate=choice.n_degenerate, n_selected=n_take,
        n_baseline_filters=n_filters - n_take,
        mean_entropy_selected=float(np.mean(ent)) if ent else None,
        entropy_selected=ent, times=times, clusters=clusters, gain=gain, **extra)


# --------------------------------------------------------------------- entry
def patches_init_(model: nn.Module, images, labels, P: int = 50_000, C: int = 500, D: int | None = None,
                  seed: int = 0, simple: bool = False, baseline: str = "xavier_normal", *,
                  mean=None, std=None, layers: Sequence[str] | None = None,
                  config: MethodBConfig | None = None, workers: int | None = None,
                  progress: bool | None = None) -> list[LayerRecord]:
    """Initialise ``model``'s conv layers in place with PatchesInit; return one record per layer.

    ``images`` uint8 ``(N, H, W, C)`` and ``labels`` ``(N,)`` are the training set
    (or the part of it to draw from); ``mean``/``std`` the per-channel
    normalisation in [0, 1] units that the model will be trained with.  ``P``
    patches and ``C`` clusters per layer; ``D`` the 1-based first layer that takes
    low-entropy clusters (default: the last).  ``simple=True`` is SimpleInit
    (C = number of filters, no selection; ``C`` and ``D`` are ignored).
    ``layers`` names the convs to initialise in forward order (default
    ``model.conv_names`` or every ``nn.Conv2d``); Partial-PatchesInit passes the
    first block's convs.  Everything else first gets ``baseline_init_(model,
    baseline, seed=seed)``.  ``workers`` threads run selective search.
    """
    cfg = config or MethodBConfig()
    imgs, labs = _check_data(images, labels)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an int, got {seed!r}")
    for name, value in (("P", P), ("C", C)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    convs = _conv_layers(model, layers)
    kinds = ["simple"] * len(convs) if simple else criteria(len(convs), D)
    norm = _Normaliser(imgs.shape[3], mean, std)

    source = _PatchSource(model, imgs, norm, int(P), cfg, seed, workers, progress)  # checks P first

    baseline_init_(model, baseline, seed=seed)
    maps = (conv_map_sizes(model, (imgs.shape[3], imgs.shape[1], imgs.shape[2]), [n for n, _ in convs])
            if cfg.scaling == "neurons" else {})
    records = []
    bar = tqdm(list(zip(convs, kinds)), desc="SimpleInit" if simple else "PatchesInit", unit="layer",
               disable=bars.disable(progress))
    for index, ((name, conv), kind) in enumerate(bar, start=1):
        bar.set_postfix_str(name)
        rec = _init_layer(source, index, name, conv, kind, labs, int(C), cfg, seed, maps.get(name))
        log.info("%s %s: %d filters from %d clusters (kept %d), mean entropy %s bits, %.2f s",
                 "SimpleInit" if simple else "PatchesInit", name, rec.n_selected, rec.n_clusters,
                 rec.n_clusters_kept, rec.mean_entropy_selected, rec.total_time)
        records.append(rec)
    return records


def partial_options(blocks: int) -> dict:
    """The ``layers`` and ``D`` of Partial-PatchesInit up to the ``blocks``-th ResNet stage.

    The layers are :func:`patchinit.models.resnet.resnet18_partial_layers` (no 1x1 shortcut convs, as
    the thesis's "9 convolutional layers up to the second block" counts them).  ``D`` is one past the
    last initialised layer: the thesis's D is the network's last layer, which stays random, so every
    initialised layer takes high-entropy clusters.
    """
    from patchinit.models.resnet import resnet18_partial_layers

    layers = resnet18_partial_layers(int(blocks))
    return {"layers": layers, "D": len(layers) + 1}


def partial_patches_init_(model: nn.Module, images, labels, blocks: int = 1, **kwargs) -> list[LayerRecord]:
    """Partial-PatchesInit (thesis §5.5): PatchesInit for a ResNet's stem and its first ``blocks``
    stages only (:func:`partial_options`); every other layer keeps ``baseline_init_(model, baseline,
    seed)``, i.e. exactly the values of the Random run with the same seed.  ``D`` may be overridden;
    other ``kwargs`` go to :func:`patches_init_`.
    """
    if "layers" in kwargs:
        raise ValueError("partial_patches_init_ picks the layers from blocks; call patches_init_ to pass layers")
    opts = partial_options(blocks)
    kwargs.setdefault("D", opts["D"])
    return patches_init_(model, images, labels, layers=opts["layers"], **kwargs)
