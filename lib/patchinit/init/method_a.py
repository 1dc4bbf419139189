"""Method A (Lehmann & Ebner): conv filters from clustered image patches.

The recipe, as a composition of :mod:`patchinit.patches` and
:mod:`patchinit.cluster`::

    cut patches (grid 14x14/7 on MNIST, or 15x15 around SIFT keypoints on CIFAR)
    -> drop patches with < 20 non-black pixels
    -> (optional) seeded patch budget
    -> reduce (UMAP to 2-D on MNIST, PCA on CIFAR) -> k-means, k = number of filters
    -> per centre: mean of the 10 nearest patches (MNIST) or the nearest one (CIFAR),
       taken from the original patch space
    -> into the network's input units -> zero-mean -> resize to the filter size

:func:`method_a_patterns` is the pure part (images -> patterns + a record of
every stage); :func:`method_a_init_` finds the layer, picks how patches reach
it, and writes the patterns with :func:`patchinit.init.patch.patch_init_`.

Choices the paper leaves open (the book states them):

* **Units.** Patterns are taken in ``pixel_space="unit"`` by default: x/255, the
  [0, 1] units of an image tensor before normalisation.  After the zero-mean step
  a LeNet conv1 filter then has std ≈ 0.23, close to Kaiming-normal's 0.28.
  ``"normalized"`` ((x/255 - mean_c)/std_c, the units the network sees) makes the
  filters 1/std_c ≈ 3x larger (std ≈ 0.7 on MNIST), far above every random
  baseline's scale; the MNIST chapter of the book trains LeNet with both.
  ``"raw"`` (0..255) is 255x larger still.  No other scaling is applied (``scale=1``).
* **Clustering** runs on the raw patch values (UMAP and PCA do not care about a
  common scale).  k-means uses ``n_init=10``, scikit-learn's default when the
  paper was written.
* **Resize** is "area" (adaptive average pooling, see
  :func:`patchinit.cluster.resize_patterns`), then the pattern is re-centred so
  each filter is exactly zero-mean.
* **Deeper layers** (a filter with a different number of input channels than
  the image, e.g. LeNet conv2, 50 x 20 x 5 x 5):

  - ``deep_mapping="activations"`` (default): forward the images through the
    model up to the layer (the layers below are already initialised), cut grid
    patches from the *input maps of that layer* covering the same fraction of
    the map as the image patches cover of the image (LeNet conv2: 12x12 maps,
    6x6 windows at stride 3, 9 per image, at least the kernel size), skip the
    information filter (activation maps have no "black"), then cluster and
    resize exactly as for the first layer.  Patterns stay in activation units.
    Batch-norm layers below normalise with the statistics of each batch of 512
    images, as in training (a fresh network's running statistics would leave
    them un-normalised, and the maps of a ResNet-18 grow by orders of magnitude
    with depth).
  - ``deep_mapping="volume"``: the image-patch patterns of the first layer's
    recipe, resized along the channel axis to the layer's input channels
    (:func:`patchinit.cluster.resize_channels`; a grey pattern is tiled across
    the 20 channels).  This is the literal "reshape to the filter tensor shape".
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm

from patchinit import bars, cluster
from patchinit.data.datasets import channel_stats
from patchinit.init.patch import patch_init_
from patchinit.patches import (PatchSet, as_image_array, as_rng, filter_informative, grid_patches,
                               sift_patches, subsample)
from patchinit.patches.activations import layer_input

log = logging.getLogger(__name__)

SOURCES = ("grid", "sift")
PATTERNS = ("mean", "nearest")
PIXEL_SPACES = ("normalized", "unit", "raw")
DEEP_MAPPINGS = ("activations", "volume")


@dataclass(frozen=True)
class MethodAOptions:
    """Every setting of method A; the defaults are the paper's MNIST recipe."""

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
    seed: int = 0
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


#: The paper's two recipes, for ``method_a_init_(model, layer, images, **MNIST)``.
MNIST = dict(source="grid", patch_size=14, stride=7, min_pixels=20, reducer="umap",
             pattern="mean", n_nearest=10)
