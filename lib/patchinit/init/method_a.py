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

The recipe over the engine's parts: patch sources (:mod:`patchinit.init.sources`),
the normaliser (:mod:`patchinit.init.normalise`), k-means and the mean-of-m
selector (:mod:`patchinit.init.select`), the walker over conv inputs
(:mod:`patchinit.init.layers`).  :func:`method_a_patterns` is the pure part
(images -> patterns + a record of every stage); :func:`method_a_init_` walks the
listed layers bottom-up and writes each one's patterns with
:func:`patchinit.init.patch.patch_init_`.

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

import hashlib
import json
import logging
import warnings
from collections import OrderedDict
from dataclasses import asdict, replace

import numpy as np
import torch
import torch.nn as nn

from patchinit.data.datasets import channel_stats
from patchinit.init.baselines import baseline_init_
from patchinit.init.layers import ConvInputs, conv_layers, find_conv, image_layer, resolve_convs
from patchinit.init.normalise import Normaliser, image_tensor, per_channel, to_pixel_space
from patchinit.init.options import DEEP_MAPPINGS, PATTERNS, SOURCES, MethodAOptions  # noqa: F401  (re-exported)
from patchinit.init import pattern_cache
from patchinit.init.patch import patch_init_
from patchinit.init.record import MethodAResult
from patchinit.init.select import kmeans_patterns
from patchinit.init.sources import activation_geometry, activation_patches, image_patches
from patchinit.patches import as_image_array, as_rng

log = logging.getLogger(__name__)

__all__ = ["MethodAOptions", "MethodAResult", "MNIST", "CIFAR", "method_a_patterns",
           "method_a_activation_patterns", "method_a_init_", "to_pixel_space", "normalized_tensor",
           "activation_geometry", "conv_layers", "find_conv", "patterns_from_patchset"]

#: old names, kept for notebooks: the engine's parts under method A's words
normalized_tensor = image_tensor
patterns_from_patchset = kmeans_patterns

#: The paper's two recipes, for ``method_a_init_(model, images, **MNIST)``.
MNIST = dict(source="grid", patch_size=14, stride=7, min_pixels=20, reducer="umap",
             pattern="mean", n_nearest=10)
# PCA's dimension is not stated in the paper: 50 of the 675 (15x15x3) keep 93% of the variance of
# CIFAR-10's SIFT patches (see the CIFAR walkthrough chapter).
CIFAR = dict(source="sift", patch_size=15, min_pixels=0, reducer="pca", n_components=50, pattern="nearest")


# ------------------------------------------------------------------ helpers
def _mean_std(imgs: np.ndarray, opts: MethodAOptions) -> tuple[np.ndarray, np.ndarray]:
    c = imgs.shape[-1]
    if opts.mean is None or opts.std is None:
        mean, std = channel_stats(imgs)
    else:
        mean, std = opts.mean, opts.std
    mean, std = per_channel(mean, c, "mean"), per_channel(std, c, "std")
    if (std <= 0).any():
        raise ValueError(f"std must be > 0 per channel, got {std}; are the images constant?")
    if (mean < 0).any() or (mean > 1).any() or (std > 1).any():
        raise ValueError(f"mean {mean} and std {std} must be in [0, 1] pixel units "
                         f"(e.g. MNIST 0.1307, 0.3081), not 0..255")
    return mean, std


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


def _check_enough(n: int, opts: MethodAOptions, k: int, n_images: int, what: str) -> None:
    need = max(k, opts.m)
    if opts.reducer == "umap":
        need = max(need, opts.n_neighbors + 1)
    if min(n, opts.budget or n) < need:
        raise _too_few(min(n, opts.budget or n), need, what, opts, n_images, k)


