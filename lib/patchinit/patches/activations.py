"""Patches from the activation maps a model feeds into one of its layers.

PatchesInit (thesis §4.2.4) initialises layer ``l > 1`` from patches of "the
activation maps" produced by "partially forward pass[ing] the images through the
model until the previous layer", sampled "from the entire activation maps" (no
objectness step).  Here the map of layer ``l`` is exactly what that layer receives:
the input of the conv, captured by a forward pre-hook, so ReLU and pooling between
the layers are included and no model needs a special "forward until" method.  The
forward pass stops at the hook, so later layers cost nothing.

Windows are the ones the conv itself sees: the map is zero-padded by the conv's
``padding`` and every ``k x k`` window of the padded map at stride 1 is a
candidate.  (For Conv6's last two layers the 8x8 map has only 36 unpadded 3x3
windows, fewer than the 50 per image the thesis samples; the padded map has 64.)
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from patchinit import bars
from patchinit.patches.base import PatchSet, as_rng, cut_patches

log = logging.getLogger(__name__)

__all__ = ["layer_input", "activation_patches", "window_patches", "conv_window", "concat_patchsets",
           "ActivationSampling"]


class _StopForward(Exception):
    """Raised by the capture hook to end the forward pass at the target layer."""


BN_MODES = ("eval", "batch")


@torch.no_grad()
def layer_input(model: nn.Module, layer_name: str, x: torch.Tensor, batch_norm: str = "eval") -> torch.Tensor:
    """The tensor ``model`` passes into its submodule ``layer_name`` for input ``x``.

    The model runs in eval mode (restored afterwards) and stops at the layer.
    ``batch_norm="batch"`` runs its batch-norm layers on the statistics of ``x``
    instead, as in training: a fresh network's running statistics are (0, 1), so in
    eval mode its BN layers do not normalise at all and the maps grow with depth.
    The running statistics are left exactly as they were.  Raises if the forward
    pass never reaches the layer.
    """
    if batch_norm not in BN_MODES:
        raise ValueError(f"batch_norm must be one of {BN_MODES}, got {batch_norm!r}")
    try:
        layer = model.get_submodule(layer_name)
    except AttributeError:
        raise ValueError(f"model {type(model).__name__} has no layer {layer_name!r}") from None
    captured: dict[str, torch.Tensor] = {}

    def hook(_module, args):
        captured["x"] = args[0]
        raise _StopForward

    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [{k: v.clone() for k, v in m.state_dict().items()} for m in bns] if batch_norm == "batch" else []
    handle = layer.register_forward_pre_hook(hook)
    was_training = model.training
    model.eval()
    if batch_norm == "batch":
        for m in bns:
            m.train()
    try:
        model(x)
    except _StopForward:
        pass
    finally:
        handle.remove()
        model.train(was_training)
        for m, state in zip(bns, saved):
            m.load_state_dict(state)
    if "x" not in captured:
        raise ValueError(f"the forward pass of {type(model).__name__} never reached layer {layer_name!r}")
    return captured["x"]


@dataclass(frozen=True)
class ActivationSampling:
    """Activation patches plus the shape of the maps they came from."""

    patchset: PatchSet
    map_shape: tuple[int, int, int]  # (C, H, W) of the layer's input, before padding


def _as_pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def conv_window(layer: nn.Module, name: str = "layer") -> tuple[int, int]:
    """``(kernel size, padding)`` of a square-kernel ``nn.Conv2d`` with integer padding."""
    if not isinstance(layer, nn.Conv2d):
        raise ValueError(f"layer {name!r} is a {type(layer).__name__}; activation patches need an nn.Conv2d")
    kh, kw = _as_pair(layer.kernel_size)
    if kh != kw:
        raise ValueError(f"layer {name!r} has a non-square kernel {layer.kernel_size}; patches are square")
    if isinstance(layer.padding, str) or len(set(_as_pair(layer.padding))) != 1:
        raise ValueError(f"layer {name!r} uses padding={layer.padding!r}; give it one explicit integer")
    return kh, _as_pair(layer.padding)[0]


def window_patches(maps: torch.Tensor, size: int, padding: int, per_image: int, seed,
                   image_index=None) -> PatchSet:
    """``per_image`` distinct ``size x size`` windows of each zero-padded map in ``maps``.

    ``maps`` is ``(B, C, H, W)``; windows are drawn without replacement, uniformly
    over the ``(H + 2p - size + 1) * (W + 2p - size + 1)`` positions of the padded
    map.  Positions come back in the unpadded map's coordinates (a window that
    overhangs the border starts at ``-padding``); ``image_index`` (length B) names
    the source rows, default ``arange(B)``.
    """
    rng = as_rng(seed)
    b = maps.shape[0]
    rows = np.arange(b, dtype=np.int64) if image_index is None else np.asarray(image_index, dtype=np.int64)
    if rows.shape != (b,):
        raise ValueError(f"image_index has shape {rows.shape}, expected ({b},)")
    padded = F.pad(maps.detach(), (padding,) * 4).float().cpu().numpy()
    hp, wp = padded.shape[2:]
    n_pos = (hp - size + 1) * (wp - size + 1)
    if not 1 <= per_image <= n_pos:
        raise ValueError(f"per_image={per_image} distinct {size}x{size} windows do not fit a "
                         f"{hp}x{wp} (padded) map; choose per_image in [1, {n_pos}]")
    pick = np.stack([rng.choice(n_pos, size=per_image, replace=False) for _ in range(b)])
    top_left = np.stack(np.divmod(pick, wp - size + 1), axis=-1).reshape(-1, 2)
    local = np.repeat(np.arange(b), per_image)
    cut = cut_patches(padded, local, top_left, size, channels_last=False)
    return PatchSet(cut.patches, rows[local], cut.positions - padding)


def concat_patchsets(parts: list[PatchSet]) -> PatchSet:
    """One :class:`PatchSet` from several (provenance arrays concatenated alike)."""
    if not parts:
        raise ValueError("no patch sets to concatenate")
    return PatchSet(np.concatenate([p.patches for p in parts]),
                    np.concatenate([p.image_index for p in parts]),
                    np.concatenate([p.positions for p in parts]))


def activation_patches(model: nn.Module, layer_name: str, inputs: torch.Tensor, per_image: int, seed,
                       image_index=None, batch_size: int = 500, progress: bool | None = None) -> ActivationSampling:
    """``per_image`` distinct windows of layer ``layer_name``'s input, for every input image.

    ``inputs`` is a float ``(N, C, H, W)`` tensor already prepared as the model
    expects (normalised, on the model's device).  Windows have the layer's kernel
    size and all of its input channels; positions are drawn without replacement,
    uniformly over the padded map (:func:`window_patches`).  ``image_index``
    (length N) names the dataset rows of ``inputs`` for the patch provenance;
    default ``arange(N)``.  Patches come back as float32 numpy
    ``(N * per_image, C, k, k)``.
    """
    size, padding = conv_window(model.get_submodule(layer_name), layer_name)
    n = inputs.shape[0]
    rows = np.arange(n, dtype=np.int64) if image_index is None else np.asarray(image_index, dtype=np.int64)
    if rows.shape != (n,):
        raise ValueError(f"image_index has shape {rows.shape}, expected ({n},)")
    rng = as_rng(seed)
    parts: list[PatchSet] = []
    map_shape = None
    for start in tqdm(range(0, n, batch_size), desc=f"activations {layer_name}", unit="batch",
                      disable=bars.disable(progress), leave=False):
        maps = layer_input(model, layer_name, inputs[start:start + batch_size])
        map_shape = tuple(maps.shape[1:])
        parts.append(window_patches(maps, size, padding, per_image, rng, rows[start:start + batch_size]))
    return ActivationSampling(concat_patchsets(parts), map_shape)
