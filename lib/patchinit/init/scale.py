"""Scalers: how large a pattern is when it becomes a filter, and how to read a layer's scale.

* method A writes its zero-mean patterns as they are, times a uniform ``scale``
  (:func:`patchinit.init.patch.patch_init_`);
* method B standardises each pattern and gives it the Xavier factor of the thesis's
  eq. 4.2 (:func:`scale_patterns` with :func:`xavier_counts`), optionally followed by
  :func:`matching_gain` (``match_random_std``: the output std of the random filters);
* :func:`layer_output_std` and :func:`patch_gain` read the forward scale an init gives
  (the records' ``output_std``; the scaling chapter).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["SCALINGS", "scale_patterns", "xavier_counts", "conv_map_sizes", "matching_gain",
           "layer_output_std", "patch_gain"]

SCALINGS = ("fan", "channels", "neurons")


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


def layer_output_std(model, x, layers: Sequence[str]) -> dict[str, float]:
    """Std of each named layer's output for input batch ``x`` (a forward-scale diagnostic)."""
    out: dict[str, float] = {}
    modules = dict(model.named_modules())
    hooks = [modules[name].register_forward_hook(lambda m, i, o, name=name: out.__setitem__(name, float(o.std())))
             for name in layers]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return out


def patch_gain(conv, x, seed: int = 0, weight=None) -> dict[str, float]:
    """How much larger a conv's response to its input ``x`` is than a random filter bank's of the same norms.

    A filter ``w`` answers an input window ``u`` with ``w·u = |w||u| cos θ``.  For a random (isotropic)
    filter ``E[cos² θ] = 1/n`` over the ``n = C·k·k`` inputs, so a filter cut from the data, whose windows
    it resembles, responds more strongly by the factor

        predicted = sqrt(n · Σ |u|² cos² θ / Σ |u|²)     (RMS over windows and filters)

    ``measured`` is the same ratio read off the layer itself: the RMS of its responses over ``x`` against
    that of Gaussian filters with each row's norm (seeded).  A gain above 1 at every layer compounds: the
    network's output scale at layer l grows like the product of the gains below it.  ``weight`` replaces
    the conv's own (a supermask's masked weight, say).
    """
    with torch.no_grad():
        w = (conv.weight if weight is None else weight).detach().reshape(conv.out_channels, -1).double()
        u = F.unfold(x.double(), conv.kernel_size, conv.dilation, conv.padding, conv.stride)
        u = u.transpose(1, 2).reshape(-1, w.shape[1])
        n = w.shape[1]
        unorm2 = (u * u).sum(1)
        keep = unorm2 > 0
        u, unorm2 = u[keep], unorm2[keep]
        wn = w / w.norm(dim=1, keepdim=True).clamp_min(1e-12)
        cos2 = (u @ wn.T) ** 2 / unorm2[:, None]
        predicted = math.sqrt(n * float((unorm2[:, None] * cos2).sum() / (unorm2.sum() * w.shape[0])))
        g = torch.Generator().manual_seed(seed)
        r = torch.randn(w.shape, generator=g, dtype=torch.float64)
        r = r / r.norm(dim=1, keepdim=True) * w.norm(dim=1, keepdim=True)
        measured = float((u @ w.T).pow(2).mean().sqrt() / (u @ r.T).pow(2).mean().sqrt())
    return {"predicted": predicted, "measured": measured}
