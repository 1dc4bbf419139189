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
def method_b_cifar(profile: str = "quick", dataset: str = "cifar10", model: str = "conv6",
                   prune: float = 0.5) -> Protocol:
    _check(profile)
    base = {
        "experiment": "method-b-cifar",
        "dataset": dataset, "train_subset": None,
        "model": model, "num_classes": 100 if dataset == "cifar100" else 10,
        "normalize": "data",
        "init": {"baseline": "xavier_normal",
                 "patch": {"method": "B", "options": {"P": 50_000, "C": 500, "D": None, "simple": False,
                                                      "blas_threads": 1}}},
        "supermask": {"prune": float(prune)},
        "train": {"epochs": 100, "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4, "schedule": "cosine",
                  "batch_size": 128, "augment": True},
    }
    seeds = (0, 1, 2) if dataset == "cifar100" else (0,)
    if profile == "paper":
        return Protocol("method-b-cifar", profile, base, seeds=seeds)
    base["train_subset"] = 5_000
    base["train_subset_seed"] = 0  # our CIFAR copies are stored class by class: draw the subset at random
    base["train"]["epochs"] = 3
    return Protocol("method-b-cifar", profile, base, seeds=(0, 1, 2),
                    differences=("a seeded random 5,000 of the 50,000 training images (the full 10,000-image test set), "
                                 "so an epoch is 40 SGD steps instead of 391",
                                 "3 epochs instead of 100, with the cosine schedule compressed to those 3 epochs",
                                 "3 seeds" + (" instead of 1" if dataset != "cifar100" else ""),
                                 "PatchesInit keeps the thesis's P = 50,000 and C = 500, drawn from those 5,000 images"))


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
