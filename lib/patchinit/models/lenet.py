"""Caffe's LeNet for MNIST (the model of Lehmann & Ebner's MNIST experiments).

conv1 20@5x5 -> maxpool 2/2 -> conv2 50@5x5 -> maxpool 2/2 -> fc1 500 -> ReLU -> fc2.
As in Caffe's ``lenet_train_test.prototxt`` there is no non-linearity after the
convolutions: the only ReLU follows fc1.  Input 1x28x28; with 10 classes the
model has 431,080 parameters.  Weights keep PyTorch's default init (Kaiming
uniform, a = sqrt(5)), which the paper uses for every layer it does not
initialise from patches; use :func:`patchinit.init.baseline_init_` for seeded
weights.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from patchinit.models import register


class LeNet(nn.Module):
    """Caffe LeNet; layer names ``conv1, conv2, fc1, fc2`` are used by the init recipes."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 20, kernel_size=5)
        self.pool1 = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(20, 50, kernel_size=5)
        self.pool2 = nn.MaxPool2d(2, 2)
        self.fc1 = nn.Linear(50 * 4 * 4, 500)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Linear(500, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (28, 28):
            raise ValueError(f"LeNet expects 28x28 inputs, got {tuple(x.shape[-2:])}")
        x = self.pool1(self.conv1(x))
        x = self.pool2(self.conv2(x))
        x = self.relu(self.fc1(torch.flatten(x, 1)))
        return self.fc2(x)


@register("lenet")
def lenet(num_classes: int, in_channels: int = 1) -> LeNet:
    return LeNet(num_classes, in_channels)
