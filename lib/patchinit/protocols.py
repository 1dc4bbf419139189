"""The experimental protocols, in both profiles.

``paper`` is the protocol the source documents describe; ``quick`` is a scaled-down
version that runs on a 2-core CPU in minutes.  Every difference between the two
is a field here, and :func:`describe` turns it into the sentence a chapter prints,
so no page can silently claim the full protocol.

A protocol is a base run config (see :mod:`patchinit.experiment`) plus the list
of seeds; chapters derive their variants with :func:`patchinit.experiment.variant`.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Sequence

PROFILES = ("quick", "paper")
# Every paper profile trains in float32, as the papers did, so that a CPU run can fill a paper cell.
# bfloat16 autocast (what makes the whole paper profile fit an H100 budget, #6) is a labelled variant:
# ``with_precision(config, "bf16")`` gives the config another key, so its records never stand in for fp32 ones.
PRECISIONS = ("fp32", "bf16")


def with_precision(config: dict, precision: str) -> dict:
    """``config`` trained at ``precision``: "fp32" (the paper profiles) or "bf16" autocast (a GPU variant)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    out = copy.deepcopy(config)
    out["train"].pop("precision", None)
    if precision != "fp32":
        out["train"]["precision"] = precision
    return out

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


@dataclass(frozen=True)
class Protocol:
    name: str
    profile: str
    base: dict
    seeds: tuple[int, ...]
    differences: tuple[str, ...] = field(default_factory=tuple)  # how it differs from the paper

    def config(self, seed: int, **changes) -> dict:
        from patchinit.experiment import variant

        return variant(dict(self.base, seed=int(seed), profile=self.profile), **changes)

    def configs(self, **changes) -> list[dict]:
        return [self.config(s, **changes) for s in self.seeds]


