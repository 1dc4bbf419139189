"""Method A's protocols (Lehmann & Ebner): LeNet on MNIST, Fixup ResNet-20 and ResNet-18 on CIFAR,
and the chapter grids built from them (each a list of ``(row, config)``)."""
from __future__ import annotations

import copy
import dataclasses
from typing import Sequence

from .base import Overlay, Protocol, check_profile

# Method A on MNIST (Lehmann & Ebner §4.1): Caffe LeNet's solver.  Our reading of what the paper
# leaves open: batch 64 and Caffe's "inv" schedule (gamma 1e-4, power 0.75) from the Caffe LeNet
# solver, applied per iteration; patches in [0, 1] pixel units (see the walkthrough chapter).
_MNIST_PATCH = {"method": "A", "layers": ["conv1"], "seed": 0, "deep_mapping": "activations",
                "options": {"source": "grid", "patch_size": 14, "stride": 7, "min_pixels": 20,
                            "reducer": "umap", "n_components": 2, "pattern": "mean", "n_nearest": 10,
                            "pixel_space": "unit", "budget": None}}

_MNIST_BASE = {
    "experiment": "method-a-mnist",
    "dataset": "mnist", "train_subset": None,
    "model": "lenet", "num_classes": 10,
    "normalize": {"mean": [0.1307], "std": [0.3081]},
    "init": {"baseline": "kaiming_uniform", "patch": _MNIST_PATCH},
    "train": {"epochs": 20, "lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4, "schedule": "inv",
              "inv_gamma": 1e-4, "inv_power": 0.75, "batch_size": 64, "augment": False},
}
QUICK_A_MNIST = Overlay(train_subset=10_000, epochs=5, seeds=(0, 1, 2), random_subset=False)


def method_a_mnist(profile: str = "quick") -> Protocol:
    check_profile(profile)
    base = copy.deepcopy(_MNIST_BASE)
    paper_seeds = (0, 1, 2, 3, 4)
    if profile == "paper":
        return Protocol("method-a-mnist", profile, base, seeds=paper_seeds)
    q = QUICK_A_MNIST
    quick = q.apply(base)
    quick["init"]["patch"]["options"]["budget"] = 10_000
    return Protocol("method-a-mnist", profile, quick, seeds=q.seeds,
                    differences=(*q.differences(base, paper_seeds, 60_000, 10_000),
                                 "patch filters clustered from 10,000 of the ~84,000 kept patches of those images "
                                 "instead of all ~500,000 of the full training set"))


# Method A on CIFAR (Lehmann & Ebner §4.1-4.3): Fixup ResNet-20 with the Fixup reference's solver as the
# paper states it (lr 0.1, cosine, momentum 0.9, weight decay 5e-4, 200 epochs, batch 128, crop and flip),
# the paper's CIFAR-10 statistics, and 15x15x3 SIFT patches -> PCA -> k-means -> the nearest patch.
# Our readings of what it leaves open: PCA to 50 dimensions; patches in [0, 1] units, as on MNIST;
# the scalar biases and multipliers at lr/10, as in the Fixup reference (see the chapter).
METHOD_A_CIFAR_LRS = (0.1, 1e-3)
METHOD_A_CASES = ("a", "b", "c", "d")
CIFAR_PAPER_NORM = {"mean": [0.4914, 0.4822, 0.4465], "std": [0.2023, 0.1994, 0.2010]}

_CIFAR_PATCH_OPTIONS = {"source": "sift", "patch_size": 15, "stride": 7, "min_pixels": 0, "reducer": "pca",
                        "n_components": 50, "pattern": "nearest", "pixel_space": "unit", "budget": None}
# Deeper layers cluster activation windows (15/32 of the map, 9 per image): a budget bounds their memory
# (50,000 images x 9 windows x 16x15x15 floats would be 6.5 GB).
_CIFAR_DEEP_OPTIONS = {"budget": 20_000}
QUICK_A_CIFAR = Overlay(train_subset=5_000, test_subset=2_000, epochs=5, seeds=(0, 1))


