"""Fixup ResNet-20 for CIFAR: the network of Lehmann & Ebner §4.1–4.3.

The paper trains "the same 20-layer ResNet that was also used by Zhang et al."
with the hyper-parameters of their repository (hongyi-zhang/Fixup,
``cifar/models/fixup_resnet_cifar.py``, ``fixup_resnet20``).  This module
rebuilds that network from its description so that our parameter count,
layer names, initialisation and optimiser grouping match it:

* stem ``conv1`` (3→16, 3x3, no bias) + scalar ``bias1`` + ReLU;
* three stages (16, 32, 64 channels) of three basic blocks; every residual
  branch is ``conv1(x + bias1a) → relu(· + bias1b) → conv2(· + bias2a) ·
  scale + bias2b``;
* option-A shortcuts: identity; where a block halves the resolution, every second
  pixel of ``x + bias1a`` (the reference's ``AvgPool2d(1, stride=2)``) with as
  many all-zero channels appended, so shortcuts have no parameters;
* global average pool, scalar ``bias2``, ``fc`` (64→classes, with bias).

With 10 classes that is 268,393 trainable parameters, the number the paper
states.

Fixup initialisation (Zhang et al. 2019; :func:`fixup_init_`): the first conv
of each of the L = 9 branches is He-normal scaled by ``L^(-1/(2m-2)) = L^(-1/2)``
(m = 2 layers per branch), the last conv of each branch and the classifier are
zero, scalar biases are 0 and multipliers are 1.  The reference's He-normal uses
``fan_out = out_channels·k·k`` (``weight.shape[0] * prod(shape[2:])``), not
fan-in; we do the same.  The two differ only in the first block of stages 2 and
3, where the channel count doubles (fan-out is twice fan-in there).  The stem is
left at PyTorch's default conv initialisation, as in the reference.

Because every branch starts at zero, a fresh network is its shortcut path and
its logits are exactly zero: every image starts at the uniform prediction.
"""
from __future__ import annotations

import logging
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from patchinit.models import register
from patchinit.models.resnet import kaiming_uniform_, make_generator

log = logging.getLogger(__name__)

__all__ = [
    "FixupBasicBlock",
    "FixupResNet",
    "fixup_resnet20",
    "fixup_init_",
    "fixup_blocks",
    "fixup_case_layers",
    "param_groups",
    "scalar_param",
    "FIXUP_CASES",
]

#: Method A's deeper-layer cases (§4.3): the first conv, plus the last conv of
#: residual blocks 3, 6 and 9 (the last block of each stage), added one per case.
FIXUP_CASES: dict[str, list[str]] = {
    "a": ["conv1"],
    "b": ["conv1", "layer1.2.conv2"],
    "c": ["conv1", "layer1.2.conv2", "layer2.2.conv2"],
    "d": ["conv1", "layer1.2.conv2", "layer2.2.conv2", "layer3.2.conv2"],
}


def scalar_param(name: str) -> bool:
    """The reference's rule (``cifar_train.py``) for its lr/10 group: every parameter whose name
    contains "bias" or "scale" (the scalar biases and multipliers, and the classifier's bias)."""
    return "bias" in name or "scale" in name


def _conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=False)


def _scalar(value: float) -> nn.Parameter:
    return nn.Parameter(torch.full((1,), float(value)))


class FixupBasicBlock(nn.Module):
    """Basic block without normalisation; four scalar biases and one scalar multiplier.

    The shortcut is option A: identity, or (when ``stride == 2``) a 2x subsample of
    ``x + bias1a`` with the missing channels filled by zeros; as in the reference,
    ``bias1a`` enters the shortcut only on that downsampling path.
    """

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        if c_out < c_in or (stride == 1 and c_out != c_in):
            raise ValueError(f"option-A shortcut needs c_out == c_in (stride 1) or c_out >= c_in "
                             f"(stride 2); got c_in={c_in}, c_out={c_out}, stride={stride}")
        # registration order == forward order (conv1 before conv2): conv_layer_names relies on it
        self.bias1a = _scalar(0.0)
        self.conv1 = _conv3x3(c_in, c_out, stride)
        self.bias1b = _scalar(0.0)
        self.bias2a = _scalar(0.0)
        self.conv2 = _conv3x3(c_out, c_out)
        self.scale = _scalar(1.0)
        self.bias2b = _scalar(0.0)
        self.stride = stride
        self.pad_channels = c_out - c_in

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        """Identity; or, where the block downsamples, every second pixel of ``x + bias1a``
        followed by zero channels (the reference adds ``bias1a`` only on that path)."""
        if self.stride == 1 and self.pad_channels == 0:
            return x
        s = (x + self.bias1a)[:, :, :: self.stride, :: self.stride]
        # zeros appended after the existing channels, like torch.cat((s, zeros), 1)
        return F.pad(s, (0, 0, 0, 0, 0, self.pad_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.conv1(x + self.bias1a) + self.bias1b)
        out = self.conv2(out + self.bias2a) * self.scale + self.bias2b
        return F.relu(out + self.shortcut(x))


class FixupResNet(nn.Module):
    """CIFAR ResNet (6n+2 layers) without normalisation, as in Zhang et al. (2019)."""

    def __init__(self, blocks_per_stage: tuple[int, ...] = (3, 3, 3), num_classes: int = 10,
                 widths: tuple[int, ...] = (16, 32, 64)):
        super().__init__()
        if len(blocks_per_stage) != len(widths):
            raise ValueError(f"blocks_per_stage {blocks_per_stage} and widths {widths} differ in length")
        self.num_branches = sum(blocks_per_stage)
        self.conv1 = _conv3x3(3, widths[0])
        self.bias1 = _scalar(0.0)
        c_in = widths[0]
        for i, (n, w) in enumerate(zip(blocks_per_stage, widths)):
            stride = 1 if i == 0 else 2
            blocks = [FixupBasicBlock(c_in, w, stride)] + [FixupBasicBlock(w, w) for _ in range(n - 1)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
            c_in = w
        self.num_stages = len(widths)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.bias2 = _scalar(0.0)
        self.fc = nn.Linear(c_in, num_classes)

    #: The trainer asks a model for this rule to apply ``TrainConfig.scalar_lr_factor``.
    reduced_lr_param = staticmethod(scalar_param)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled 64-d features before ``bias2`` and the classifier."""
        x = F.relu(self.conv1(x) + self.bias1)
        for i in range(self.num_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x) + self.bias2)


def fixup_blocks(model: FixupResNet) -> list[tuple[str, FixupBasicBlock]]:
    """``(name, block)`` for every residual block, in forward order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, FixupBasicBlock)]


