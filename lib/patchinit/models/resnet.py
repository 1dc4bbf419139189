"""ResNet-18 with BatchNorm, in torchvision's layout, plus the thesis's variant.

One class, :class:`ResNet`, builds both ResNet-18s the papers use:

``resnet18``  Lehmann & Ebner §4.3 ("a standard 18-layer ResNet ... containing
              normalization layers", 11,181,642 trainable parameters with 10
              classes).  That number is torchvision's ``resnet18``: 7x7 stride-2
              stem conv (no bias), BN, ReLU, 3x3 stride-2 max-pool, four stages of
              two BasicBlocks (64, 128, 256, 512), 1x1-conv+BN downsample shortcuts,
              global average pool, ``fc`` with bias.

``resnet18_thesis``  Rencoret Table 5.1 (TinyImageNet-200, supermask training):
              "64, pool | 2x[64,64] | 2x[128,128] | 2x[256,256] | 2x[512,512] |
              avg-pool, 200".  The table gives filter counts only.  Its "pool"
              after the 64-filter stem says which edge-popup network it is: in the
              edge-popup code (allenai/hidden-networks) only the ImageNet ``ResNet18``
              has a max-pool after the stem, and that stem is the 7x7 stride-2
              conv (the CIFAR ``cResNet18`` has a 3x3 stem and no pool).  The
              thesis's TinyImageNet hyper-parameters (lr 0.256, momentum 0.875,
              batch 256, cosine) are also those of edge-popup's ImageNet ResNet-18
              config.  So the thesis variant is the same layout as ``resnet18``,
              with edge-popup's choices for supermask training: BatchNorm without
              learned affine parameters (``NonAffineBatchNorm``) and no bias
              anywhere (its convs, and its ``fc``, a bias-free 1x1 conv, have none;
              we use a bias-free ``nn.Linear``, the same map).  With 200 classes it
              has 11,269,312 weights, all in convs and ``fc``.

Attribute names follow torchvision (``conv1, bn1, layer1.0.conv1, ...,
layer2.0.downsample.0, fc``) so state dicts look familiar.  The default weight
initialisation is torchvision's (convs He-normal with fan-out, BN weight 1 and
bias 0, ``fc`` PyTorch's default), drawn from an explicit generator.
"""
from __future__ import annotations

import logging
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from patchinit.models import register

log = logging.getLogger(__name__)

__all__ = [
    "BasicBlock",
    "ResNet",
    "resnet18",
    "resnet18_thesis",
    "NORMS",
    "conv_layer_names",
    "resnet18_partial_layers",
    "make_generator",
]

#: ``norm`` option -> BatchNorm2d keyword arguments.
NORMS: dict[str, dict] = {
    "bn": {"affine": True},
    "nonaffine_bn": {"affine": False},  # edge-popup's NonAffineBatchNorm
}

STAGE_WIDTHS = (64, 128, 256, 512)


def make_generator(seed: int | None = None, generator: torch.Generator | None = None) -> torch.Generator:
    """The generator a builder draws from: ``generator``, else a new one seeded with ``seed`` (default 0).

    Giving both is ambiguous and an error, so a caller never believes a seed was used
    when it was not.
    """
    if generator is not None and seed is not None:
        raise ValueError(f"pass seed or generator, not both (got seed={seed!r} and a generator)")
    if generator is not None:
        return generator
    return torch.Generator().manual_seed(0 if seed is None else int(seed))


