"""Edge-popup supermasks (Ramanujan et al. 2020): train a mask, never the weights.

Every converted layer keeps its weights frozen at the values it had when it was
converted and learns one *popup score* per weight.  The forward pass uses only the
weights whose ``|score|`` is among the top ``keep`` fraction of the layer; the
backward pass sends the gradient to the scores straight through the hard top-k, as
if the mask were all ones (the straight-through estimator that lets pruned edges
"pop up" again).

Vocabulary, fixed once here because the edge-popup reference mixes the two
meanings (its argument ``prune_rate`` is the fraction *kept*, see its issue #9):

``prune``  the fraction of each layer's weights that is REMOVED; the thesis's
           "prune percentage" / 100, one of {0.1, 0.3, 0.5, 0.7, 0.9}.
``keep``   ``1 - prune``, the fraction that is kept (the thesis's ``k``).

A layer of ``n`` weights keeps exactly :func:`keep_count` ``(n, prune)`` of them,
``round(keep * n)`` with halves rounded up, whatever ties the scores have.

Order of use: initialise the weights first (``baseline_init_`` or
``patches_init_``), then call :func:`to_supermask_`; it freezes whatever weights the
layers hold at that moment.  :func:`to_pruned_dense` turns a trained supermask
model back into an ordinary ``nn.Conv2d``/``nn.Linear`` model with the masked
weights, which gives the same outputs.
"""
from __future__ import annotations

import copy
import math
from typing import Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "validate_prune",
    "keep_count",
    "topk_mask",
    "SupermaskConv2d",
    "SupermaskLinear",
    "supermask_layers",
    "score_parameters",
    "to_supermask_",
    "set_prune_",
    "to_pruned_dense",
    "kept_fraction",
]


def validate_prune(prune: float) -> float:
    """Return ``prune`` as a float if ``0 < prune < 1``, else raise naming it.

    Both ends are excluded: ``prune = 0`` is ordinary dense training with frozen
    weights (nothing to learn) and ``prune = 1`` removes every weight.
    """
    try:
        value = float(prune)
    except (TypeError, ValueError):
        raise ValueError(f"prune must be a number in (0, 1) (the fraction of weights REMOVED), "
                         f"got {prune!r}") from None
    if not (0.0 < value < 1.0) or math.isnan(value):
        hint = " (did you pass a percentage? use 0.5 for 50%)" if 1.0 < value <= 100.0 else ""
        raise ValueError(f"prune must satisfy 0 < prune < 1 (the fraction of weights REMOVED), "
                         f"got prune={prune!r}{hint}")
    return value


def keep_count(n: int, prune: float) -> int:
    """Number of weights a layer of ``n`` weights keeps: ``round((1 - prune) * n)``.

    Halves round up (not Python's round-half-to-even), and a tiny tolerance absorbs
    float error in ``1 - prune`` (``1 - 0.9`` is ``0.09999999999999998``), so the
    count is the one a reader computes by hand.
    """
    keep = 1.0 - validate_prune(prune)
    return int(math.floor(keep * n + 0.5 + 1e-9))


def topk_mask(scores: torch.Tensor, n_keep: int) -> torch.Tensor:
    """0/1 mask (dtype of ``scores``) with ones at the ``n_keep`` largest entries.

    Uses a threshold from ``kthvalue`` (one selection, no full sort).  Entries tied
    with the threshold are admitted lowest index first until exactly ``n_keep`` are
    kept, with tensor ops only: no host synchronisation, and ``vmap`` can batch it
    (see ``benchmarks/bench_topk.py`` for the timings behind this choice).
    """
    flat = scores.reshape(-1)
    n = flat.numel()
    if not 0 <= n_keep <= n:
        raise ValueError(f"n_keep must lie in [0, {n}], got {n_keep}")
    if n_keep == n:
        return torch.ones_like(scores)
    if n_keep == 0:
        return torch.zeros_like(scores)
    threshold = flat.kthvalue(n - n_keep).values
    above, ties = flat > threshold, flat == threshold
    extra = ties & (torch.cumsum(ties, 0, dtype=torch.int64) <= n_keep - above.sum())
    return (above | extra).view_as(scores).to(scores.dtype)


