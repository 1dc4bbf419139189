"""Random baseline initialisers, in ``torch.nn.init`` style.

Every scheme touches the weights of ``Conv*d`` and ``Linear`` layers; biases,
where a layer has them, always get PyTorch's default ``U(-1/sqrt(fan_in),
1/sqrt(fan_in))``.  All draws come from the given ``torch.Generator`` in
module order, so a seed fixes the whole model.

Schemes (names are the ones used in configs and records):

``kaiming_uniform``  PyTorch's default: ``kaiming_uniform_(a=sqrt(5))``,
                     i.e. ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` (Lehmann & Ebner's "Kaiming U").
``kaiming_normal``   He et al. 2015: ``N(0, 2/fan_in)`` (ReLU gain, fan-in).
``he_uniform``       He et al. 2015, uniform: ``U(-a, a)``, ``a = sqrt(6/fan_in)``, the same variance as
                     ``kaiming_normal``; edge-popup's ``kaiming_uniform`` (the thesis's "Kaiming Uniform").
``xavier_normal``    Glorot & Bengio 2010: ``N(0, 2/(fan_in+fan_out))``; the thesis's "Random".
``xavier_uniform``   ``U(-a, a)``, ``a = sqrt(6/(fan_in+fan_out))``.
``signed_constant``  edge-popup's constant: ``±sqrt(2/fan_in)`` with a random sign.
"""
from __future__ import annotations

import math
from typing import Callable, Iterator

import torch
import torch.nn as nn

Generator = torch.Generator | None


def is_weight_layer(m: nn.Module) -> bool:
    return isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear))


def weight_layers(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """``(name, module)`` for every conv and linear layer, in registration order."""
    for name, m in model.named_modules():
        if is_weight_layer(m):
            yield name, m


def fan_in_out(w: torch.Tensor) -> tuple[int, int]:
    if w.dim() < 2:
        raise ValueError(f"fan in/out needs a tensor with >= 2 dims, got shape {tuple(w.shape)}")
    receptive = w[0, 0].numel()
    return w.shape[1] * receptive, w.shape[0] * receptive


def _weight(t) -> torch.Tensor:
    return t.weight if isinstance(t, nn.Module) else t


@torch.no_grad()
def kaiming_uniform_(t, generator: Generator = None):
    """PyTorch's default conv/linear weight init (``a = sqrt(5)``)."""
    return nn.init.kaiming_uniform_(_weight(t), a=math.sqrt(5), generator=generator)


@torch.no_grad()
def kaiming_normal_(t, generator: Generator = None):
    return nn.init.kaiming_normal_(_weight(t), mode="fan_in", nonlinearity="relu", generator=generator)


@torch.no_grad()
def he_uniform_(t, generator: Generator = None):
    """``kaiming_uniform_`` with the ReLU gain (``a = 0``, fan-in): variance ``2 / fan_in``."""
    return nn.init.kaiming_uniform_(_weight(t), mode="fan_in", nonlinearity="relu", generator=generator)


@torch.no_grad()
def xavier_normal_(t, generator: Generator = None):
    return nn.init.xavier_normal_(_weight(t), generator=generator)


@torch.no_grad()
def xavier_uniform_(t, generator: Generator = None):
    return nn.init.xavier_uniform_(_weight(t), generator=generator)


@torch.no_grad()
def signed_constant_(t, generator: Generator = None):
    w = _weight(t)
    fan_in, _ = fan_in_out(w)
    sign = torch.randint(0, 2, w.shape, generator=generator, device=w.device).to(w.dtype) * 2 - 1
    w.copy_(sign * math.sqrt(2.0 / fan_in))
    return w


SCHEMES: dict[str, Callable] = {
    "kaiming_uniform": kaiming_uniform_,
    "kaiming_normal": kaiming_normal_,
    "he_uniform": he_uniform_,
    "xavier_normal": xavier_normal_,
    "xavier_uniform": xavier_uniform_,
    "signed_constant": signed_constant_,
}


def scheme_fn(scheme: str) -> Callable:
    try:
        return SCHEMES[scheme]
    except KeyError:
        raise ValueError(f"unknown init scheme {scheme!r}; choose one of {sorted(SCHEMES)}") from None


@torch.no_grad()
def baseline_init_(model: nn.Module, scheme: str = "kaiming_uniform", seed: int | None = None,
                   generator: Generator = None, skip: tuple[str, ...] = ()) -> nn.Module:
    """Initialise every conv/linear layer of ``model`` in place with ``scheme``.

    ``seed`` (or an explicit ``generator``) fixes the draws.  Layers named in
    ``skip`` are left untouched *but their draws are still consumed*, so the other
    layers get exactly the values they would get without ``skip``: a patch-initialised
    model and its baseline share every random layer.
    """
    fn = scheme_fn(scheme)
    if generator is None:
        generator = torch.Generator().manual_seed(0 if seed is None else int(seed))
    for name, m in weight_layers(model):
        w_backup = m.weight.detach().clone() if name in skip else None
        b_backup = m.bias.detach().clone() if (name in skip and m.bias is not None) else None
        _init_on_cpu(fn, m, generator)
        if w_backup is not None:
            m.weight.copy_(w_backup)
            if b_backup is not None:
                m.bias.copy_(b_backup)
    return model


def _init_on_cpu(fn: Callable, m: nn.Module, generator: torch.Generator) -> None:
    """Draw on the generator's device (CPU) and copy, so CPU and CUDA models match."""
    w = torch.empty_like(m.weight, device="cpu")
    fn(w, generator=generator)
    m.weight.copy_(w)
    if getattr(m, "bias", None) is not None:
        fan_in, _ = fan_in_out(w)
        bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        b = torch.empty_like(m.bias, device="cpu").uniform_(-bound, bound, generator=generator)
        m.bias.copy_(b)
