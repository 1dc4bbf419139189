"""Which convs to initialise, in which order, and what each one receives.

:func:`conv_layers` lists a model's ``nn.Conv2d`` layers (registration order, or the
order a forward pass reaches them); :func:`resolve_convs` turns a recipe's ``layers``
argument (names or modules, or ``None`` for the recipe's default) into ``(name, conv)``
pairs bottom-up, with errors that name the convs that exist.

:class:`ConvInputs` is the bottom-up walker: for a fixed set of images it gives the
maps each conv receives, computed with the model *as it is now*, so a recipe that
initialises layer l and then asks for layer l+1's maps gets them through the new
weights.  It stops each forward pass at the layer (a pre-hook,
:func:`patchinit.patches.activations.layer_input`), runs batch-norm layers on each
batch's statistics as in training (a fresh network's running statistics would leave
them un-normalised), and, for a chain model that offers ``forward_from(x, start,
stop)`` (``ConvNet``), runs only the segment between two consecutive requests.  A
layer is never assumed to be the image layer because it comes first in a list: the
image layer is the model's first conv, and every other layer gets its real input maps.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm

from patchinit import bars
from patchinit.patches.activations import layer_input

__all__ = ["conv_layers", "find_conv", "resolve_convs", "image_layer", "ConvInputs"]


def _names(model: nn.Module) -> list[str]:
    return [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]


@torch.no_grad()
def conv_layers(model: nn.Module, example: torch.Tensor | None = None) -> list[str]:
    """Names of the ``nn.Conv2d`` layers of ``model``, bottom-up.

    Without ``example`` the order is registration order (the forward order of every
    model in :mod:`patchinit.models`).  With an input batch ``example`` it is the
    order one forward pass (eval mode, no grad) reaches them; convs it never
    reaches come last, in registration order.
    """
    names = _names(model)
    if example is None:
        return names
    order: list[str] = []
    modules = dict(model.named_modules())
    hooks = [modules[n].register_forward_pre_hook(lambda m, a, n=n: order.append(n) if n not in order else None)
             for n in names]
    was_training = model.training
    try:
        model.eval()
        model(example)
    except RuntimeError:  # e.g. images with other channels than the model takes: the caller's checks say so
        return names
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return order + [n for n in names if n not in order]


def find_conv(model: nn.Module, layer) -> nn.Conv2d:
    """The ``nn.Conv2d`` called ``layer`` (or ``layer`` itself, if it is one of the model's modules);
    an unknown name lists the conv layers that exist."""
    return resolve_convs(model, [layer])[0][1]


def resolve_convs(model: nn.Module, layers: Iterable | None, default: Sequence[str] | None = None,
                  example: torch.Tensor | None = None) -> list[tuple[str, nn.Conv2d]]:
    """``(name, conv)`` for each of ``layers`` (names or modules of ``model``), bottom-up.

    ``layers=None`` takes ``default`` (names), or every conv.  With ``example`` the
    layers are sorted in the order a forward pass reaches them (:func:`conv_layers`);
    without it they keep the order given.
    """
    available = _names(model)
    if layers is None:
        layers = list(default) if default is not None else available
    elif isinstance(layers, (str, nn.Module)):
        layers = [layers]
    by_module = {id(m): n for n, m in model.named_modules()}
    out: list[tuple[str, nn.Conv2d]] = []
    for layer in layers:
        if isinstance(layer, nn.Module):
            if id(layer) not in by_module:
                raise ValueError(f"a {type(layer).__name__} passed in layers is not a module of "
                                 f"{type(model).__name__}; conv layers: {available}")
            layer = by_module[id(layer)]
        m = dict(model.named_modules()).get(layer) if isinstance(layer, str) else None
        if not isinstance(m, nn.Conv2d):
            what = f"is not a Conv2d (a {type(m).__name__})" if m is not None else "does not exist"
            raise ValueError(f"layer {layer!r} {what}; conv layers of {type(model).__name__}: {available}")
        if layer not in (n for n, _ in out):
            out.append((layer, m))
    if not out:
        raise ValueError(f"no conv layer to initialise; pass layers=[...] from {available}")
    if example is not None:
        rank = {n: i for i, n in enumerate(conv_layers(model, example))}
        out.sort(key=lambda nm: rank[nm[0]])
    return out


def image_layer(model: nn.Module, example: torch.Tensor | None = None) -> str:
    """The conv that sees the images: the model's first conv, bottom-up."""
    names = conv_layers(model, example)
    if not names:
        raise ValueError(f"{type(model).__name__} has no nn.Conv2d layer")
    return names[0]


class ConvInputs:
    """The input maps of a model's convs for images ``imgs``, through the weights as they are now.

    ``normaliser`` turns uint8 rows into model units (:class:`patchinit.init.normalise.Normaliser`);
    maps are computed ``batch_size`` images at a time on the model's device, BN on each batch's
    statistics.  ``chain=True`` reuses the previous request's inputs on a model with
    ``forward_from`` (the same rows, in the same batches), so a bottom-up walk costs one forward pass.
    """

    def __init__(self, model: nn.Module, imgs: np.ndarray, normaliser, batch_size: int = 500,
                 chain: bool = True, progress: bool | None = False):
        self.model, self.imgs, self.norm = model, imgs, normaliser
        self.batch_size, self.progress = int(batch_size), progress
        self.chain = chain and hasattr(model, "forward_from")
        self.device = next(model.parameters()).device
        self.cached: tuple[str, list[torch.Tensor], tuple] | None = None  # (conv, its inputs per batch, rows)

    def batches(self, rows: np.ndarray) -> list[np.ndarray]:
        """``rows`` in ``batch_size`` pieces."""
        return [rows[i:i + self.batch_size] for i in range(0, rows.size, self.batch_size)]

    def images(self, rows: np.ndarray) -> torch.Tensor:
        """The rows ``rows`` of the images, normalised, on the model's device."""
        return self.norm.images(self.imgs[rows], self.device)

    def start(self, name: str, rows: np.ndarray) -> list[torch.Tensor]:
        """The image layer ``name``: its inputs are the normalised images (kept for the chain)."""
        x = [self.images(r) for r in self.batches(rows)]
        if self.chain:
            self.cached = (name, x, _rows_key(rows))
        return x

    @torch.no_grad()
    def maps(self, name: str, rows: np.ndarray, keep: bool = True) -> list[torch.Tensor]:
        """The maps conv ``name`` receives from image ``rows``, one tensor per batch; ``keep=False``
        leaves the chain where it was (extra rows that the next layer will not need)."""
        key = _rows_key(rows)
        if self.cached is not None and self.cached[2] == key:
            prev, inputs, _ = self.cached
            out = [self.model.forward_from(x, prev, name) for x in inputs]
        else:
            out = [layer_input(self.model, name, self.images(r), batch_norm="batch")
                   for r in tqdm(self.batches(rows), desc=f"maps into {name}", leave=False,
                                 disable=bars.disable(self.progress))]
        if self.chain and keep:
            self.cached = (name, out, key)
        return out

    @torch.no_grad()
    def shape(self, name: str) -> tuple[int, ...]:
        """``(C, H, W)`` of the maps conv ``name`` receives (one image, eval mode)."""
        return tuple(layer_input(self.model, name, self.images(np.arange(1)), batch_norm="eval").shape[1:])


def _rows_key(rows: np.ndarray) -> tuple:
    rows = np.asarray(rows)
    return (rows.size, hash(rows.tobytes()))
