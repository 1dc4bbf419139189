"""Caffe LeNet (patchinit.models.lenet)."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from patchinit.models import build_model


def test_lenet_parameter_count_and_layer_names():
    model = build_model("lenet", 10)
    assert sum(p.numel() for p in model.parameters()) == 431_080
    names = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert names == ["conv1", "conv2", "fc1", "fc2"]
    assert tuple(model.conv1.weight.shape) == (20, 1, 5, 5)
    assert tuple(model.conv2.weight.shape) == (50, 20, 5, 5)
    assert tuple(model.fc1.weight.shape) == (500, 800)
    assert build_model("lenet", 100).fc2.out_features == 100


def test_lenet_forward_shape_and_only_relu_after_fc1():
    model = build_model("lenet", 10)
    out = model(torch.randn(3, 1, 28, 28))
    assert out.shape == (3, 10)
    assert [type(m).__name__ for m in model.modules() if isinstance(m, nn.ReLU)] == ["ReLU"]
    # no ReLU after the convs: the conv stack is linear up to max-pooling, so
    # negative pre-activations reach fc1 (a ReLU there would clip them)
    x = torch.randn(2, 1, 28, 28)
    feats = model.pool2(model.conv2(model.pool1(model.conv1(x))))
    assert (feats < 0).any()


def test_lenet_rejects_wrong_input_size():
    with pytest.raises(ValueError, match="28x28"):
        build_model("lenet", 10)(torch.randn(1, 1, 32, 32))