class _SupermaskMixin:
    """Shared state of the masked layers: frozen weight/bias, scores, prune rate."""

    scores: nn.Parameter
    prune: float

    def _adopt(self, dense: nn.Module, prune: float, generator: torch.Generator | None) -> None:
        """Take copies of ``dense``'s weight/bias (replacing meta tensors), add scores."""
        self.weight = nn.Parameter(dense.weight.detach().clone())
        if dense.bias is not None:
            self.bias = nn.Parameter(dense.bias.detach().clone())
        self.train(dense.training)
        self._setup_supermask(prune, generator)

    def _setup_supermask(self, prune: float, generator: torch.Generator | None) -> None:
        self.weight.requires_grad_(False)
        if self.bias is not None:
            self.bias.requires_grad_(False)
        self.scores = nn.Parameter(torch.empty_like(self.weight))
        self.reset_scores(generator)
        self.set_prune(prune)

    @torch.no_grad()
    def reset_scores(self, generator: torch.Generator | None = None) -> None:
        """kaiming_uniform(a=sqrt(5)) scores, as in the edge-popup reference.

        Drawn on the CPU from ``generator`` and copied, so a seed gives the same
        scores on every device.
        """
        cpu = torch.empty_like(self.scores, device="cpu")
        nn.init.kaiming_uniform_(cpu, a=math.sqrt(5), generator=generator)
        self.scores.copy_(cpu)

    def set_prune(self, prune: float) -> None:
        self.prune = validate_prune(prune)

    @property
    def keep(self) -> float:
        return 1.0 - self.prune

    @property
    def n_keep(self) -> int:
        return keep_count(self.weight.numel(), self.prune)

    def mask(self) -> torch.Tensor:
        """The current 0/1 mask (no gradient)."""
        return topk_mask(self.scores.detach().abs(), self.n_keep)

    def masked_weight(self) -> torch.Tensor:
        """``weight * mask`` with the straight-through gradient to ``scores``.

        The forward value is exactly the top-k mask of ``|scores|`` (``s - s.detach()``
        is exactly zero); the backward pass sees ``mask = |scores|`` (gradient one).
        Written with plain tensor ops, it works under ``vmap`` (several models at once)
        and ``torch.compile`` alike.
        """
        magnitudes = self.scores.abs()
        mask = topk_mask(magnitudes.detach(), self.n_keep) + (magnitudes - magnitudes.detach())
        return self.weight * mask

    def extra_repr(self) -> str:  # pragma: no cover - cosmetic
        return f"{super().extra_repr()}, prune={self.prune}"


class SupermaskConv2d(_SupermaskMixin, nn.Conv2d):
    """``nn.Conv2d`` whose frozen weights are masked by the top-k popup scores."""

    def __init__(self, *args, prune: float = 0.5, generator: torch.Generator | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._setup_supermask(prune, generator)

    @classmethod
    def from_dense(cls, conv: nn.Conv2d, prune: float,
                   generator: torch.Generator | None = None) -> "SupermaskConv2d":
        """A supermask twin of ``conv`` holding a copy of its current weight and bias.

        The shell is built on the meta device, so no default init runs and the
        global RNG is never touched; only ``generator`` is drawn from (scores).
        """
        shell = cls.__new__(cls)
        nn.Conv2d.__init__(shell, conv.in_channels, conv.out_channels, conv.kernel_size,
                           stride=conv.stride, padding=conv.padding, dilation=conv.dilation,
                           groups=conv.groups, bias=conv.bias is not None,
                           padding_mode=conv.padding_mode, device="meta")
        shell._adopt(conv, prune, generator)
        return shell

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.masked_weight(), self.bias)


class SupermaskLinear(_SupermaskMixin, nn.Linear):
    """``nn.Linear`` whose frozen weights are masked by the top-k popup scores."""

    def __init__(self, *args, prune: float = 0.5, generator: torch.Generator | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._setup_supermask(prune, generator)

    @classmethod
    def from_dense(cls, linear: nn.Linear, prune: float,
                   generator: torch.Generator | None = None) -> "SupermaskLinear":
        """A supermask twin of ``linear`` (see :meth:`SupermaskConv2d.from_dense`)."""
        shell = cls.__new__(cls)
        nn.Linear.__init__(shell, linear.in_features, linear.out_features,
                           bias=linear.bias is not None, device="meta")
        shell._adopt(linear, prune, generator)
        return shell

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.masked_weight(), self.bias)