# PCA's dimension is not stated in the paper: 50 of the 675 (15x15x3) keep 93% of the variance of
# CIFAR-10's SIFT patches (see the CIFAR walkthrough chapter).
CIFAR = dict(source="sift", patch_size=15, min_pixels=0, reducer="pca", n_components=50, pattern="nearest")


@dataclass
class MethodAResult:
    """What happened at each stage, for Fig. 1-style notebooks.

    Indices in ``nearest`` refer to the ``n_used`` clustered patches, whose
    2-D (or k-D) coordinates are ``embedding``.  ``chosen_patches`` are the raw
    patches behind each pattern (``(k, m, C, h, w)``), ``patterns_before_resize``
    the zero-mean patterns in ``pixel_space`` units, ``patterns`` the filters
    (before ``scale``).
    """

    filter_shape: tuple
    mapping: str                    # "image", "activations" or "volume"
    n_images: int
    n_patches: int                  # cut
    n_kept: int                     # after the information filter
    n_used: int                     # after the budget: clustered
    skipped_images: np.ndarray      # images without SIFT keypoints
    kept_mask: np.ndarray           # (n_patches,) bool
    embedding: np.ndarray
    cluster_labels: np.ndarray
    centers: np.ndarray
    nearest: np.ndarray             # (k, m)
    chosen_image_index: np.ndarray  # (k, m)
    chosen_patches: np.ndarray
    patterns_before_resize: np.ndarray
    patterns: np.ndarray
    timings: dict
    options: dict
    layer: str | None = None
    scale: float = 1.0


# ------------------------------------------------------------------ helpers
def _per_channel(value, n_channels: int, name: str) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64).reshape(-1)
    if arr.size == 1:
        arr = np.repeat(arr, n_channels)
    if arr.size != n_channels:
        raise ValueError(f"{name} has {arr.size} values but the images have {n_channels} channels")
    return arr


def _mean_std(imgs: np.ndarray, opts: MethodAOptions) -> tuple[np.ndarray, np.ndarray]:
    c = imgs.shape[-1]
    if opts.mean is None or opts.std is None:
        mean, std = channel_stats(imgs)
    else:
        mean, std = opts.mean, opts.std
    mean, std = _per_channel(mean, c, "mean"), _per_channel(std, c, "std")
    if (std <= 0).any():
        raise ValueError(f"std must be > 0 per channel, got {std}; are the images constant?")
    if (mean < 0).any() or (mean > 1).any() or (std > 1).any():
        raise ValueError(f"mean {mean} and std {std} must be in [0, 1] pixel units "
                         f"(e.g. MNIST 0.1307, 0.3081), not 0..255")
    return mean, std


def to_pixel_space(patterns: np.ndarray, space: str, mean=None, std=None) -> np.ndarray:
    """Raw uint8-valued patterns ``(k, C, h, w)`` into ``space`` units (see module doc)."""
    p = np.asarray(patterns, dtype=np.float32)
    if space == "raw":
        return p
    p = p / 255.0
    if space == "unit":
        return p
    if space == "normalized":
        m = np.asarray(mean, dtype=np.float32).reshape(1, -1, 1, 1)
        s = np.asarray(std, dtype=np.float32).reshape(1, -1, 1, 1)
        return (p - m) / s
    raise ValueError(f"unknown pixel_space {space!r}; choose one of {PIXEL_SPACES}")


def _too_few(n: int, need: int, what: str, opts: MethodAOptions, n_images: int, k: int) -> ValueError:
    hints = []
    if opts.min_pixels > 0 and what != "activation patches":
        hints.append(f"lower min_pixels (now {opts.min_pixels})")
    if opts.source == "sift" and what != "activation patches":
        hints.append("find more keypoints (sift={'upscale': 2} or a lower 'contrast_threshold')")
    if opts.budget is not None:
        hints.append(f"raise budget (now {opts.budget})")
    hints.append(f"pass more images (now {n_images})")
    return ValueError(f"only {n} usable {what}, but {need} are needed for {k} filters "
                      f"(pattern={opts.pattern!r}, n_nearest={opts.n_nearest}, reducer={opts.reducer!r}); "
                      + ", or ".join(hints))


