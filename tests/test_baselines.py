"""The random baselines draw with the spread their names promise."""
import math

import pytest
import torch
import torch.nn as nn

from patchinit.init.baselines import SCHEMES, baseline_init_, scheme_fn

FAN_IN, FAN_OUT = 256 * 9, 128 * 9  # a 256 -> 128 3x3 conv
WANT_STD = {
    "kaiming_uniform": 1 / math.sqrt(3 * FAN_IN),            # PyTorch default, a = sqrt(5)
    "kaiming_normal": math.sqrt(2 / FAN_IN),
    "he_uniform": math.sqrt(2 / FAN_IN),                     # uniform with Kaiming normal's variance
    "xavier_normal": math.sqrt(2 / (FAN_IN + FAN_OUT)),
    "xavier_uniform": math.sqrt(2 / (FAN_IN + FAN_OUT)),
    "signed_constant": math.sqrt(2 / FAN_IN),
}


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_scheme_std_and_support(scheme):
    conv = nn.Conv2d(256, 128, 3, bias=False)
    scheme_fn(scheme)(conv, generator=torch.Generator().manual_seed(0))
    w = conv.weight.detach()
    assert abs(w.std().item() / WANT_STD[scheme] - 1) < 0.01, scheme
    if "uniform" in scheme:
        assert w.abs().max().item() <= math.sqrt(3) * WANT_STD[scheme] * 1.0001
    if scheme == "signed_constant":
        assert torch.allclose(w.abs(), torch.full_like(w, WANT_STD[scheme]))


def test_every_scheme_is_seeded_and_unknown_names_fail():
    a = baseline_init_(nn.Sequential(nn.Conv2d(3, 8, 3), nn.Linear(8, 2)), "he_uniform", seed=1)
    b = baseline_init_(nn.Sequential(nn.Conv2d(3, 8, 3), nn.Linear(8, 2)), "he_uniform", seed=1)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    with pytest.raises(ValueError, match="unknown init scheme 'he'"):
        scheme_fn("he")
