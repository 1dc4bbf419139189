"""Where each layer's patches come from: the patch sources of both recipes.

The cutting itself is :mod:`patchinit.patches`'s (grid, SIFT keypoints,
selective-search boxes, windows of activation maps); the input maps of a deeper
layer come from the walker (:class:`patchinit.init.layers.ConvInputs`).

===============  =====================================  =====================================
layer            method A                               method B
===============  =====================================  =====================================
the image layer  grid (MNIST) or SIFT (CIFAR) patches    patches inside selective-search boxes
                 of every image, information filter      of a seeded image sample
                 (:func:`image_patches`)                 (:meth:`PatchesInitSource.image_layer`)
a deeper layer   a grid on its input maps covering the   random windows of its input maps, the
                 image patch's share of the image        filter's size, zero-padded as the conv
                 (:func:`activation_patches`)            pads (:meth:`PatchesInitSource.deeper`)
===============  =====================================  =====================================
"""
from __future__ import annotations

import logging
import math
import time

import numpy as np
import torch

from patchinit.init.layers import ConvInputs
from patchinit.patches import PatchSet, filter_informative, grid_patches, sift_patches
from patchinit.patches.activations import concat_patchsets, conv_window, window_patches
from patchinit.patches.boxes import sample_box_patches, selective_search_many

log = logging.getLogger(__name__)

__all__ = ["image_patches", "activation_geometry", "activation_patches", "PatchesInitSource"]


# ------------------------------------------------------------------ method A
def image_patches(imgs: np.ndarray, opts, timings: dict) -> tuple[PatchSet, np.ndarray, np.ndarray, int]:
    """Method A's image patches: ``(kept patches, images without keypoints, kept mask, n cut)``."""
    t = time.perf_counter()
    if opts.source == "grid":
        ps, skipped = grid_patches(imgs, opts.patch_size, opts.stride), np.zeros(0, np.int64)
    else:
        ps, skipped = sift_patches(imgs, opts.patch_size, progress=opts.progress, **opts.sift)
    timings["extract"] = time.perf_counter() - t
    n_cut = len(ps)
    t = time.perf_counter()
    if opts.min_pixels > 0:
        ps, kept_mask = filter_informative(ps, opts.min_pixels, opts.black_level)
    else:
        kept_mask = np.ones(n_cut, dtype=bool)
    timings["filter"] = time.perf_counter() - t
    return ps, skipped, kept_mask, n_cut


def activation_geometry(map_size: int, image_size: int, kernel: int, opts) -> tuple[int, int]:
    """Window and stride on a ``map_size`` map covering the image patch's share of the image."""
    size = max(kernel, round(opts.patch_size * map_size / image_size))
    stride = max(1, round(opts.stride * map_size / image_size))
    return min(size, map_size), stride


def activation_patches(walker: ConvInputs, name: str, opts, rng: np.random.Generator,
                       timings: dict) -> tuple[PatchSet, int, int]:
    """Method A's patches of layer ``name``'s input maps: a grid of windows covering the image
    patch's share of the image.  Only the images a budget can use are forwarded.
    Returns ``(patches, window, stride)``."""
    t = time.perf_counter()
    n_images, h_img = walker.imgs.shape[0], walker.imgs.shape[1]
    c_in, h, w = walker.shape(name)
    kernel = walker.model.get_submodule(name).kernel_size[0]
    size, stride = activation_geometry(h, h_img, kernel, opts)
    per_image = ((h - size) // stride + 1) * ((w - size) // stride + 1)
    use = np.arange(n_images)
    if opts.budget is not None and opts.budget < n_images * per_image:
        use = np.sort(rng.choice(n_images, size=min(n_images, math.ceil(opts.budget / per_image)),
                                 replace=False))
    est_gb = use.size * per_image * c_in * size * size * 4 / 1e9
    if est_gb > 2:
        log.warning("activation patches for %s will take about %.1f GB; set budget to bound it", name, est_gb)
    maps = torch.cat([m.float().cpu() for m in walker.maps(name, use)]).numpy()
    ps = grid_patches(maps, size, stride, channels_last=False)
    ps = PatchSet(ps.patches, use[ps.image_index], ps.positions)
    timings["extract"] = time.perf_counter() - t
    timings["filter"] = 0.0
    return ps, size, stride


# ------------------------------------------------------------------ method B
class PatchesInitSource:
    """Method B's P patches of each layer, from one seeded sample of ``ceil(P / per_image)`` images.

    The image layer: selective-search boxes of those images.  A deeper layer: windows of the
    maps those images produce at its input (the walker: one forward pass for a chain model).
    """

    def __init__(self, model, imgs, norm, n_patches, cfg, seed, workers, progress):
        self.imgs, self.norm, self.cfg = imgs, norm, cfg
        self.n_patches, self.workers, self.progress = n_patches, workers, progress
        n_img = math.ceil(n_patches / cfg.per_image)
        if n_img > imgs.shape[0]:
            raise ValueError(f"P={n_patches} patches at {cfg.per_image} per image need {n_img} images but "
                             f"only {imgs.shape[0]} are given; lower P or pass more images")
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0]).generate_state(1)[0])
        self.rows = np.sort(rng.choice(imgs.shape[0], size=n_img, replace=False))
        self.walker = ConvInputs(model, imgs, norm, batch_size=cfg.forward_batch)

    def image_layer(self, name, conv, rng, times) -> tuple[PatchSet, dict]:
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
        if self.walker.chain:
            self.walker.start(name, self.rows)
        times["selective_search"] = t1 - t0
        times["patch_sampling"] = time.perf_counter() - t1
        return self._trim(ps), {"n_whole_image": sampled.n_whole_image, "mean_boxes": sampled.mean_boxes}

    @torch.no_grad()
    def deeper(self, name, conv, rng, times) -> tuple[PatchSet, dict]:
        t0 = time.perf_counter()
        size, padding = conv_window(conv, name)
        rows, batches = self.rows, self.walker.batches(self.rows)  # the image rows of each map batch
        maps = self.walker.maps(name, rows)
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
                more = np.sort(rng.choice(rest, size=need - rows.size, replace=False))
                maps, batches = maps + self.walker.maps(name, more, keep=False), batches + self.walker.batches(more)
            extra = {"per_image": per_image}
        parts = [window_patches(m, size, padding, per_image, rng, r) for m, r in zip(maps, batches)]
        times["activation_forward"] = time.perf_counter() - t0
        return self._trim(concat_patchsets(parts)), extra

    @torch.no_grad()
    def probe(self, name: str, is_image_layer: bool) -> torch.Tensor:
        """The input of conv ``name`` for the first ``probe_images`` sampled images, through the
        layers initialised so far (for ``match_random_std``)."""
        x = self.walker.images(self.rows[:self.cfg.probe_images])
        if is_image_layer:
            return x
        from patchinit.patches.activations import layer_input

        return layer_input(self.walker.model, name, x, batch_norm="batch")

    def _trim(self, ps: PatchSet) -> PatchSet:
        return ps.select(np.arange(self.n_patches)) if len(ps) > self.n_patches else ps
