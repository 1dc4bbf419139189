"""Which runs each claim rests on, tier by tier, and the frames its rule reads.

For every claim, :data:`SOURCES` lists the tiers it can be judged at, strongest first, each with
the chapter grid (``(row, config)`` pairs from :mod:`patchinit.protocols`) and the epochs a record
must hold (``None``: the whole schedule; ``E``: an exact prefix).  :func:`judge` picks the strongest
tier whose runs are all in the store, builds the frame and calls the rule.  Nothing trains here.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

from patchinit import protocols as P
from patchinit.claims import method_a as A
from patchinit.claims import method_b as B
from patchinit.claims.evidence import runs_frame
from patchinit.claims.verdict import Evidence, Verdict


@dataclass(frozen=True)
class Source:
    tier: str                         # the tier its complete runs give
    profile: str                      # the protocols profile of the grid
    grid: Callable[[str], list]       # profile -> [(row, config)]
    min_epochs: int | None = None     # an exact prefix needs this many epochs
    min_seeds: int | None = None      # while the grid is incomplete, its first k >= min_seeds seeds may serve


def _mnist_rows(claim: str):
    def grid(profile):
        rows = []
        for row, cfg in P.method_a_mnist_grid(profile):
            if claim not in P.mnist_claims_of(row):
                continue
            row = dict(row, lr=row.get("train.lr", cfg["train"]["lr"]))
            if "train.momentum" in row:
                row["setting"] = f"momentum {row['train.momentum']:g}"
            elif "train.weight_decay" in row:
                row["setting"] = f"weight decay {row['train.weight_decay']:g}"
            rows.append((row, cfg))
        return rows
    return grid


def _a1(profile):
    return [(r, c) for r, c in _mnist_rows("A1")(profile) if "setting" not in r and r["lr"] == 0.01
            and r["init"] in ("patch", "Kaiming U", "Kaiming N")]


def _a3(profile):
    return [(r, c) for r, c in _mnist_rows("A3")(profile) if r["init"] in ("patch", "Kaiming U")]


def _a4(profile):
    return [(r, c) for r, c in _mnist_rows("A4")(profile) if "setting" in r]


def _a6(profile):
    return [(r, c) for r, c in _mnist_rows("A6")(profile)
            if r["init"] in ("patch", "patch (conv1 + conv2, activations)") and "setting" not in r and r["lr"] == 0.01]


def _early(dataset):
    def grid(profile):
        if profile == "paper":
            return P.method_b_early_grid(profile, dataset)
        return [(r, c) for r, c in P.method_b_accuracy_grid(profile, dataset) if r["model"] == "conv6" and r["prune"] == 0.5]
    return grid


def _tiers(grid, prefix: int | None = None, min_seeds: int | None = None) -> tuple[Source, ...]:
    out = [Source("exact", "paper", grid, min_seeds=min_seeds)]
    if prefix:
        out.append(Source("exact-prefix", "paper", grid, prefix))
    out.append(Source("quick", "quick", grid))
    return tuple(out)


SOURCES: dict[str, tuple[Source, ...]] = {
    "A1": _tiers(_a1), "A3": _tiers(_a3), "A4": _tiers(_a4, min_seeds=3), "A6": _tiers(_a6),
    "A2": _tiers(P.method_a_cifar_grid), "A5": _tiers(P.method_a_cifar_grid), "A7": _tiers(P.method_a_cifar_grid),
    "A8": _tiers(P.method_a_cifar_grid), "A9": _tiers(P.method_a_cifar_grid), "A10": _tiers(P.method_a_resnet18_grid),
    "B1": _tiers(lambda p: P.method_b_accuracy_grid(p, "cifar10")),
    "B2": _tiers(_early("cifar10"), prefix=1), "B3": _tiers(lambda p: P.method_b_accuracy_grid(p, "cifar100")),
    "B4": _tiers(_early("cifar100"), prefix=1), "B5": _tiers(P.method_b_tinyimagenet_grid),
    "B6": _tiers(lambda p: P.method_b_ablation_grid(p, "PC")), "B7": (Source("exact-prefix", "paper", P.method_b_entropy_grid, 1),  # the inits only: any epochs serve
                                                               Source("quick", "quick", P.method_b_entropy_grid)),
    "B8": _tiers(lambda p: P.method_b_ablation_grid(p, "D")), "B9": _tiers(P.method_b_init_grid),
    "B10": _tiers(P.method_b_partial_grid),
}


def _with_dataset(frame, grid):
    if "dataset" not in frame:
        frame["dataset"] = [c["dataset"] for _, c in grid]
    return frame


def records_for(store, grid, min_epochs=None) -> list | None:
    """The store's records of every config in ``grid`` (identified by the local data copy), or None
    if any is missing."""
    from patchinit.experiment import identify

    out = []
    for _, cfg in grid:
        rec = store.get(identify(cfg), min_epochs)
        if rec is None:
            return None
        out.append(rec)
    return out


def seed_prefix(store, grid, source: Source):
    """``(grid, records)`` of the first k seeds of ``grid`` (k >= ``source.min_seeds``, as many as are
    stored for every row), else ``(grid, None)``: a tier that may rest on fewer seeds than its protocol
    (the issue's "at least 3") uses seeds 0..k-1 and never a chosen subset."""
    seeds = sorted({row["seed"] for row, _ in grid})
    for k in range(len(seeds) - 1, (source.min_seeds or len(seeds)) - 1, -1):
        sub = [(r, c) for r, c in grid if r["seed"] in seeds[:k]]
        records = records_for(store, sub, source.min_epochs)
        if records is not None:
            return sub, records
    return grid, None


def frame_for(store, claim: str):
    """``(source, frame)`` of the strongest tier of ``claim`` whose runs are all stored, else ``(None, None)``.
    A frame on fewer seeds than its protocol's (:func:`seed_prefix`) says so in ``frame.attrs["seeds"]``:
    ``(k, n)``, the first k of n seeds."""
    for source in SOURCES[claim]:
        grid = source.grid(source.profile)
        if not grid:
            continue
        records = records_for(store, grid, source.min_epochs)
        seeds_of = None
        if records is None and source.min_seeds:
            seeds_of = len({row["seed"] for row, _ in grid})
            grid, records = seed_prefix(store, grid, source)
        if records is not None:
            frame = runs_frame(grid, records)
            if seeds_of is not None:
                frame.attrs["seeds"] = (len({row["seed"] for row, _ in grid}), seeds_of)
            return source, frame
    return None, None


def pc_timing(frame):
    """Init time of each PC-ablation run (the sum of its layers' stages), for B6's timing part."""
    import pandas as pd

    rows = []
    for _, r in frame.iterrows():
        patch = (r["init_record"] or {}).get("patch") or {}
        seconds = sum(float(layer.get("time_total", 0.0)) for layer in patch.values())
        rows.append({"init": "SimpleInit" if r["C"] is None or r["C"] != r["C"] else "PatchesInit", "P": r["P"],
                     "prune": r["prune"], "seconds": seconds})
    t = pd.DataFrame(rows)
    return t.groupby(["init", "P"], as_index=False)["seconds"].mean()


def entropy_of(frame, prune: float = 0.5):
    """Table 5.4 from the PC-ablation runs at ``prune``: mean entropy of the selected clusters per layer,
    for PatchesInit at 50k/500 and for SimpleInit."""
    import pandas as pd

    rows = []
    for _, r in frame[frame["prune"] == prune].iterrows():
        simple = r["C"] is None or r["C"] != r["C"]
        if not simple and r["P"] != 50_000:
            continue
        patch = (r["init_record"] or {}).get("patch") or {}
        for i, layer in enumerate(patch.values(), 1):
            if layer.get("mean_entropy_selected") is not None:
                rows.append({"init": "SimpleInit" if simple else "PatchesInit", "layer": i,
                             "mean_entropy_bits": float(layer["mean_entropy_selected"])})
    return pd.DataFrame(rows, columns=["init", "layer", "mean_entropy_bits"])


def judge(store, claim: str) -> Verdict:
    """The verdict of ``claim`` on the strongest tier complete in ``store``."""
    if claim == "A11":
        return A.a11()
    source, frame = frame_for(store, claim)
    if frame is None:
        return Verdict(claim, "inconclusive", "", "no complete set of runs in the store", Evidence(None))
    v = apply(claim, frame, store, epoch=source.min_epochs)
    if "seeds" in frame.attrs:  # the tier's first k of n seeds: the evidence says so wherever it is shown
        v = dataclasses.replace(v, evidence=dataclasses.replace(v.evidence, seeds_of=frame.attrs["seeds"][1]))
    return v


def apply(claim: str, frame, store=None, epoch: int | None = None) -> Verdict:
    """``claim``'s rule on ``frame``; A4 and A5 compare with A3's gap (from ``store``), B6 reads the
    init times and B7 the entropies of the PC-ablation runs in ``frame``."""
    if claim == "A11":
        return A.a11()
    f3 = frame_for(store, "A3")[1] if store is not None and claim in ("A4", "A5") else None
    if claim == "A4":
        return A.a4(frame, A.mean_low_lr_gap(f3) if f3 is not None else None)
    if claim == "A5":
        gap3 = None
        if f3 is not None and len(f3[f3["lr"] == 1e-3]):
            gap3 = A.gap(f3[(f3["lr"] == 1e-3) & (f3["init"] == "Kaiming U")],
                         f3[(f3["lr"] == 1e-3) & (f3["init"] == "patch")]).diff
        return A.a5(frame[frame["dataset"] == "cifar10"], gap3)
    if claim == "B6":
        return B.b6(frame, pc_timing(frame))
    if claim == "B7":
        v = B.b7(entropy_of(frame), num_classes=int(frame["num_classes"].iloc[0]))
        from patchinit.claims.evidence import evidence_of

        # the entropies are measured on the inits of these runs: their tier is the verdict's
        return Verdict(v.claim, v.verdict, v.paper, v.ours, evidence_of(frame), v.test, v.p, v.ci, v.parts, v.note)
    if claim in ("B2", "B4"):
        return getattr(B, claim.lower())(frame, epoch=epoch or 1)
    rule = getattr(A if claim.startswith("A") else B, claim.lower())
    return rule(frame)


def verdict(store, claim: str, frame=None) -> Verdict:
    """What a chapter shows for ``claim``: the rule on the chapter's own ``frame`` when its runs are of a
    tier at least as strong as the strongest complete in the store, else the store's strongest."""
    from patchinit.results import TIERS

    best = judge(store, claim)
    if frame is None or len(frame) == 0:
        return best
    mine = apply(claim, frame, store)
    rank = {t: i for i, t in enumerate(TIERS)}
    if best.tier is None or (mine.tier is not None and rank[mine.tier] <= rank[best.tier]):
        return mine
    return best
