"""Conv2, Conv4 and Conv6: the small VGG-like CIFAR nets of the lottery-ticket line.

Thesis Table 5.1 (after Frankle & Carbin 2019; Zhou et al. 2019; Ramanujan et al.
2020): 3x3 convolutions with padding 1 and ReLU, a 2x2 max-pool after every pair,
then fully connected layers of 256, 256 and ``num_classes`` units with ReLU between.

=====  ==========================================  ============================
model  conv layers                                 weights (10 classes)
=====  ==========================================  ============================
Conv2  64, 64, pool                                4,300,992
Conv4  64, 64, pool, 128, 128, pool                2,425,024
Conv6  64, 64, pool, 128, 128, pool, 256, 256, pool  2,261,184
=====  ==========================================  ============================

No layer has a bias, as in the edge-popup reference (its ``conv1x1``/``conv3x3``
builders use ``bias=False``); the counts equal the lottery-ticket paper's 4.3M,
2.4M and 2.26M.  The edge-popup reference writes its FC layers as 1x1 convs on a
``C x 1 x 1`` map; plain ``nn.Linear`` layers compute the same function with the
same weight count, and a flatten in channel-major order.

Layers are named ``conv1 .. convN`` and ``fc1 .. fc3``; :attr:`ConvNet.conv_names`
lists the convs in forward order (PatchesInit walks them).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from patchinit.models import register

__all__ = ["ConvNet", "CONV_WIDTHS", "conv2", "conv4", "conv6"]

# Conv widths per model; a 2x2 max-pool follows every second conv.
CONV_WIDTHS: dict[str, tuple[int, ...]] = {
    "conv2": (64, 64),
    "conv4": (64, 64, 128, 128),
    "conv6": (64, 64, 128, 128, 256, 256),
}
FC_WIDTHS = (256, 256)


class ConvNet(nn.Module):
    """Pairs of 3x3 convs (each pair followed by max-pool), then three FC layers.

    ``input_size`` is the side of the square input (32 for CIFAR); it fixes the
    width of ``fc1``.
    """

    def __init__(self, widths: tuple[int, ...], num_classes: int, in_channels: int = 3,
                 input_size: int = 32):
        super().__init__()
        if len(widths) == 0 or len(widths) % 2:
            raise ValueError(f"widths must hold an even number (>= 2) of conv widths, got {widths!r}")
        side = input_size // 2 ** (len(widths) // 2)
        if side < 1:
            raise ValueError(f"input_size={input_size} is too small for {len(widths) // 2} max-pools")
        self.conv_names: list[str] = []
        channels = in_channels
        for i, width in enumerate(widths, start=1):
            name = f"conv{i}"
            self.add_module(name, nn.Conv2d(channels, width, 3, padding=1, bias=False))
            self.conv_names.append(name)
            channels = width
        self.fc1 = nn.Linear(channels * side * side, FC_WIDTHS[0], bias=False)
        self.fc2 = nn.Linear(FC_WIDTHS[0], FC_WIDTHS[1], bias=False)
        self.fc3 = nn.Linear(FC_WIDTHS[1], num_classes, bias=False)
        self.fc_names: list[str] = ["fc1", "fc2", "fc3"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_from(x)

    def forward_from(self, x: torch.Tensor, start: str | None = None, stop: str | None = None) -> torch.Tensor:
        """Run the part of the net between two convs.

        ``x`` is the input of conv ``start`` (default: the first, i.e. the image);
        the result is the input of conv ``stop`` (after ReLU and pooling), or the
        logits when ``stop`` is None.  PatchesInit uses it to go from one conv's
        input to the next without re-running the layers before (a chain has no
        skip connections, so this is exact).
        """
        i0 = 0 if start is None else self._conv_index(start)
        i1 = len(self.conv_names) if stop is None else self._conv_index(stop)
        if i1 < i0:
            raise ValueError(f"stop={stop!r} comes before start={start!r}")
        for i in range(i0, i1):
            x = F.relu(getattr(self, self.conv_names[i])(x))
            if i % 2 == 1:
                x = F.max_pool2d(x, 2)
        if stop is not None:
            return x
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)

    def _conv_index(self, name: str) -> int:
        try:
            return self.conv_names.index(name)
        except ValueError:
            raise ValueError(f"{name!r} is not a conv of this model; choose one of {self.conv_names}") from None


def _builder(name: str):
    def build(num_classes: int, in_channels: int = 3, input_size: int = 32) -> ConvNet:
        return ConvNet(CONV_WIDTHS[name], num_classes, in_channels=in_channels, input_size=input_size)

    build.__name__ = name
    build.__doc__ = f"{name.capitalize()}: convs {CONV_WIDTHS[name]}, FC 256, 256, num_classes."
    return register(name)(build)


conv2 = _builder("conv2")
conv4 = _builder("conv4")
conv6 = _builder("conv6")
