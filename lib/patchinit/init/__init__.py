"""The patch engine and its two recipes, plus the random baselines.

Shared parts (each small): :mod:`~patchinit.init.normalise` (pixels -> model units),
:mod:`~patchinit.init.layers` (which convs, bottom-up, and the walker over their input
maps), :mod:`~patchinit.init.sources` (where each layer's patches come from),
:mod:`~patchinit.init.select` (clustering and the selectors), :mod:`~patchinit.init.scale`
(scalers and forward-scale readings), :mod:`~patchinit.init.record` (one record per layer),
:mod:`~patchinit.init.patch` (``patch_init_``).  The recipes:

* ``method_a_init_(model, images, layers=None, baseline=None, seed=0, **options)``
* ``patches_init_(model, images, labels, layers=None, baseline=None, seed=0, P=..., C=..., ...)``
"""
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
from patchinit.init.layers import ConvInputs, conv_layers, find_conv, resolve_convs  # noqa: F401
from patchinit.init.normalise import Normaliser  # noqa: F401
from patchinit.init.record import LayerRecord, MethodAResult  # noqa: F401
from patchinit.init.scale import layer_output_std, patch_gain  # noqa: F401
from patchinit.init.method_a import (  # noqa: F401
    CIFAR,
    MNIST,
    MethodAOptions,
    method_a_init_,
    method_a_patterns,
)
from patchinit.init.method_b import (  # noqa: F401
    MethodBConfig,
    choose_patterns,
    partial_patches_init_,
    patches_init_,
    scale_patterns,
)
