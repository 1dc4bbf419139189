"""The experimental protocols, in both profiles, and the chapter grids built from them.

``paper`` is the protocol the source documents describe; ``quick`` is a scaled-down version that runs
on a 2-core CPU in minutes: the paper protocol with an :class:`Overlay`, whose sentences
:func:`describe` prints, so no page can silently claim the full protocol.  ``method_a`` and
``method_b`` hold each paper's protocols and grids; ``evidence`` the CPU's evidence tiers.
"""
from .base import PRECISIONS, PROFILES, Overlay, Protocol, check_profile, describe, paper_command, with_precision
from .evidence import (CURVE_READINGS, ENTROPY_ROWS, EVIDENCE, SCALED_B1_EPOCHS, method_b_entropy_grid,
                       method_b_scaled_grid, method_b_scaling_curve_grid)
from .method_a import (CIFAR_PAPER_NORM, METHOD_A_CASES, METHOD_A_CIFAR_LRS, MNIST_SWEEPS, QUICK_A_CIFAR,
                       QUICK_A_MNIST, RESNET18_LAYER_CHOICES, method_a_case, method_a_cifar, method_a_cifar_grid,
                       method_a_mnist, method_a_mnist_grid, method_a_resnet18_grid, method_a_volume_grid,
                       mnist_claims_of)
from .method_b import (D_ROWS, EARLY_SEEDS, METHOD_B_INITS, METHOD_B_MODELS, METHOD_B_PRUNES, PAPER_B_GRIDS,
                       PC_ROWS, QUICK_B, QUICK_B_GRIDS, QUICK_TINY, QUICK_TINY_P, SCALING_READINGS, TINY_PRUNES,
                       method_b_ablation_grid, method_b_accuracy_grid, method_b_cifar, method_b_early_grid,
                       method_b_init, method_b_init_grid, method_b_partial_grid, method_b_reading_grid,
                       method_b_scaling_grid, method_b_tinyimagenet, method_b_tinyimagenet_grid, supermask)