def method_a_mnist(profile: str = "quick") -> Protocol:
    _check(profile)
    base = copy.deepcopy(_MNIST_BASE)
    if profile == "paper":
        return Protocol("method-a-mnist", profile, base, seeds=(0, 1, 2, 3, 4))
    base["train_subset"] = 10_000
    base["train"]["epochs"] = 5
    base["init"]["patch"]["options"]["budget"] = 10_000
    return Protocol("method-a-mnist", profile, base, seeds=(0, 1, 2),
                    differences=("the first 10,000 of the 60,000 training images (the full 10,000-image test set)",
                                 "5 epochs instead of 20 (so about 780 SGD steps instead of 18,760)",
                                 "3 seeds instead of 5",
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
QUICK_A_CIFAR = {"train_subset": 5_000, "test_subset": 2_000, "epochs": 5}


def method_a_cifar(profile: str = "quick", dataset: str = "cifar10", lr: float = 0.1,
                   model: str = "fixup_resnet20") -> Protocol:
    """Method A on CIFAR: ``model`` (Fixup ResNet-20, or ResNet-18 with BN) at learning rate ``lr``.

    The base config is the random baseline: Fixup's own init for Fixup ResNet-20,
    PyTorch's default ("Kaiming U") for ResNet-18.  :func:`method_a_case` adds the patches.
    """
    _check(profile)
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
    if profile == "paper":
        return Protocol("method-a-cifar", profile, base, seeds=(0, 1, 2, 3, 4))
    q = QUICK_A_CIFAR
    base["train_subset"] = q["train_subset"]
    base["train_subset_seed"] = 0  # our CIFAR copies are stored class by class: draw the subset at random
    base["test_subset"] = q["test_subset"]
    base["train"]["epochs"] = q["epochs"]
    steps = -(-q["train_subset"] // base["train"]["batch_size"])
    # Fig. 4's caption averages CIFAR-10 over 5 models and says nothing of CIFAR-100: one seed there
    seeds = (0,) if dataset == "cifar100" else (0, 1)
    return Protocol("method-a-cifar", profile, base, seeds=seeds,
                    differences=(f"a seeded random {q['train_subset']:,} of the 50,000 training images, so an epoch "
                                 f"is {steps} SGD steps instead of 391",
                                 f"{q['epochs']} epochs instead of 200 ({q['epochs'] * steps} steps instead of 78,200), "
                                 f"with the cosine schedule compressed to those {q['epochs']} epochs",
                                 f"scored on a fixed random {q['test_subset']:,} of the 10,000 test images",
                                 f"{len(seeds)} seed{'s' if len(seeds) > 1 else ''} instead of 5",
                                 "patch filters from the SIFT patches of those same images"))


def method_a_case(config: dict, case: str | None, deep_mapping: str = "activations") -> dict:
    """``config`` with method A's patches in the layers of ``case`` ("a".."d" for Fixup
    ResNet-20, see :func:`patchinit.models.fixup.fixup_case_layers`, or a list of layer
    names); ``None`` is the random baseline.  Deeper layers use ``deep_mapping``."""
    from patchinit.experiment import variant

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


# Method B (Rencoret §5.2): edge-popup supermasks; SGD lr 0.1, cosine, momentum 0.9, weight decay 1e-4,
# batch 128, 100 epochs, crop and flip; "Random" = Xavier normal; PatchesInit with P = 50k, C = 500.
METHOD_B_PRUNES = (0.1, 0.3, 0.5, 0.7, 0.9)
METHOD_B_MODELS = ("conv2", "conv4", "conv6")

_METHOD_B_PATCH_OPTIONS = {"P": 50_000, "C": 500, "D": None, "simple": False, "scaling": "fan",
                           "blas_threads": 1}


# The quick profile of method B: one setting shared by every chapter, sized so that a
# Conv6 run takes a few CPU-minutes.
QUICK_B = {"train_subset": 5_000, "test_subset": 2_000, "epochs": 3}


# The inits a method-B chapter compares, by the name the thesis gives them: a baseline scheme of
# patchinit.init.baselines, plus (for the patch inits) the PatchesInit options that differ.
METHOD_B_INITS = {
    "Random": ("xavier_normal", None),
    "PatchesInit": ("xavier_normal", {}),
    "SimpleInit": ("xavier_normal", {"simple": True, "P": 10_000}),
    "Xavier normal": ("xavier_normal", None),
    "Xavier uniform": ("xavier_uniform", None),
    "Kaiming normal": ("kaiming_normal", None),
    # edge-popup's kaiming_uniform (ReLU gain, variance 2/fan_in), not PyTorch's default a = sqrt(5),
    # which is what method A's chapters call "Kaiming U"
    "Kaiming uniform": ("he_uniform", None),
}


def method_b_init(config: dict, init: str, **options) -> dict:
    """``config`` with the init the thesis calls ``init`` (a key of :data:`METHOD_B_INITS`).

    ``options`` change PatchesInit's options (``P``, ``C``, ``D``, ``simple``, ``layers``, or
    ``partial_blocks=N`` for Partial-PatchesInit up to the N-th ResNet stage); they are an
    error for the random baselines.  "Random" and "Xavier normal" are the same config, so
    they share one run in the results store.
    """
    from patchinit.experiment import variant

    if init not in METHOD_B_INITS:
        raise ValueError(f"unknown method-B init {init!r}; choose one of {list(METHOD_B_INITS)}")
    scheme, patch_options = METHOD_B_INITS[init]
    out = variant(config, **{"init.baseline": scheme})
    if patch_options is None:
        if options:
            raise ValueError(f"{init} is a random init and takes no PatchesInit options, got {sorted(options)}")
        out["init"]["patch"] = None
        return out
    patch = out["init"].get("patch") or {"method": "B", "options": dict(_METHOD_B_PATCH_OPTIONS)}
    blocks = options.pop("partial_blocks", None)
    if blocks is not None:  # Partial-PatchesInit: the stem and the first ``blocks`` stages only
        from patchinit.init.method_b import partial_options

        options = {**partial_options(blocks), **options}
    patch["options"] = {**patch["options"], **patch_options, **options}
    out["init"]["patch"] = patch
    return out


def method_b_cifar(profile: str = "quick", dataset: str = "cifar10", model: str = "conv6",
                   prune: float = 0.5) -> Protocol:
    """Edge-popup training of ``model`` at ``prune`` on CIFAR, initialised by PatchesInit.

    Use :func:`method_b_init` on its configs for the other inits.
    """
    _check(profile)
    if dataset not in ("cifar10", "cifar100"):
        raise ValueError(f"method B's CIFAR protocol covers cifar10 and cifar100, got {dataset!r}")
    base = {
        "experiment": "method-b-cifar",
        "dataset": dataset, "train_subset": None,
        "model": model, "num_classes": 100 if dataset == "cifar100" else 10,
        "normalize": "data",
        "init": {"baseline": "xavier_normal", "patch": {"method": "B", "options": dict(_METHOD_B_PATCH_OPTIONS)}},
        "supermask": {"prune": float(prune)},
        "train": {"epochs": 100, "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4, "schedule": "cosine",
                  "batch_size": 128, "augment": True},
    }
    seeds = (0, 1, 2) if dataset == "cifar100" else (0,)
    if profile == "paper":
        return Protocol("method-b-cifar", profile, base, seeds=seeds)
    base["train_subset"] = QUICK_B["train_subset"]
    base["train_subset_seed"] = 0  # our CIFAR copies are stored class by class: draw the subset at random
    base["test_subset"] = QUICK_B["test_subset"]
    base["train"]["epochs"] = QUICK_B["epochs"]
    steps = -(-QUICK_B["train_subset"] // base["train"]["batch_size"])
    return Protocol("method-b-cifar", profile, base, seeds=(0,),
                    differences=(f"a seeded random {QUICK_B['train_subset']:,} of the 50,000 training images, so an "
                                 f"epoch is {steps} SGD steps instead of 391",
                                 f"{QUICK_B['epochs']} epochs instead of 100, with the cosine schedule compressed to "
                                 f"those {QUICK_B['epochs']} epochs",
                                 f"scored on a fixed random {QUICK_B['test_subset']:,} of the 10,000 test images "
                                 f"(a standard error of about 1 point on an accuracy near 50%)",
                                 "1 seed" + (" instead of 3" if dataset == "cifar100" else ", as in the thesis"),
                                 "PatchesInit keeps the thesis's P = 50,000 and C = 500, drawn from those "
                                 f"{QUICK_B['train_subset']:,} images"))


# Method B at depth (Rencoret §5.5, Appendix 3): ResNet-18 (Table 5.1) supermasks on TinyImageNet-200 with
# edge-popup's ImageNet solver (lr 0.256, momentum 0.875, weight decay 1e-5, batch 256, cosine, 100 epochs) and
# PatchesInit at P = 100k, C = 1,000.  Our TinyImageNet is a 20% train subset (100 images per class).
TINY_PRUNES = (0.1, 0.3, 0.5, 0.7)
QUICK_TINY = {"train_subset": 4_000, "test_subset": 2_000, "epochs": 3, "P": 20_000}


def method_b_tinyimagenet(profile: str = "quick", prune: float = 0.5) -> Protocol:
    """Edge-popup training of the thesis's ResNet-18 on TinyImageNet-200 at ``prune``, with PatchesInit.

    Use :func:`method_b_init` for Random, and ``partial_blocks`` there for Partial-PatchesInit.
    """
    _check(profile)
    base = {
        "experiment": "method-b-tinyimagenet",
        "dataset": "tinyimagenet", "train_subset": None,
        "model": "resnet18_thesis", "num_classes": 200,
        "normalize": "data",
        "init": {"baseline": "xavier_normal",
                 "patch": {"method": "B", "options": dict(_METHOD_B_PATCH_OPTIONS, P=100_000, C=1_000)}},
        "supermask": {"prune": float(prune)},
        "train": {"epochs": 100, "lr": 0.256, "momentum": 0.875, "weight_decay": 1e-5, "schedule": "cosine",
                  "batch_size": 256, "augment": True},
    }
    if profile == "paper":
        return Protocol("method-b-tinyimagenet", profile, base, seeds=(0,),
                        differences=("TinyImageNet's 20% train subset here (100 images per class, 20,000 images) "
                                     "instead of 100,000, so an epoch is 79 SGD steps instead of 391; the full "
                                     "10,000-image validation set is the test set, as in the thesis",))
    q = QUICK_TINY
    base["train_subset"] = q["train_subset"]
    base["train_subset_seed"] = 0  # the subset is stored class by class: draw at random
    base["test_subset"] = q["test_subset"]
    base["train"]["epochs"] = q["epochs"]
    base["init"]["patch"]["options"]["P"] = q["P"]
    steps = -(-q["train_subset"] // base["train"]["batch_size"])
    return Protocol("method-b-tinyimagenet", profile, base, seeds=(0,),
                    differences=(f"a seeded random {q['train_subset']:,} of our 20,000 training images (themselves a "
                                 f"20% subset of TinyImageNet's 100,000), so an epoch is {steps} SGD steps instead "
                                 f"of 391",
                                 f"{q['epochs']} epochs instead of 100, the cosine schedule compressed to them",
                                 f"scored on a fixed random {q['test_subset']:,} of the 10,000 validation images",
                                 f"PatchesInit with P = {q['P']:,} patches instead of 100,000 (C = 1,000 as in the "
                                 f"thesis)"))


# ------------------------------------------------------------------ method B chapter grids
# Each grid is a list of (row, config): ``row`` names the cell of the thesis's table or figure
# (model, prune, init, ...), ``config`` is the run.  A chapter and a batch job that fills the
# results store ahead of it call the same function, so they cannot disagree on a run.

QUICK_B_GRIDS = {
    # CIFAR-10 is the flagship table (Tables 8.1-8.3): every prune rate even in the quick profile.
    "cifar10": {"models": METHOD_B_MODELS, "prunes": METHOD_B_PRUNES},
    "cifar100": {"models": METHOD_B_MODELS, "prunes": (0.1, 0.5, 0.9)},
    "inits": {"models": ("conv4",), "prunes": (0.1, 0.5, 0.9)},
    "ablation": {"prunes": (0.5,), "max_P": 100_000},
}
PAPER_B_GRIDS = {
    "cifar10": {"models": METHOD_B_MODELS, "prunes": METHOD_B_PRUNES},
    "cifar100": {"models": METHOD_B_MODELS, "prunes": METHOD_B_PRUNES},
    "inits": {"models": METHOD_B_MODELS, "prunes": METHOD_B_PRUNES},
    "ablation": {"prunes": (0.3, 0.5, 0.7), "max_P": None},
}

# Tables 5.3, 8.10, 8.11: (label, P, C); SimpleInit's C is the number of filters.
PC_ROWS = (("SimpleInit", 10_000, None), ("50k / 500", 50_000, 500), ("100k / 1000", 100_000, 1_000),
           ("200k / 2000", 200_000, 2_000), ("500k / 5000", 500_000, 5_000), ("1M / 10000", 1_000_000, 10_000))
# Tables 5.5, 8.12, 8.13: "xC-yD" on Conv6 = the first x layers take common (high-entropy) clusters.
D_ROWS = tuple((f"{x}C-{6 - x}D", x + 1) for x in (6, 5, 4, 3, 2, 1, 0))


def _grid_spec(profile: str, name: str) -> dict:
    _check(profile)
    return (QUICK_B_GRIDS if profile == "quick" else PAPER_B_GRIDS)[name]


def _model_prune_grid(profile: str, spec: dict, dataset: str, inits: Sequence[str]) -> list[tuple[dict, dict]]:
    """Every model x prune rate of ``spec`` x init x seed on ``dataset``."""
    out = []
    for model in spec["models"]:
        for prune in spec["prunes"]:
            proto = method_b_cifar(profile, dataset, model, prune)
            for init in inits:
                for seed in proto.seeds:
                    out.append(({"model": model, "prune": prune, "init": init, "seed": seed},
                                method_b_init(proto.config(seed), init)))
    return out


def method_b_accuracy_grid(profile: str, dataset: str,
                           inits: Sequence[str] = ("Random", "PatchesInit")) -> list[tuple[dict, dict]]:
    """Figs. 5.2/5.4 and Tables 8.1-8.9: every model x prune rate x init x seed."""
    return _model_prune_grid(profile, _grid_spec(profile, dataset), dataset, inits)


def method_b_reading_grid(profile: str, models: Sequence[str] = ("conv2", "conv6"),
                          prune: float = 0.5) -> list[tuple[dict, dict]]:
    """Eq. 4.2's n read three ways on CIFAR-10: Random, and PatchesInit with n = fan
    (C*k*k, the default), neurons (C*H*W) and channels (C), for each model."""
    out = []
    for model in models:
        proto = method_b_cifar(profile, "cifar10", model, prune)
        out += [({"model": model, "prune": prune, "init": "Random", "scaling": None, "seed": s},
                 method_b_init(proto.config(s), "Random")) for s in proto.seeds]
        for scaling in ("fan", "neurons", "channels"):
            out += [({"model": model, "prune": prune, "init": "PatchesInit", "scaling": scaling, "seed": s},
                     method_b_init(proto.config(s), "PatchesInit", scaling=scaling)) for s in proto.seeds]
    return out


# B2 and B4 (Figs. 5.3 and 5.5) are about the first epochs of Conv6 at 50%: the evidence grid trains the
# paper's exact 100-epoch schedule only up to epoch E (``tools/fill_results.py --prefix E``), with 3 seeds.
EARLY_SEEDS = (0, 1, 2)


def method_b_early_grid(profile: str, dataset: str = "cifar10", seeds: Sequence[int] = EARLY_SEEDS,
                        inits: Sequence[str] = ("Random", "PatchesInit")) -> list[tuple[dict, dict]]:
    """B2 (``dataset="cifar10"``) and B4 (``"cifar100"``): Conv6 at 50%, each init and seed."""
    proto = method_b_cifar(profile, dataset, "conv6", 0.5)
    return [({"model": "conv6", "prune": 0.5, "init": init, "seed": s}, method_b_init(proto.config(s), init))
            for init in inits for s in seeds]


#: Eq. 4.2's readings, and our variance-preserving extension (labelled as ours), for the scaling study.
SCALING_READINGS = {"fan (a priori)": {"scaling": "fan"}, "neurons": {"scaling": "neurons"},
                    "channels": {"scaling": "channels"},
                    "variance-preserving (ours)": {"scaling": "fan", "match_random_std": True}}


def method_b_scaling_grid(profile: str = "paper", seeds: Sequence[int] = (0, 1)) -> list[tuple[dict, dict]]:
    """The method-B scaling study at the exact protocol's first epochs (``--prefix``): Conv6 at 50% on
    CIFAR-10 with Random and every reading of :data:`SCALING_READINGS`, then Conv2 and Conv4 with
    Random and the a-priori reading, to see whether depth is what breaks it.  Random and the a-priori
    reading are the same runs as B2's."""
    out = []
    for model in ("conv6", "conv2", "conv4"):
        proto = method_b_cifar(profile, "cifar10", model, 0.5)
        readings = SCALING_READINGS if model == "conv6" else {"fan (a priori)": {"scaling": "fan"}}
        for s in seeds:
            out.append(({"model": model, "prune": 0.5, "init": "Random", "reading": None, "seed": s},
                        method_b_init(proto.config(s), "Random")))
            for name, options in readings.items():
                out.append(({"model": model, "prune": 0.5, "init": "PatchesInit", "reading": name, "seed": s},
                            method_b_init(proto.config(s), "PatchesInit", **options)))
    return out


def method_b_init_grid(profile: str) -> list[tuple[dict, dict]]:
    """Fig. 5.6: PatchesInit against Xavier and Kaiming, normal and uniform, on CIFAR-100."""
    inits = ("PatchesInit", "Xavier normal", "Xavier uniform", "Kaiming normal", "Kaiming uniform")
    return _model_prune_grid(profile, _grid_spec(profile, "inits"), "cifar100", inits)


def method_b_ablation_grid(profile: str, kind: str) -> list[tuple[dict, dict]]:
    """Conv6 on CIFAR-100, seed 0: ``kind="PC"`` (Tables 5.3, 8.10, 8.11) or ``"D"`` (5.5, 8.12, 8.13).

    The quick profile leaves out the P/C rows that need more images than its training
    subset holds (P at 50 patches per image).
    """
    if kind not in ("PC", "D"):
        raise ValueError(f"kind must be 'PC' or 'D', got {kind!r}")
    spec = _grid_spec(profile, "ablation")
    out = []
    for prune in spec["prunes"]:
        proto = method_b_cifar(profile, "cifar100", "conv6", prune)
        base = proto.config(0)
        if kind == "PC":
            for label, P, C in PC_ROWS:
                if spec["max_P"] is not None and P > spec["max_P"]:
                    continue
                cfg = (method_b_init(base, "SimpleInit", P=P) if C is None
                       else method_b_init(base, "PatchesInit", P=P, C=C))
                out.append(({"prune": prune, "row": label, "P": P, "C": C}, cfg))
        else:
            for label, D in D_ROWS:
                # D = 6 is the default (the last conv): leave it unset so the run is shared with the grids
                d = None if D == 6 else D
                out.append(({"prune": prune, "row": label, "D": D}, method_b_init(base, "PatchesInit", D=d)))
    return out


def method_b_tinyimagenet_grid(profile: str) -> list[tuple[dict, dict]]:
    """Table 5.2: Random, PatchesInit and Partial-PatchesInit (first block) at 10-70%."""
    out = []
    for prune in TINY_PRUNES:
        proto = method_b_tinyimagenet(profile, prune)
        for seed in proto.seeds:
            cfg = proto.config(seed)
            out += [({"prune": prune, "init": "Random", "seed": seed}, method_b_init(cfg, "Random")),
                    ({"prune": prune, "init": "PatchesInit", "seed": seed}, method_b_init(cfg, "PatchesInit")),
                    ({"prune": prune, "init": "Partial-PatchesInit", "seed": seed},
                     method_b_init(cfg, "PatchesInit", partial_blocks=1))]
    return out


def method_b_partial_grid(profile: str) -> list[tuple[dict, dict]]:
    """Appendix 3: Partial-PatchesInit up to blocks 1, 2 and 3 (and 4 = full PatchesInit without the
    shortcut convs), beside Random; at 50% in the quick profile, at every prune rate in the paper's."""
    prunes = (0.5,) if profile == "quick" else TINY_PRUNES
    out = []
    for prune in prunes:
        proto = method_b_tinyimagenet(profile, prune)
        for seed in proto.seeds:
            cfg = proto.config(seed)
            out.append(({"prune": prune, "blocks": 0, "init": "Random", "seed": seed}, method_b_init(cfg, "Random")))
            out += [({"prune": prune, "blocks": b, "init": f"Partial (up to block {b})", "seed": seed},
                     method_b_init(cfg, "PatchesInit", partial_blocks=b)) for b in (1, 2, 3)]
    return out


def describe(p: Protocol) -> str:
    """One paragraph for the chapter: which profile, and how it differs from the paper."""
    items = "; ".join(p.differences)
    seeds = f"{len(p.seeds)} seed{'s' if len(p.seeds) != 1 else ''}"
    if p.profile == "paper":
        precision = (" Training runs under bfloat16 autocast (weights, optimiser state and loss in float32), a "
                     "variant for GPU sessions; the papers trained in float32." if p.base["train"].get("precision") == "bf16"
                     else "")
        if not p.differences:
            return f"**Profile: paper.** This is the paper's full protocol ({seeds}).{precision}"
        return f"**Profile: paper.** This is the paper's protocol ({seeds}) except: {items}.{precision}"
    return (f"**Profile: {p.profile}.** This is a scaled-down protocol that runs on a CPU in minutes: {items}. "
            "Numbers from it are not the paper's numbers; the verdicts below are about the direction and rough "
            "size of each effect. Rerun this chapter with `profile=\"paper\"` for the full protocol.")


def _check(profile: str) -> None:
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")


def paper_command(notebook: str, device: str = "cuda") -> str:
    """The command that runs ``notebooks/<notebook>.md`` in the paper profile and trains what is missing."""
    nb = f"notebooks/{notebook}"
    return (f"make paper NB={nb}.md DEVICE={device}\n  which runs: jupytext --to ipynb --output {nb}.paper.ipynb "
            f"{nb}.md && cd notebooks && papermill {notebook}.paper.ipynb {notebook}.paper.ipynb "
            f"-p profile paper -p allow_training True -p device {device}")


# ------------------------------------------------------------------ the evidence profile
# What the CPU can afford, tier by tier (see the book's claims page): the paper's exact protocol where it is
# cheap (MNIST), its exact schedule stopped after epoch E for claims about early training, and complete but
# shorter schedules ("scaled") for claims about final accuracy.  ``tools/fill_results.py GRID --prefix E`` fills
# an exact-prefix row; ``benchmarks/bench_evidence.py`` projects and tallies their CPU-hours.

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
    ("05 CIFAR-10 supermasks (B2, epochs 1-5)", "exact-prefix", lambda: method_b_early_grid("paper", "cifar10"), 5),
    ("10 CIFAR-10 Fixup (A5, epoch 10)", "exact-prefix", _fixup_prefix(1e-3, (None, "a")), 10),
    ("11 deeper layers (A7 part 3, epoch 5)", "exact-prefix", _fixup_prefix(0.1, (None, "c", "d")), 5),
    ("12 ResNet-18 (A10, epoch 5)", "exact-prefix", lambda: method_a_resnet18_grid("paper", (1e-3,)), 5),
    ("05 CIFAR-10 supermasks (B1)", "scaled", method_b_scaled_grid, None),
)