_SUPERMASK_TYPES = (SupermaskConv2d, SupermaskLinear)


def supermask_layers(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """``(name, layer)`` for every supermask layer, in module order."""
    for name, m in model.named_modules():
        if isinstance(m, _SUPERMASK_TYPES):
            yield name, m


def score_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The popup scores: the only parameters a supermask optimiser should see."""
    return [m.scores for _, m in supermask_layers(model)]


def _set_child(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def to_supermask_(model: nn.Module, prune: float, seed: int | None = None,
                  generator: torch.Generator | None = None, freeze_rest: bool = True) -> nn.Module:
    """Replace every ``nn.Conv2d`` and ``nn.Linear`` of ``model`` by its supermask twin.

    The layers keep the weights they hold now (initialise first, then convert).
    Scores are drawn from ``generator`` (or ``torch.Generator().manual_seed(seed)``,
    seed 0 if both are None) in module order.  With ``freeze_rest`` every other
    parameter (e.g. BatchNorm affine) is frozen too, so that only scores train, as
    in edge-popup, whose BatchNorms are non-affine.  Layers that already are
    supermask layers are left alone.  Returns ``model``.
    """
    prune = validate_prune(prune)
    if generator is None:
        generator = torch.Generator().manual_seed(0 if seed is None else int(seed))
    targets = [(name, m) for name, m in model.named_modules()
               if type(m) in (nn.Conv2d, nn.Linear)]
    if not targets and not any(True for _ in supermask_layers(model)):
        raise ValueError(f"model {type(model).__name__} has no nn.Conv2d or nn.Linear layer to convert")
    for name, m in targets:
        cls = SupermaskConv2d if isinstance(m, nn.Conv2d) else SupermaskLinear
        new = cls.from_dense(m, prune, generator=generator)
        _set_child(model, name, new)
    if freeze_rest:
        scores = {id(p) for p in score_parameters(model)}
        for p in model.parameters():
            if id(p) not in scores:
                p.requires_grad_(False)
    return model


def set_prune_(model: nn.Module, prune: float) -> nn.Module:
    """Set the prune rate of every supermask layer of ``model``."""
    prune = validate_prune(prune)
    for _, m in supermask_layers(model):
        m.set_prune(prune)
    return model


def _dense_twin(m: nn.Module) -> nn.Module:
    """Plain layer with ``m``'s hyper-parameters holding ``weight * mask`` (built on
    the meta device first, so no default init draws from the global RNG)."""
    if isinstance(m, SupermaskConv2d):
        new = nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, stride=m.stride,
                        padding=m.padding, dilation=m.dilation, groups=m.groups,
                        bias=m.bias is not None, padding_mode=m.padding_mode, device="meta")
    else:
        new = nn.Linear(m.in_features, m.out_features, bias=m.bias is not None, device="meta")
    new.weight = nn.Parameter(m.weight.detach() * m.mask())
    if m.bias is not None:
        new.bias = nn.Parameter(m.bias.detach().clone())
    new.train(m.training)
    return new


@torch.no_grad()
def to_pruned_dense(model: nn.Module) -> nn.Module:
    """A new ordinary model whose layers hold ``weight * mask``; ``model`` is untouched.

    The result has plain ``nn.Conv2d``/``nn.Linear`` layers (trainable parameters,
    no scores) and computes the same function as the supermask model, so it can be
    saved, counted or fine-tuned without this module.
    """
    dense = copy.deepcopy(model)
    for name, m in list(supermask_layers(dense)):
        _set_child(dense, name, _dense_twin(m))
    for p in dense.parameters():
        p.requires_grad_(True)
    return dense


@torch.no_grad()
def kept_fraction(model: nn.Module) -> dict[str, float]:
    """Fraction of weights each supermask layer keeps now (for checks and plots)."""
    return {name: float(m.mask().mean()) for name, m in supermask_layers(model)}