# --------------------------------------------------------------- the two routes
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
    k, n_images = filter_shape[0], imgs.shape[0]
    if imgs.dtype != np.uint8:
        raise ValueError(f"images must be uint8 (raw pixels), got dtype {imgs.dtype}")
    if int(imgs.max()) <= opts.black_level:
        raise ValueError(f"all {n_images} images are black (no pixel > black_level={opts.black_level}); "
                         f"there is nothing to cut patches from")
    mean, std = _mean_std(imgs, opts) if opts.pixel_space == "normalized" else (None, None)
    rng, timings = as_rng(opts.seed), {}
    ps, skipped, kept_mask, n_patches = image_patches(imgs, opts, timings)
    _check_enough(len(ps), opts, k, n_images, "patches")
    units = Normaliser.for_pixel_space(opts.pixel_space, imgs.shape[-1], mean, std)
    fields = kmeans_patterns(ps, filter_shape, opts, units.patches, rng, timings)
    mapping = "image" if filter_shape[1] == imgs.shape[-1] else "volume"
    log.info("method A (%s): %d images, %d patches cut, %d kept, %d clustered; %.1f s",
             mapping, n_images, n_patches, len(ps), fields["n_used"], sum(timings.values()))
    return MethodAResult(filter_shape=filter_shape, mapping=mapping, n_images=n_images,
                         n_patches=n_patches, n_kept=len(ps), skipped_images=skipped,
                         kept_mask=kept_mask, timings=timings, options=_options_record(opts, mean, std),
                         **fields)


def method_a_activation_patterns(model: nn.Module, layer: str, images, **options) -> MethodAResult:
    """Patterns for a deeper ``layer`` from grid patches of its input maps (see module doc)."""
    imgs, options = _unpack_images(images, options)
    opts = MethodAOptions(**options)
    conv = find_conv(model, layer)
    filter_shape = tuple(conv.weight.shape)
    mean, std = _mean_std(imgs, opts)
    rng, timings = as_rng(opts.seed), {}
    walker = ConvInputs(model, imgs, Normaliser(imgs.shape[-1], mean, std), batch_size=512, chain=False,
                        progress=opts.progress)
    if walker.shape(layer)[0] != conv.in_channels:
        raise ValueError(f"layer {layer!r} receives {walker.shape(layer)[0]} channels but has "
                         f"in_channels={conv.in_channels}")
    ps, size, stride = activation_patches(walker, layer, opts, rng, timings)
    _check_enough(len(ps), opts, filter_shape[0], imgs.shape[0], "activation patches")
    fields = kmeans_patterns(ps, filter_shape, opts, lambda p: p, rng, timings)
    opts_rec = dict(_options_record(opts, mean, std), activation_patch_size=size, activation_stride=stride)
    return MethodAResult(filter_shape=filter_shape, mapping="activations", n_images=imgs.shape[0],
                         n_patches=len(ps), n_kept=len(ps), skipped_images=np.zeros(0, np.int64),
                         kept_mask=np.ones(len(ps), dtype=bool), timings=timings, options=opts_rec,
                         layer=layer, **fields)


