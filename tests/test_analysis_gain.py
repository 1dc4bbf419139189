"""analysis.patch_gain: the forward-scale explanation of PatchesInit, checked on cases with a known answer."""
import math

import torch
import torch.nn as nn

from patchinit.analysis import patch_gain


def test_random_filters_have_gain_one_and_matched_filters_gain_sqrt_n():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 16, 3, bias=False)
    x = torch.randn(8, 3, 12, 12)
    g = patch_gain(conv, x)
    assert 0.85 < g["predicted"] < 1.15 and 0.8 < g["measured"] < 1.25
    # inputs that are all one pattern, and filters equal to that pattern: cos = 1, gain = sqrt(n)
    pattern = torch.randn(3, 3, 3)
    x = pattern.repeat(4, 1, 1, 1) * torch.rand(4, 1, 1, 1)  # one window per image, scaled
    with torch.no_grad():
        conv.weight.copy_(pattern.expand(16, 3, 3, 3))
    g = patch_gain(conv, x)
    assert abs(g["predicted"] - math.sqrt(27)) < 1e-6
    assert g["measured"] > 2.5  # random rows of the same norm respond about sqrt(27) = 5.2 times less
