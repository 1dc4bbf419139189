"""Method B's protocols (Rencoret, PatchesInit): edge-popup supermasks on Conv2/4/6 (CIFAR) and the
thesis's ResNet-18 (TinyImageNet), the inits it compares, and the chapter grids built from them."""
from __future__ import annotations

from typing import Sequence

from patchinit.spec import SupermaskSpec

from .base import Overlay, Protocol, check_profile


def supermask(prune: float) -> dict:
    """The supermask section of a run at ``prune``, checked now (:class:`~patchinit.spec.SupermaskSpec`):
    a rate of 1.5 fails when the grid is built, not when its run starts."""
    return {"prune": float(SupermaskSpec(prune=prune).prune)}

# Method B (Rencoret §5.2): edge-popup supermasks; SGD lr 0.1, cosine, momentum 0.9, weight decay 1e-4,
# batch 128, 100 epochs, crop and flip; "Random" = Xavier normal; PatchesInit with P = 50k, C = 500.
METHOD_B_PRUNES = (0.1, 0.3, 0.5, 0.7, 0.9)
METHOD_B_MODELS = ("conv2", "conv4", "conv6")

_METHOD_B_PATCH_OPTIONS = {"P": 50_000, "C": 500, "D": None, "simple": False, "scaling": "fan",
                           "blas_threads": 1}


# The quick profile of method B: one setting shared by every chapter, sized so that a
# Conv6 run takes a few CPU-minutes.
QUICK_B = Overlay(train_subset=5_000, test_subset=2_000, epochs=3, seeds=(0,))


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
    from patchinit.spec import variant

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
    check_profile(profile)
    if dataset not in ("cifar10", "cifar100"):
        raise ValueError(f"method B's CIFAR protocol covers cifar10 and cifar100, got {dataset!r}")
    base = {
        "experiment": "method-b-cifar",
        "dataset": dataset, "train_subset": None,
        "model": model, "num_classes": 100 if dataset == "cifar100" else 10,
        "normalize": "data",
        "init": {"baseline": "xavier_normal", "patch": {"method": "B", "options": dict(_METHOD_B_PATCH_OPTIONS)}},
        "supermask": supermask(prune),
        "train": {"epochs": 100, "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4, "schedule": "cosine",
                  "batch_size": 128, "augment": True},
    }
    seeds = (0, 1, 2) if dataset == "cifar100" else (0,)
    if profile == "paper":
        return Protocol("method-b-cifar", profile, base, seeds=seeds)
    q = QUICK_B
    return Protocol("method-b-cifar", profile, q.apply(base), seeds=q.seeds,
                    differences=(*q.differences(base, seeds, 50_000, 10_000),
                                 "PatchesInit keeps the thesis's P = 50,000 and C = 500, drawn from those "
                                 f"{q.train_subset:,} images"))


# Method B at depth (Rencoret §5.5, Appendix 3): ResNet-18 (Table 5.1) supermasks on TinyImageNet-200 with
# edge-popup's ImageNet solver (lr 0.256, momentum 0.875, weight decay 1e-5, batch 256, cosine, 100 epochs) and
# PatchesInit at P = 100k, C = 1,000.  Our TinyImageNet is a 20% train subset (100 images per class).
TINY_PRUNES = (0.1, 0.3, 0.5, 0.7)
QUICK_TINY = Overlay(train_subset=4_000, test_subset=2_000, epochs=3, seeds=(0,))
QUICK_TINY_P = 20_000


def method_b_tinyimagenet(profile: str = "quick", prune: float = 0.5) -> Protocol:
    """Edge-popup training of the thesis's ResNet-18 on TinyImageNet-200 at ``prune``, with PatchesInit.

    Use :func:`method_b_init` for Random, and ``partial_blocks`` there for Partial-PatchesInit.
    """
    check_profile(profile)
    base = {
        "experiment": "method-b-tinyimagenet",
        "dataset": "tinyimagenet", "train_subset": None,
        "model": "resnet18_thesis", "num_classes": 200,
        "normalize": "data",
        "init": {"baseline": "xavier_normal",
                 "patch": {"method": "B", "options": dict(_METHOD_B_PATCH_OPTIONS, P=100_000, C=1_000)}},
        "supermask": supermask(prune),
        "train": {"epochs": 100, "lr": 0.256, "momentum": 0.875, "weight_decay": 1e-5, "schedule": "cosine",
                  "batch_size": 256, "augment": True},
    }
    if profile == "paper":
        return Protocol("method-b-tinyimagenet", profile, base, seeds=(0,),
                        differences=("TinyImageNet's 20% train subset here (100 images per class, 20,000 images) "
                                     "instead of 100,000, so an epoch is 79 SGD steps instead of 391; the full "
                                     "10,000-image validation set is the test set, as in the thesis",))
    q = QUICK_TINY
    quick = q.apply(base)
    quick["init"]["patch"]["options"]["P"] = QUICK_TINY_P
    return Protocol("method-b-tinyimagenet", profile, quick, seeds=q.seeds,
                    differences=(*q.differences(base, (0,), 100_000, 10_000, test_images="validation images",
                                                train_images="our 20,000 training images (themselves a 20% subset "
                                                             "of TinyImageNet's 100,000)"),
                                 f"PatchesInit with P = {QUICK_TINY_P:,} patches instead of 100,000 (C = 1,000 as "
                                 f"in the thesis)"))


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
    check_profile(profile)
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

