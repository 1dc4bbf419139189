"""The evidence profile: what the CPU can afford, tier by tier (see the book's claims page).

The paper's exact protocol where it is cheap (MNIST), its exact schedule stopped after epoch E for claims
about early training, and complete but shorter schedules ("scaled") for claims about final accuracy.
``tools/fill_results.py GRID --prefix E`` fills an exact-prefix row; ``benchmarks/bench_evidence.py``
projects and tallies their CPU-hours.
"""
from __future__ import annotations

from typing import Sequence

from .method_a import method_a_cifar_grid, method_a_mnist_grid, method_a_resnet18_grid, mnist_claims_of
from .method_b import (METHOD_B_MODELS, method_b_ablation_grid, method_b_cifar, method_b_early_grid,
                       method_b_init, method_b_scaling_grid)

#: B1 at the scaled tier: Conv2/4/6 at 30/50/70% on the full 50k training set, the thesis's solver with the
#: cosine schedule completed in this many epochs, scored on the full 10k test set (McNemar per cell).
SCALED_B1_EPOCHS = 10


def method_b_scaled_grid(profile: str = "scaled", epochs: int = SCALED_B1_EPOCHS,
                         prunes: Sequence[float] = (0.3, 0.5, 0.7)) -> list[tuple[dict, dict]]:
    """B1, scaled: every model at ``prunes``, Random and PatchesInit, seed 0, ``epochs`` epochs of a complete
    cosine schedule on the full training set (``profile`` is recorded as "scaled")."""
    out = []
    for model in METHOD_B_MODELS:
        for prune in prunes:
            proto = method_b_cifar("paper", "cifar10", model, prune)
            for init in ("Random", "PatchesInit"):
                cfg = method_b_init(proto.config(0), init)
                cfg["profile"] = "scaled"
                cfg["train"]["epochs"] = int(epochs)
                out.append(({"model": model, "prune": prune, "init": init, "seed": 0}, cfg))
    return out


#: B7 (Table 5.4) is about the clusters each init selects, so it needs the inits, not the training: the
#: two rows it compares (PatchesInit at 50k / 500 and SimpleInit, Conv6 at 50% on CIFAR-100) at the exact
#: protocol, trained one epoch (the 50k / 500 run is B4's seed 0).
ENTROPY_ROWS = ("50k / 500", "SimpleInit")


def method_b_entropy_grid(profile: str = "paper") -> list[tuple[dict, dict]]:
    """B7: the PC-ablation rows of :data:`ENTROPY_ROWS` at 50%."""
    return [(r, c) for r, c in method_b_ablation_grid(profile, "PC") if r["prune"] == 0.5 and r["row"] in ENTROPY_ROWS]


#: The scaling study's curve at the exact prefix: Conv6 with Random, the a-priori reading and our
#: variance-preserving extension, epochs 1-5 (Random and the a-priori reading are B2's seeds 0 and 1).
CURVE_READINGS = (None, "fan (a priori)", "variance-preserving (ours)")


def method_b_scaling_curve_grid(profile: str = "paper") -> list[tuple[dict, dict]]:
    """The rows of :func:`method_b_scaling_grid` whose epochs 1-5 the scaling chapter plots."""
    return [(r, c) for r, c in method_b_scaling_grid(profile) if r["model"] == "conv6" and r["reading"] in CURVE_READINGS]


def _mnist_claim(claim: str, inits: Sequence[str] | None = None):
    def grid():
        rows = [(r, c) for r, c in method_a_mnist_grid("paper") if claim in mnist_claims_of(r)]
        return [(r, c) for r, c in rows if inits is None or r["init"] in inits]
    return grid


def _fixup_prefix(lr: float, cases: Sequence[str | None]):
    def grid():
        return [(r, c) for r, c in method_a_cifar_grid("paper", ("cifar10",), (lr,), cases)]
    return grid


#: (chapter, tier, grid, epochs of an exact prefix or None), in the order they are worth filling.
EVIDENCE = (
    ("02 MNIST (A1)", "exact", _mnist_claim("A1", ("patch", "Kaiming U", "Kaiming N")), None),
    ("03 MNIST robustness (A3)", "exact", _mnist_claim("A3", ("patch", "Kaiming U")), None),
    ("03 MNIST robustness (A6)", "exact", _mnist_claim("A6", ("patch", "patch (conv1 + conv2, activations)")), None),
    ("03 MNIST robustness (A4)", "exact", _mnist_claim("A4", ("patch", "Kaiming U")), None),
    ("05 CIFAR-10 supermasks (B2, epoch 1)", "exact-prefix", lambda: method_b_early_grid("paper", "cifar10"), 1),
    ("05 scaling study (B2 readings)", "exact-prefix", lambda: method_b_scaling_grid("paper"), 1),
    ("06 CIFAR-100 supermasks (B4)", "exact-prefix", lambda: method_b_early_grid("paper", "cifar100"), 1),
    ("07 ablations (B7, the inits' cluster entropy)", "exact-prefix", method_b_entropy_grid, 1),
    ("05 CIFAR-10 supermasks (B2, epochs 1-5)", "exact-prefix", lambda: method_b_early_grid("paper", "cifar10"), 5),
    ("14 scaling study (epochs 1-5)", "exact-prefix", method_b_scaling_curve_grid, 5),
    ("10 CIFAR-10 Fixup (A5, epoch 10)", "exact-prefix", _fixup_prefix(1e-3, (None, "a")), 10),
    ("11 deeper layers (A7 part 3, epoch 5)", "exact-prefix", _fixup_prefix(0.1, (None, "c", "d")), 5),
    ("12 ResNet-18 (A10, epoch 5)", "exact-prefix", lambda: method_a_resnet18_grid("paper", (1e-3,)), 5),
    ("05 CIFAR-10 supermasks (B1)", "scaled", method_b_scaled_grid, None),
)