def method_a_cifar(profile: str = "quick", dataset: str = "cifar10", lr: float = 0.1,
                   model: str = "fixup_resnet20") -> Protocol:
    """Method A on CIFAR: ``model`` (Fixup ResNet-20, or ResNet-18 with BN) at learning rate ``lr``.

    The base config is the random baseline: Fixup's own init for Fixup ResNet-20,
    PyTorch's default ("Kaiming U") for ResNet-18.  :func:`method_a_case` adds the patches.
    """
    check_profile(profile)
    if dataset not in ("cifar10", "cifar100"):
        raise ValueError(f"method A's CIFAR protocol covers cifar10 and cifar100, got {dataset!r}")
    if model not in ("fixup_resnet20", "resnet18"):
        raise ValueError(f"method A's CIFAR models are fixup_resnet20 and resnet18, got {model!r}")
    fixup = model == "fixup_resnet20"
    base = {
        "experiment": "method-a-cifar",
        "dataset": dataset, "train_subset": None,
        "model": model, "num_classes": 100 if dataset == "cifar100" else 10,
        # the paper states CIFAR-10's statistics and "the same training setup" for CIFAR-100
        "normalize": copy.deepcopy(CIFAR_PAPER_NORM),
        "init": {"baseline": "model" if fixup else "kaiming_uniform", "patch": None},
        "train": {"epochs": 200, "lr": float(lr), "momentum": 0.9, "weight_decay": 5e-4, "schedule": "cosine",
                  "scalar_lr_factor": 0.1 if fixup else 1.0, "batch_size": 128, "augment": True},
    }
    paper_seeds = (0, 1, 2, 3, 4)
    if profile == "paper":
        return Protocol("method-a-cifar", profile, base, seeds=paper_seeds)
    # Fig. 4's caption averages CIFAR-10 over 5 models and says nothing of CIFAR-100: one seed there
    q = dataclasses.replace(QUICK_A_CIFAR, seeds=(0,) if dataset == "cifar100" else (0, 1))
    return Protocol("method-a-cifar", profile, q.apply(base), seeds=q.seeds,
                    differences=(*q.differences(base, paper_seeds, 50_000, 10_000),
                                 "patch filters from the SIFT patches of those same images"))


def method_a_case(config: dict, case: str | None, deep_mapping: str = "activations") -> dict:
    """``config`` with method A's patches in the layers of ``case`` ("a".."d" for Fixup
    ResNet-20, see :func:`patchinit.models.fixup.fixup_case_layers`, or a list of layer
    names); ``None`` is the random baseline.  Deeper layers use ``deep_mapping``."""
    from patchinit.spec import variant

    out = variant(config)
    if case is None:
        out["init"]["patch"] = None
        return out
    if isinstance(case, str):
        from patchinit.models.fixup import fixup_case_layers

        layers = fixup_case_layers(case)
    else:
        layers = [str(name) for name in case]
    if not layers:
        raise ValueError("a method-A case needs at least one layer")
    patch = {"method": "A", "layers": layers, "seed": 0, "deep_mapping": deep_mapping,
             "options": dict(_CIFAR_PATCH_OPTIONS)}
    if len(layers) > 1:
        patch["deep_options"] = dict(_CIFAR_DEEP_OPTIONS)
    out["init"]["patch"] = patch
    return out


def method_a_cifar_grid(profile: str, datasets: Sequence[str] = ("cifar10", "cifar100"),
                        lrs: Sequence[float] = METHOD_A_CIFAR_LRS,
                        cases: Sequence[str | None] = (None, *METHOD_A_CASES),
                        deep_mapping: str = "activations") -> list[tuple[dict, dict]]:
    """Figs. 3 (right) and 4: Fixup and cases (a)-(d), per dataset, learning rate and seed.

    Row ``init`` is "Fixup" or "(a)".."(d)"; case (a) is Fig. 3's "patch init".
    """
    out = []
    for dataset in datasets:
        for lr in lrs:
            proto = method_a_cifar(profile, dataset, lr)
            for case in cases:
                for seed in proto.seeds:
                    row = {"dataset": dataset, "lr": lr, "init": "Fixup" if case is None else f"({case})",
                           "mapping": None if case in (None, "a") else deep_mapping, "seed": seed}
                    out.append((row, method_a_case(proto.config(seed), case, deep_mapping)))
    return out


def method_a_volume_grid(profile: str) -> list[tuple[dict, dict]]:
    """The other deeper-layer mapping, "volume" (image-patch filters resized along the channel axis),
    for cases (b)-(d) on CIFAR-10: at the suboptimal lr in the quick profile, at both in the paper's."""
    lrs = (1e-3,) if profile == "quick" else METHOD_A_CIFAR_LRS
    return method_a_cifar_grid(profile, ("cifar10",), lrs, ("b", "c", "d"), deep_mapping="volume")


