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

Order: with ``baseline="xavier_normal"`` (the thesis's *Random*) :func:`patches_init_`
first applies ``baseline_init_(model, baseline, seed)`` to every layer, so the FC
layers (and any filter not overwritten) equal the *Random* model of the same seed
exactly; ``baseline=None`` leaves them as the caller had them.  Then it overwrites
the listed convs bottom-up.  Convert to a supermask afterwards (``to_supermask_``).

The recipe over the engine's parts: patch sources (:mod:`patchinit.init.sources`),
the normaliser, the walker (:mod:`patchinit.init.layers`), PCA + MiniBatchKMeans and
the entropy selectors (:mod:`patchinit.init.select`), eq. 4.2 and the optional
output-std match (:mod:`patchinit.init.scale`).
"""
from __future__ import annotations

import logging
import time
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm

from patchinit import bars
from patchinit.init.baselines import baseline_init_
from patchinit.init.layers import image_layer, resolve_convs
from patchinit.init.normalise import Normaliser
from patchinit.init.options import MethodBConfig
from patchinit.init.patch import patch_init_
from patchinit.init.record import STAGES, LayerClusters, LayerRecord
from patchinit.init.scale import SCALINGS, conv_map_sizes, matching_gain, scale_patterns, xavier_counts
from patchinit.init.select import PatternChoice, choose_patterns
from patchinit.init.sources import PatchesInitSource

log = logging.getLogger(__name__)

__all__ = ["MethodBConfig", "LayerRecord", "PatternChoice", "patches_init_", "partial_patches_init_",
           "partial_options", "choose_patterns",
           "LayerClusters", "scale_patterns", "xavier_counts", "matching_gain", "conv_map_sizes", "criteria", "STAGES", "SCALINGS"]


def criteria(n_layers: int, D: int | None) -> list[str]:
    """``"high"`` for layers ``l < D``, ``"low"`` for ``l >= D`` (1-based ``l``)."""
    if D is None:
        D = n_layers
    if isinstance(D, bool) or not isinstance(D, (int, np.integer)) or not 1 <= D <= n_layers + 1:
        raise ValueError(f"D must be an int in [1, {n_layers + 1}] (1-based first layer with low-entropy "
                         f"clusters; {n_layers + 1} = none), got D={D!r}")
    return ["high" if l < D else "low" for l in range(1, n_layers + 1)]


# ------------------------------------------------------------------ the recipe
def patches_init_(model: nn.Module, images, labels, layers: Sequence | None = None, baseline: str | None = None,
                  seed: int = 0, *, P: int = 50_000, C: int = 500, D: int | None = None, simple: bool = False,
                  mean=None, std=None, config: MethodBConfig | None = None, workers: int | None = None,
                  progress: bool | None = None) -> list[LayerRecord]:
    """Initialise ``model``'s conv layers in place with PatchesInit; return one record per layer.

    ``images`` uint8 ``(N, H, W, C)`` and ``labels`` ``(N,)`` are the training set
    (or the part of it to draw from); ``mean``/``std`` the per-channel
    normalisation in [0, 1] units that the model will be trained with.  ``P``
    patches and ``C`` clusters per layer; ``D`` the 1-based first layer that takes
    low-entropy clusters (default: the last).  ``simple=True`` is SimpleInit
    (C = number of filters, no selection; ``C`` and ``D`` are ignored).
    ``layers`` (names or modules) are the convs to initialise, bottom-up (default
    ``model.conv_names`` or every ``nn.Conv2d``); Partial-PatchesInit passes the
    first block's convs.  The model's first conv gets box patches of the images;
    every other listed conv, windows of the maps it really receives.
    ``baseline=None`` leaves every other parameter as it is; a scheme (the thesis:
    ``"xavier_normal"``) first re-initialises them with ``baseline_init_(model,
    baseline, seed=seed)``.  ``workers`` threads run selective search.
    """
    cfg = config or MethodBConfig()
    imgs, labs = _check_data(images, labels)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an int, got {seed!r}")
    for name, value in (("P", P), ("C", C)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    norm = Normaliser(imgs.shape[3], mean, std)
    example = norm.images(imgs[:1], next(model.parameters()).device)
    convs = resolve_convs(model, layers, default=getattr(model, "conv_names", None), example=example)
    first = image_layer(model, example)
    kinds = ["simple"] * len(convs) if simple else criteria(len(convs), D)
    source = PatchesInitSource(model, imgs, norm, int(P), cfg, seed, workers, progress)  # checks P first

    if baseline is not None:
        baseline_init_(model, baseline, seed=seed)
    maps = (conv_map_sizes(model, (imgs.shape[3], imgs.shape[1], imgs.shape[2]), [n for n, _ in convs])
            if cfg.scaling == "neurons" else {})
    records = []
    bar = tqdm(list(zip(convs, kinds)), desc="SimpleInit" if simple else "PatchesInit", unit="layer",
               disable=bars.disable(progress))
    for index, ((name, conv), kind) in enumerate(bar, start=1):
        bar.set_postfix_str(name)
        rec = _init_layer(source, index, name, conv, kind, labs, int(C), cfg, seed, name == first, maps.get(name))
        log.info("%s %s: %d filters from %d clusters (kept %d), mean entropy %s bits, %.2f s",
                 "SimpleInit" if simple else "PatchesInit", name, rec.n_selected, rec.n_clusters,
                 rec.n_clusters_kept, rec.mean_entropy_selected, rec.total_time)
        records.append(rec)
    return records


def _init_layer(source: PatchesInitSource, index, name, conv, criterion, labs, n_clusters, cfg,
                seed, is_image_layer: bool, maps=None) -> LayerRecord:
    """Sample, choose, scale and write the filters of one conv layer."""
    times: dict[str, float] = {}
    rng, choice_seed = _layer_seeds(seed, index)
    sample = source.image_layer if is_image_layer else source.deeper
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
            x = source.probe(name, is_image_layer)
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


# ------------------------------------------------------------------ helpers
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


def partial_options(blocks: int) -> dict:
    """The ``layers`` and ``D`` of Partial-PatchesInit up to the ``blocks``-th ResNet stage.

    The layers are named as in torchvision's ResNets (the stem ``conv1``, then ``layer<s>.<b>.conv1/2``
    of two blocks per stage), without the 1x1 shortcut convs, as the thesis's "9 convolutional layers
    up to the second block" counts them; :func:`patchinit.models.resnet.resnet18_partial_layers` is the
    same list, from the model's side.  ``D`` is one past the
    last initialised layer: the thesis's D is the network's last layer, which stays random, so every
    initialised layer takes high-entropy clusters.
    """
    if isinstance(blocks, bool) or not 1 <= int(blocks) <= 4:
        raise ValueError(f"up_to_block must be in 1..4, got {blocks!r}")
    layers = ["conv1"] + [f"layer{s}.{b}.conv{c}" for s in range(1, int(blocks) + 1) for b in (0, 1) for c in (1, 2)]
    return {"layers": layers, "D": len(layers) + 1}


def partial_patches_init_(model: nn.Module, images, labels, blocks: int = 1, **kwargs) -> list[LayerRecord]:
    """Partial-PatchesInit (thesis §5.5): PatchesInit for a ResNet's stem and its first ``blocks``
    stages only (:func:`partial_options`); every other layer keeps its values (with
    ``baseline="xavier_normal"``: exactly those of the Random run with the same seed).  ``D`` may be overridden;
    other ``kwargs`` go to :func:`patches_init_`.
    """
    if "layers" in kwargs:
        raise ValueError("partial_patches_init_ picks the layers from blocks; call patches_init_ to pass layers")
    opts = partial_options(blocks)
    kwargs.setdefault("D", opts["D"])
    return patches_init_(model, images, labels, layers=opts["layers"], **kwargs)