@torch.no_grad()
def fixup_init_(model: FixupResNet, seed: int | None = None,
                generator: torch.Generator | None = None) -> FixupResNet:
    """Fixup initialisation of ``model`` in place (Zhang et al. 2019, as in their code).

    Draw order (fixed, so a seed fixes the model): the stem conv with PyTorch's
    default ``kaiming_uniform_(a=sqrt(5))``, then the first conv of each branch in
    forward order with ``N(0, 2/fan_out) · L^(-1/2)``.  Everything else is constant:
    the last conv of each branch and ``fc`` (weight and bias) are zero, the scalar
    biases 0 and the multipliers 1.  Draws happen on the CPU and are copied, so a
    model on a GPU gets the same numbers.
    """
    if not isinstance(model, FixupResNet):
        raise TypeError(f"fixup_init_ needs a FixupResNet, got {type(model).__name__}")
    gen = make_generator(seed, generator)
    blocks = fixup_blocks(model)
    branch_scale = len(blocks) ** (-0.5)  # L^(-1/(2m-2)) with m = 2
    _copy_from_cpu(model.conv1.weight, kaiming_uniform_, gen)
    for _, block in blocks:
        w = block.conv1.weight
        fan_out = w.shape[0] * w[0, 0].numel()
        std = math.sqrt(2.0 / fan_out) * branch_scale
        _copy_from_cpu(w, lambda t, generator: t.normal_(0.0, std, generator=generator), gen)
        block.conv2.weight.zero_()
        for p in (block.bias1a, block.bias1b, block.bias2a, block.bias2b):
            p.zero_()
        block.scale.fill_(1.0)
    model.bias1.zero_()
    model.bias2.zero_()
    model.fc.weight.zero_()
    model.fc.bias.zero_()
    return model


def _copy_from_cpu(param: torch.Tensor, fn, gen: torch.Generator) -> None:
    t = torch.empty(param.shape, dtype=param.dtype, device="cpu")
    fn(t, generator=gen)
    param.copy_(t)


@register("fixup_resnet20")
def fixup_resnet20(num_classes: int = 10, seed: int | None = None,
                   generator: torch.Generator | None = None) -> FixupResNet:
    """Fixup ResNet-20 (3 stages x 3 blocks, widths 16/32/64), Fixup-initialised.

    ``seed`` (default 0) or ``generator`` fixes the random draws; the global RNG
    state is left as it was.
    """
    with torch.random.fork_rng(devices=[]):  # module constructors draw from the global RNG
        model = FixupResNet((3, 3, 3), num_classes)
    fixup_init_(model, seed=seed, generator=generator)
    log.debug("built fixup_resnet20 (%d classes)", num_classes)
    return model


def fixup_case_layers(case: str) -> list[str]:
    """Names of the layers method A initialises from patches in case ``case`` ("a".."d").

    (a) the first conv; (b) plus the last conv of residual block 3 (16 filters of
    16x3x3); (c) plus that of block 6 (32x32x3x3); (d) plus that of block 9
    (64x64x3x3).  Blocks are counted 1..9 in forward order, three per stage.
    """
    key = str(case).lower().strip("() ")
    if key not in FIXUP_CASES:
        raise ValueError(f"unknown method-A case {case!r}; choose one of {sorted(FIXUP_CASES)}")
    return list(FIXUP_CASES[key])


def param_groups(model: nn.Module, lr: float, scalar_lr_factor: float = 0.1) -> list[dict]:
    """Optimiser parameter groups with the Fixup reference's smaller lr for scalars.

    The reference (``cifar_train.py``) puts every parameter whose name contains
    ``"bias"`` or ``"scale"`` in groups with lr ``base_lr / 10``, the rest at
    ``base_lr``; weight decay and momentum are the same for all groups.  We keep its
    rule by name, so ``fc.bias`` is in the scalar group too, as there.  Pass
    ``scalar_lr_factor=1.0`` to train everything at one lr.  Each group carries
    ``"name"`` (``"scalars"`` or ``"weights"``) and an ``"lr"``; empty groups are
    dropped.  A scheduler that scales each group's ``initial_lr`` (e.g. cosine)
    keeps the ratio, as in the reference.
    """
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr!r}")
    if not scalar_lr_factor > 0:
        raise ValueError(f"scalar_lr_factor must be > 0, got {scalar_lr_factor!r}")
    scalars, weights = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (scalars if scalar_param(name) else weights).append(p)
    groups = [
        {"name": "scalars", "params": scalars, "lr": lr * scalar_lr_factor},
        {"name": "weights", "params": weights, "lr": lr},
    ]
    return [g for g in groups if g["params"]]