def _needed(opts: MethodAOptions, k: int) -> int:
    need = max(k, opts.m)
    if opts.reducer == "umap":
        need = max(need, opts.n_neighbors + 1)
    return need


# ------------------------------------------------------------- shared tail
def patterns_from_patchset(ps: PatchSet, filter_shape, opts: MethodAOptions, to_units,
                           rng: np.random.Generator, timings: dict) -> dict:
    """Budget, reduce, cluster, pick, and form filter-shaped patterns from ``ps``.

    ``to_units`` turns raw-valued patterns into the units the filters get.
    Returns the fields of :class:`MethodAResult` that these stages fill.
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
    nearest = cluster.nearest_points(emb, centers, opts.m)
    raw = cluster.form_patterns(ps.patches, nearest if opts.pattern == "mean" else nearest[:, 0])
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


# --------------------------------------------------------------- image route
def _cut(imgs: np.ndarray, opts: MethodAOptions) -> tuple[PatchSet, np.ndarray]:
    if opts.source == "grid":
        return grid_patches(imgs, opts.patch_size, opts.stride), np.zeros(0, np.int64)
    return sift_patches(imgs, opts.patch_size, progress=opts.progress, **opts.sift)


def method_a_patterns(images, filter_shape, **options) -> MethodAResult:
    """Patterns for a conv filter of ``filter_shape`` = ``(out, in, kh, kw)`` from images.

    ``images`` is a uint8 array ``(N, H, W, C)`` (or ``(N, H, W)``) or an object
    with ``.images`` (and optionally ``.mean``/``.std``, used when the options do
    not give them).  ``options`` are the fields of :class:`MethodAOptions`.  When
    ``in`` differs from the image channels the "volume" mapping is used (see the
    module doc).  Pure: nothing is written to a model.
    """
    imgs, options = _unpack_images(images, options)
    opts = MethodAOptions(**options)
    filter_shape = tuple(int(s) for s in filter_shape)
    if len(filter_shape) != 4:
        raise ValueError(f"filter_shape must be (out, in, kh, kw), got {filter_shape}")
    k = filter_shape[0]
    n_images = imgs.shape[0]
    if imgs.dtype != np.uint8:
        raise ValueError(f"images must be uint8 (raw pixels), got dtype {imgs.dtype}")
    if int(imgs.max()) <= opts.black_level:
        raise ValueError(f"all {n_images} images are black (no pixel > black_level={opts.black_level}); "
                         f"there is nothing to cut patches from")
    mean, std = _mean_std(imgs, opts) if opts.pixel_space == "normalized" else (None, None)
    rng = as_rng(opts.seed)
    timings: dict[str, float] = {}

    t = time.perf_counter()
    ps, skipped = _cut(imgs, opts)
    timings["extract"] = time.perf_counter() - t
    n_patches = len(ps)

    t = time.perf_counter()
    if opts.min_pixels > 0:
        ps, kept_mask = filter_informative(ps, opts.min_pixels, opts.black_level)
    else:
        kept_mask = np.ones(n_patches, dtype=bool)
    timings["filter"] = time.perf_counter() - t

    need = _needed(opts, k)
    if min(len(ps), opts.budget or len(ps)) < need:
        raise _too_few(min(len(ps), opts.budget or len(ps)), need, "patches", opts, n_images, k)

    fields = patterns_from_patchset(ps, filter_shape, opts,
                                    lambda p: to_pixel_space(p, opts.pixel_space, mean, std),
                                    rng, timings)
    mapping = "image" if filter_shape[1] == imgs.shape[-1] else "volume"
    log.info("method A (%s): %d images, %d patches cut, %d kept, %d clustered; %.1f s",
             mapping, n_images, n_patches, len(ps), fields["n_used"], sum(timings.values()))
    return MethodAResult(filter_shape=filter_shape, mapping=mapping, n_images=n_images,
                         n_patches=n_patches, n_kept=len(ps), skipped_images=skipped,
                         kept_mask=kept_mask, timings=timings, options=_options_record(opts, mean, std),
                         **fields)


# --------------------------------------------------------- activation route
def batched_layer_input(model: nn.Module, layer: str, x: torch.Tensor, batch_size: int = 512,
                        progress: bool | None = None, batch_norm: str = "batch") -> np.ndarray:
    """The maps ``model`` feeds into ``layer`` for inputs ``x``, in batches: ``(N, C, H, W)`` float32.

    Each batch goes through :func:`patchinit.patches.activations.layer_input`
    (a forward pre-hook that stops at the layer, eval mode, no grad) on the
    model's device; the maps are gathered on the CPU.  BN layers use each batch's
    statistics (``batch_norm="batch"``), as they will in training.
    """
    device = next(model.parameters()).device
    maps = []
    for start in tqdm(range(0, x.shape[0], batch_size), desc=f"maps into {layer}",
                      disable=bars.disable(progress), leave=False):
        maps.append(layer_input(model, layer, x[start:start + batch_size].to(device),
                                batch_norm=batch_norm).float().cpu())
    return torch.cat(maps).numpy()


def normalized_tensor(imgs: np.ndarray, mean, std) -> torch.Tensor:
    """uint8 ``(N, H, W, C)`` -> float ``(N, C, H, W)`` ``(x/255 - mean)/std``, as the model sees it."""
    x = torch.tensor(imgs).permute(0, 3, 1, 2).float() / 255.0
    m = torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return (x - m) / s


def activation_geometry(map_size: int, image_size: int, kernel: int, opts: MethodAOptions) -> tuple[int, int]:
    """Window and stride on a ``map_size`` map covering the image patch's share of the image."""
    size = max(kernel, round(opts.patch_size * map_size / image_size))
    stride = max(1, round(opts.stride * map_size / image_size))
    return min(size, map_size), stride


