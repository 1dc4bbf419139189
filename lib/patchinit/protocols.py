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

    ``options`` change PatchesInit's options (``P``, ``C``, ``D``, ``simple``); they are an
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


def describe(p: Protocol) -> str:
    """One paragraph for the chapter: which profile, and how it differs from the paper."""
    if not p.differences:
        return f"**Profile: {p.profile}.** This is the paper's full protocol ({len(p.seeds)} seeds)."
    items = "; ".join(p.differences)
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
