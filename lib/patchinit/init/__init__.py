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
from patchinit.init.patch import patch_init_  # noqa: F401
from patchinit.init.method_a import (  # noqa: F401
    CIFAR,
    MNIST,
    MethodAOptions,
    MethodAResult,
    method_a_init_,
    method_a_patterns,
)
from patchinit.init.method_b import (  # noqa: F401
    LayerRecord,
    MethodBConfig,
    choose_patterns,
    partial_patches_init_,
    patches_init_,
    scale_patterns,
)