# A10: ResNet-18 (BN) on CIFAR-10.  The layer choices we try: the 7x7 stem alone, the stem plus the last
# conv of the first stage, and the stem plus the last conv of every stage (the Fixup cases' pattern).
RESNET18_LAYER_CHOICES = {
    "stem": ["conv1"],
    "stem + layer1": ["conv1", "layer1.1.conv2"],
    "stem + every stage": ["conv1", "layer1.1.conv2", "layer2.1.conv2", "layer3.1.conv2", "layer4.1.conv2"],
}


def method_a_resnet18_grid(profile: str, lrs: Sequence[float] | None = None,
                           choices: Sequence[str] = tuple(RESNET18_LAYER_CHOICES)) -> list[tuple[dict, dict]]:
    """A10: ResNet-18 with BN, Kaiming U against method A in each layer choice, per lr and seed.

    ``lrs`` defaults to the suboptimal 1e-3 alone in the quick profile, 0.1 and 1e-3 in the paper's.
    """
    if lrs is None:
        lrs = (1e-3,) if profile == "quick" else METHOD_A_CIFAR_LRS
    out = []
    for lr in lrs:
        proto = method_a_cifar(profile, "cifar10", lr, model="resnet18")
        for choice in (None, *choices):
            if choice is not None and choice not in RESNET18_LAYER_CHOICES:
                raise ValueError(f"unknown ResNet-18 layer choice {choice!r}; choose from "
                                 f"{list(RESNET18_LAYER_CHOICES)}")
            for seed in proto.seeds:
                layers = None if choice is None else RESNET18_LAYER_CHOICES[choice]
                out.append(({"lr": lr, "init": "Kaiming U" if choice is None else choice, "seed": seed},
                            method_a_case(proto.config(seed), layers)))
    return out


# The hyper-parameter sweeps of the MNIST robustness chapter (§4.2: A3, A4).
MNIST_SWEEPS = {"train.lr": (0.1, 0.01, 1e-3, 1e-4, 1e-5),
                "train.momentum": (0.9, 0.8, 0.7, 0.6, 0.5),
                "train.weight_decay": (5e-5, 5e-4, 5e-3, 5e-2)}


def mnist_claims_of(row: dict) -> set[str]:
    """The claims a row of :func:`method_a_mnist_grid` is evidence for: A1 (lr 0.01, the three inits),
    A3 (the learning rates), A4 (momentum and weight decay), A6 (both conv layers from patches)."""
    if "train.lr" in row:
        return {"A3"}
    if "train.momentum" in row or "train.weight_decay" in row:
        return {"A4"}
    if row["init"].startswith("patch (conv1 + conv2"):
        return {"A6"}
    if row["init"] in ("patch", "Kaiming U", "Kaiming N"):
        return {"A1", "A3", "A4", "A6"}  # the lr 0.01 reference of every MNIST comparison
    return {"A1-units"}  # patches in normalised units: our reading's alternative, beside Fig. 3


def method_a_mnist_grid(profile: str) -> list[tuple[dict, dict]]:
    """Every run of the two MNIST chapters, once: patch, Kaiming U and N, patches in normalised
    units (Fig. 3 top left), each sweep of :data:`MNIST_SWEEPS` for patch and Kaiming U, and both
    conv layers from patches under each deeper-layer mapping.  Runs the chapters share appear once."""
    from patchinit.results import config_key

    proto = method_a_mnist(profile)
    inits = {"patch": {}, "Kaiming U": {"init.patch": None},
             "Kaiming N": {"init.patch": None, "init.baseline": "kaiming_normal"},
             "patch (normalised units)": {"init.patch.options.pixel_space": "normalized"}}
    specs = [({"init": name}, changes) for name, changes in inits.items()]
    for path, values in MNIST_SWEEPS.items():
        specs += [({"init": name, path: v}, {**inits[name], path: v}) for v in values for name in ("patch", "Kaiming U")]
    specs += [({"init": f"patch (conv1 + conv2, {m})"},
               {"init.patch.layers": ["conv1", "conv2"], "init.patch.deep_mapping": m}) for m in ("activations", "volume")]
    out, seen = [], set()
    for row, changes in specs:
        for seed in proto.seeds:
            cfg = proto.config(seed, **changes)
            if config_key(cfg) not in seen:
                seen.add(config_key(cfg))
                out.append(({**row, "seed": seed}, cfg))
    return out

