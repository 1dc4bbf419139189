"""Initialisers: the random baselines and patch-based initialisation."""
from patchinit.init.baselines import (  # noqa: F401
    SCHEMES,
    baseline_init_,
    kaiming_normal_,
    kaiming_uniform_,
    signed_constant_,
    weight_layers,
    xavier_normal_,
    xavier_uniform_,
)