@torch.no_grad()
def kaiming_uniform_(t: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """PyTorch's default conv/linear weight init, ``kaiming_uniform_(a=sqrt(5))``, from ``generator``.

    The models' own default init (the same draw as ``patchinit.init.baselines.kaiming_uniform_``;
    defined here so that models do not import the init package)."""
    return nn.init.kaiming_uniform_(t, a=math.sqrt(5), generator=generator)


def _norm(kind: str, channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, **NORMS[kind])


class BasicBlock(nn.Module):
    """torchvision's BasicBlock: conv-bn-relu-conv-bn, plus shortcut, then ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, norm: str = "bn"):
        super().__init__()
        # registration order == forward order (conv1, conv2, downsample): conv_layer_names relies on it
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = _norm(norm, c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, stride=1, padding=1, bias=False)
        self.bn2 = _norm(norm, c_out)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), _norm(norm, c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity)


class ResNet(nn.Module):
    """ResNet with BasicBlocks; the options cover both ResNet-18 layouts.

    ``stem_kernel``/``stem_stride``/``stem_pool`` describe the stem (7/2/True is
    torchvision's; 3/1/False is the usual CIFAR stem), ``norm`` is ``"bn"`` or
    ``"nonaffine_bn"``, ``fc_bias`` whether the classifier has a bias.
    """

    def __init__(self, num_classes: int, blocks_per_stage: tuple[int, ...] = (2, 2, 2, 2),
                 widths: tuple[int, ...] = STAGE_WIDTHS, *, stem_kernel: int = 7, stem_stride: int = 2,
                 stem_pool: bool = True, norm: str = "bn", fc_bias: bool = True):
        super().__init__()
        _check_options(stem_kernel, stem_stride, norm, blocks_per_stage, widths)
        self.conv1 = nn.Conv2d(3, widths[0], stem_kernel, stride=stem_stride,
                               padding=stem_kernel // 2, bias=False)
        self.bn1 = _norm(norm, widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1) if stem_pool else nn.Identity()
        c_in = widths[0]
        for i, (n, w) in enumerate(zip(blocks_per_stage, widths)):
            stride = 1 if i == 0 else 2
            blocks = [BasicBlock(c_in, w, stride, norm)] + [BasicBlock(w, w, 1, norm) for _ in range(n - 1)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
            c_in = w
        self.num_stages = len(widths)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, num_classes, bias=fc_bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(self.num_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


def _check_options(stem_kernel, stem_stride, norm, blocks_per_stage, widths) -> None:
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; choose one of {sorted(NORMS)}")
    if stem_kernel not in (3, 5, 7) or stem_stride not in (1, 2):
        raise ValueError(f"stem_kernel must be 3, 5 or 7 and stem_stride 1 or 2; "
                         f"got stem_kernel={stem_kernel}, stem_stride={stem_stride}")
    if len(blocks_per_stage) != len(widths) or min(blocks_per_stage) < 1:
        raise ValueError(f"blocks_per_stage {blocks_per_stage} must give >= 1 block for each width {widths}")


@torch.no_grad()
def torchvision_init_(model: nn.Module, generator: torch.Generator) -> nn.Module:
    """torchvision's ResNet initialisation, drawn from ``generator`` in module order.

    Convs: ``kaiming_normal_(mode="fan_out", nonlinearity="relu")``; affine BN:
    weight 1, bias 0; ``Linear``: PyTorch's default (``kaiming_uniform_(a=sqrt(5))``,
    bias ``U(±1/sqrt(fan_in))``).  Draws happen on the CPU and are copied.
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            _draw(m.weight, lambda t, g: nn.init.kaiming_normal_(t, mode="fan_out", nonlinearity="relu",
                                                                 generator=g), generator)
        elif isinstance(m, nn.BatchNorm2d) and m.affine:
            m.weight.fill_(1.0)
            m.bias.zero_()
        elif isinstance(m, nn.Linear):
            _draw(m.weight, lambda t, g: kaiming_uniform_(t, generator=g), generator)
            if m.bias is not None:
                bound = 1.0 / math.sqrt(m.in_features)
                _draw(m.bias, lambda t, g: t.uniform_(-bound, bound, generator=g), generator)
    return model


def _draw(param: torch.Tensor, fn, generator: torch.Generator) -> None:
    t = torch.empty(param.shape, dtype=param.dtype, device="cpu")
    fn(t, generator)
    param.copy_(t)


def _build(num_classes: int, seed, generator, **options) -> ResNet:
    gen = make_generator(seed, generator)
    with torch.random.fork_rng(devices=[]):  # module constructors draw from the global RNG
        model = ResNet(num_classes, **options)
    return torchvision_init_(model, gen)


@register("resnet18")
def resnet18(num_classes: int = 10, *, norm: str = "bn", stem_kernel: int = 7, stem_stride: int = 2,
             stem_pool: bool = True, fc_bias: bool = True, seed: int | None = None,
             generator: torch.Generator | None = None) -> ResNet:
    """torchvision-layout ResNet-18 (11,181,642 parameters with 10 classes).

    ``seed`` (default 0) or ``generator`` fixes the initial weights; the global RNG
    state is left as it was.  The layout options are those of :class:`ResNet`.
    """
    return _build(num_classes, seed, generator, norm=norm, stem_kernel=stem_kernel,
                  stem_stride=stem_stride, stem_pool=stem_pool, fc_bias=fc_bias)


@register("resnet18_thesis")
def resnet18_thesis(num_classes: int = 200, *, norm: str = "nonaffine_bn", stem_kernel: int = 7,
                    stem_stride: int = 2, stem_pool: bool = True, fc_bias: bool = False,
                    seed: int | None = None, generator: torch.Generator | None = None) -> ResNet:
    """Rencoret's ResNet-18 (Table 5.1) for supermask training: non-affine BN, no biases.

    Same layout as :func:`resnet18`; see the module docstring for why the stem is
    7x7 stride 2 with a max-pool.  11,269,312 parameters with 200 classes.
    """
    return _build(num_classes, seed, generator, norm=norm, stem_kernel=stem_kernel,
                  stem_stride=stem_stride, stem_pool=stem_pool, fc_bias=fc_bias)


def conv_layer_names(model: nn.Module, include_shortcuts: bool = True) -> list[str]:
    """Names of the ``nn.Conv2d`` layers of a ResNet here, in forward order.

    Our blocks register their convs in the order they run (``conv1``, ``conv2``,
    then the ``downsample`` conv), so registration order is forward order.
    ``include_shortcuts=False`` leaves out the 1x1 downsample convs.
    """
    names = []
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d) and (include_shortcuts or ".downsample." not in f".{name}."):
            names.append(name)
    return names


def resnet18_partial_layers(up_to_block: int, num_stages: int = 4,
                            include_shortcuts: bool = False) -> list[str]:
    """Conv layers that Partial-PatchesInit initialises "up to block ``up_to_block``".

    The thesis calls a stage a "block" and counts the stem with the first one: "up to
    the second block (9 convolutional layers)" = stem + 4 convs of ``layer1`` + 4 of
    ``layer2``.  That count leaves out the 1x1 downsample convs, so they are excluded
    by default; ``up_to_block=1`` (the thesis's best Partial-PatchesInit) gives the 5
    convs ``conv1, layer1.0.conv1, ..., layer1.1.conv2``.
    """
    if not 1 <= int(up_to_block) <= num_stages:
        raise ValueError(f"up_to_block must be in 1..{num_stages}, got {up_to_block!r}")
    names = ["conv1"]
    for stage in range(1, int(up_to_block) + 1):
        for block in range(2):
            names += [f"layer{stage}.{block}.conv1", f"layer{stage}.{block}.conv2"]
            if include_shortcuts and stage > 1 and block == 0:
                names.append(f"layer{stage}.0.downsample.0")
    return names