# ------------------------------------------------------------------ the recipe
def method_a_init_(model: nn.Module, images=None, layers=None, baseline: str | None = None, seed: int = 0, *,
                   deep_mapping: str = "activations", deep_options: dict | None = None, scale: float = 1.0,
                   memo: bool = True, **options) -> list[MethodAResult]:
    """Initialise conv ``layers`` of ``model`` in place with method A, bottom-up; one record per layer.

    ``images``: uint8 ``(N, H, W, C)`` or a Dataset (its mean/std fill unset options).  ``layers``:
    names or modules (default: the image layer, the model's first conv).  The image layer gets image
    patches; any other conv gets ``deep_mapping``: "activations" (patches of the maps it receives,
    through the layers below as they are now, so each listed layer sees its predecessors' new filters)
    or "volume" (image-patch patterns resized to its channels); ``deep_options`` override ``options``
    for activation patches.  ``options`` are :class:`MethodAOptions` fields (e.g. ``**MNIST``);
    ``seed`` fixes UMAP, k-means and budgets; ``scale`` multiplies the patterns.  ``baseline=None``
    leaves every other parameter as it is; a scheme name (``"kaiming_uniform"``...) first
    re-initialises them with ``baseline_init_(model, baseline, seed=seed)``.  ``memo`` reuses image
    patterns computed for the same images, options and filter shape in this process, or in another one
    when ``$PATCHINIT_PATTERN_CACHE`` names a folder (:mod:`patchinit.init.pattern_cache`).
    """
    if isinstance(images, (str, nn.Module)) or "layer" in options:  # the old (model, layer, images) form
        return _legacy(model, images, layers, seed, deep_mapping, deep_options, scale, memo, baseline, options)
    if images is None:
        raise ValueError("images is required: a uint8 (N, H, W, C) array or a Dataset with .images")
    if deep_mapping not in DEEP_MAPPINGS:
        raise ValueError(f"unknown deep_mapping={deep_mapping!r}; choose one of {DEEP_MAPPINGS}")
    imgs, options = _unpack_images(images, options)
    example = torch.zeros((1, imgs.shape[-1], *imgs.shape[1:3]), device=next(model.parameters()).device)
    first = image_layer(model, example)
    convs = resolve_convs(model, layers, default=[first], example=example)
    if baseline is not None:
        baseline_init_(model, baseline, seed=seed)
    records = []
    for name, conv in convs:
        if name == first and conv.in_channels != imgs.shape[-1]:
            raise ValueError(f"{name!r} is the first conv layer and takes {conv.in_channels} channels, "
                             f"but the images have {imgs.shape[-1]}")
        try:
            if name == first or deep_mapping == "volume":
                rec = _image_patterns(imgs, tuple(conv.weight.shape), dict(options, seed=seed), memo)
            else:
                rec = method_a_activation_patterns(model, name, imgs, **{**options, **(deep_options or {}), "seed": seed})
        except ValueError as e:  # name the layer: "cannot form k=64 clusters from 40 points" alone does not
            raise ValueError(f"layer {name!r} ({conv.out_channels} filters): {e}") from e
        patch_init_(conv, rec.patterns, scale=scale)
        records.append(replace(rec, layer=name, scale=float(scale)))
    return records


_MEMO: "OrderedDict[str, MethodAResult]" = OrderedDict()
_MEMO_MAX = 32


def _image_patterns(imgs: np.ndarray, filter_shape: tuple, options: dict, memo: bool) -> MethodAResult:
    """:func:`method_a_patterns`, memoised on the images' bytes, the options and the filter shape."""
    if not memo:
        return method_a_patterns(imgs, filter_shape, **options)
    digest = hashlib.sha256(np.ascontiguousarray(imgs).data).hexdigest()
    opts = {k: v for k, v in options.items() if k != "progress"}
    key = json.dumps([digest, imgs.shape, list(filter_shape), opts], sort_keys=True, default=str)
    if key not in _MEMO:  # then the on-disk cache, when $PATCHINIT_PATTERN_CACHE is set
        _MEMO[key] = pattern_cache.load_or_compute(key, lambda: method_a_patterns(imgs, filter_shape, **options))
        while len(_MEMO) > _MEMO_MAX:
            _MEMO.popitem(last=False)
    _MEMO.move_to_end(key)
    return _MEMO[key]


def _legacy(model, layer, images, seed, deep_mapping, deep_options, scale, memo, baseline, options):
    """``method_a_init_(model, layer, images, **options)``: one layer, one record (deprecated form)."""
    layer = options.pop("layer", layer)
    warnings.warn("method_a_init_(model, layer, images) is deprecated; call "
                  "method_a_init_(model, images, layers=[layer]), which returns a list of records",
                  DeprecationWarning, stacklevel=3)
    return method_a_init_(model, images, [layer], baseline, seed, deep_mapping=deep_mapping,
                          deep_options=deep_options, scale=scale, memo=memo, **options)[0]


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