def method_a_activation_patterns(model: nn.Module, layer: str, images, **options) -> MethodAResult:
    """Patterns for a deeper ``layer`` from grid patches of its input maps (see module doc)."""
    imgs, options = _unpack_images(images, options)
    opts = MethodAOptions(**options)
    conv = find_conv(model, layer)
    filter_shape = tuple(conv.weight.shape)
    k, c_in, kh, kw = filter_shape
    mean, std = _mean_std(imgs, opts)
    rng = as_rng(opts.seed)
    timings: dict[str, float] = {}
    n_images, h_img = imgs.shape[0], imgs.shape[1]

    t = time.perf_counter()
    probe = batched_layer_input(model, layer, normalized_tensor(imgs[:1], mean, std), progress=False,
                                batch_norm="eval")  # shape only
    if probe.shape[1] != c_in:
        raise ValueError(f"layer {layer!r} receives {probe.shape[1]} channels but has in_channels={c_in}")
    size, stride = activation_geometry(probe.shape[2], h_img, kh, opts)
    per_image = ((probe.shape[2] - size) // stride + 1) * ((probe.shape[3] - size) // stride + 1)
    use = np.arange(n_images)
    if opts.budget is not None and opts.budget < n_images * per_image:
        # Only the images the budget can use are forwarded: keeps memory bounded.
        use = np.sort(rng.choice(n_images, size=min(n_images, math.ceil(opts.budget / per_image)),
                                 replace=False))
    est_gb = use.size * per_image * c_in * size * size * 4 / 1e9
    if est_gb > 2:
        log.warning("activation patches for %s will take about %.1f GB; set budget to bound it",
                    layer, est_gb)
    maps = batched_layer_input(model, layer, normalized_tensor(imgs[use], mean, std),
                               progress=opts.progress)
    ps = grid_patches(maps, size, stride, channels_last=False)
    ps = PatchSet(ps.patches, use[ps.image_index], ps.positions)
    del maps
    timings["extract"] = time.perf_counter() - t
    timings["filter"] = 0.0

    need = _needed(opts, k)
    if min(len(ps), opts.budget or len(ps)) < need:
        raise _too_few(min(len(ps), opts.budget or len(ps)), need, "activation patches", opts, n_images, k)
    fields = patterns_from_patchset(ps, filter_shape, opts, lambda p: p, rng, timings)
    opts_rec = _options_record(opts, mean, std)
    opts_rec.update(activation_patch_size=size, activation_stride=stride)
    return MethodAResult(filter_shape=filter_shape, mapping="activations", n_images=n_images,
                         n_patches=len(ps), n_kept=len(ps), skipped_images=np.zeros(0, np.int64),
                         kept_mask=np.ones(len(ps), dtype=bool), timings=timings, options=opts_rec,
                         layer=layer, **fields)


# ------------------------------------------------------------ in-place entry
def conv_layers(model: nn.Module) -> list[str]:
    """Names of the ``nn.Conv2d`` layers of ``model``, in registration order."""
    return [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def find_conv(model: nn.Module, layer: str) -> nn.Conv2d:
    """The ``nn.Conv2d`` called ``layer``; an unknown name lists the conv layers that exist."""
    m = dict(model.named_modules()).get(layer)
    if not isinstance(m, nn.Conv2d):
        what = "is not a Conv2d" if m is not None else "does not exist"
        raise ValueError(f"layer {layer!r} {what}; conv layers of {type(model).__name__}: "
                         f"{conv_layers(model)}")
    return m


def method_a_init_(model: nn.Module, layer: str = "conv1", images=None, *,
                   deep_mapping: str = "activations", scale: float = 1.0,
                   **options) -> MethodAResult:
    """Initialise the filters of ``model.<layer>`` in place with method A; return the record.

    The first conv layer (in registration order) gets image patches.  Any
    other conv layer gets ``deep_mapping``: "activations" (patches of the maps
    that feed it, computed with the model as it is now, so initialise layers
    bottom-up) or "volume" (image-patch patterns resized to its channel count).
    ``options`` are :class:`MethodAOptions` fields (e.g. ``**MNIST``); ``scale``
    multiplies the patterns when they are written.  Only the weight of
    ``layer`` changes.
    """
    if images is None:
        raise ValueError("images is required: a uint8 (N, H, W, C) array or a Dataset with .images")
    if deep_mapping not in DEEP_MAPPINGS:
        raise ValueError(f"unknown deep_mapping={deep_mapping!r}; choose one of {DEEP_MAPPINGS}")
    conv = find_conv(model, layer)
    imgs, options = _unpack_images(images, options)
    first = conv_layers(model)[0] == layer
    if first and conv.in_channels != imgs.shape[-1]:
        raise ValueError(f"{layer!r} is the first conv layer and takes {conv.in_channels} channels, "
                         f"but the images have {imgs.shape[-1]}")
    try:
        if first or deep_mapping == "volume":
            result = method_a_patterns(imgs, tuple(conv.weight.shape), **options)
            result.layer = layer
        else:
            result = method_a_activation_patterns(model, layer, imgs, **options)
    except ValueError as e:  # name the layer: "cannot form k=64 clusters from 40 points" alone does not
        raise ValueError(f"layer {layer!r} ({conv.out_channels} filters): {e}") from e
    patch_init_(conv, result.patterns, scale=scale)
    result.scale = float(scale)
    return result


# ----------------------------------------------------------------- plumbing
def _unpack_images(images, options: dict) -> tuple[np.ndarray, dict]:
    """Array from ``images`` or ``images.images``; a Dataset's mean/std fill unset options."""
    options = dict(options)
    if hasattr(images, "images"):
        for key in ("mean", "std"):
            if options.get(key) is None and getattr(images, key, None) is not None:
                options[key] = tuple(np.asarray(getattr(images, key), dtype=float).reshape(-1))
        images = images.images
    if isinstance(images, torch.Tensor):
        images = images.cpu().numpy()
    return as_image_array(images), options


def _options_record(opts: MethodAOptions, mean, std) -> dict:
    rec = asdict(opts)
    if mean is not None:
        rec["mean"], rec["std"] = [float(v) for v in mean], [float(v) for v in std]
    return rec
