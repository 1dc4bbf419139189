"""The claims of the two papers as tested rules: one function per claim ID.

``a1`` ... ``a11`` (Lehmann & Ebner) and ``b1`` ... ``b10`` (Rencoret) each take a frame of runs
(:func:`runs_frame`) and return a :class:`Verdict` that names the evidence tier of its runs.  The
chapters call them on their grids; :func:`dashboard` judges every claim on the strongest tier
complete in the results store, for the book's claims page.
"""
from patchinit.claims.evidence import Gap, arm, at_chance, at_epoch, chance_edge, curve_matrix, gap, pooled, runs_frame
from patchinit.claims.method_a import a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, mean_low_lr_gap
from patchinit.claims.method_b import b1, b2, b2_sensitivity, b3, b4, b5, b6, b7, b8, b9, b10
from patchinit.claims.verdict import VERDICTS, Evidence, Verdict

#: Every claim: (chapter notebook, short text), in the order of claims.md.
CLAIMS = {
    "A1": ("02-mnist-kaiming", "MNIST, lr 0.01: patch init tracks Kaiming U/N and is slightly better than Kaiming N"),
    "A2": ("10-cifar10-fixup", "CIFAR-10, Fixup ResNet-20, lr 0.1: patch init similar to Fixup"),
    "A3": ("03-mnist-robustness", "MNIST, low lrs: accuracy falls less for patch init, most in the first half; lr 0.1 fails"),
    "A4": ("03-mnist-robustness", "MNIST, momentum and weight decay: same direction as A3, smaller gap"),
    "A5": ("10-cifar10-fixup", "CIFAR-10, lr 1e-3: patch init slightly better than Fixup, weaker than on MNIST"),
    "A6": ("03-mnist-robustness", "MNIST: both conv layers from patches slightly worse than the first only"),
    "A7": ("11-fixup-deeper-layers", "CIFAR-10, cases (a)-(d): rises with patch layers at lr 1e-3; at lr 0.1 slightly below Fixup, (c)/(d) fail for some seeds"),
    "A8": ("11-fixup-deeper-layers", "Stuart–Maxwell, (b) vs Fixup: p < 0.01 at lr 1e-3; p < 0.1 for 2 of 5 seeds at lr 0.1"),
    "A9": ("11-fixup-deeper-layers", "CIFAR-100: the same effect for cases (a)-(d)"),
    "A10": ("12-resnet18-bn", "ResNet-18 (BN): only a careful layer choice slightly beats Kaiming U at a suboptimal lr"),
    "A11": (None, "Pretrained ResNet-18 on plant seedlings: patches lower accuracy"),
    "B1": ("05-cifar10-supermasks", "CIFAR-10: PatchesInit beats Random for Conv2/4/6 at every prune rate"),
    "B2": ("05-cifar10-supermasks", "Conv6, CIFAR-10, 50%: more than 28 points ahead after epoch 1, converges faster"),
    "B3": ("06-cifar100-supermasks", "CIFAR-100 (top-5): PatchesInit beats Random at every prune rate; Conv6 at 10% fails"),
    "B4": ("06-cifar100-supermasks", "Conv6, CIFAR-100, 50%: about 24 points ahead after epoch 1"),
    "B5": ("13-tinyimagenet-resnet18", "ResNet-18, TinyImageNet: full PatchesInit below Random, Partial above"),
    "B6": ("07-patchesinit-ablations", "P = 50k, C = 500 best; time linear in P; SimpleInit competitive and cheaper"),
    "B7": ("07-patchesinit-ablations", "Selected clusters: high entropy in layers 1–5, low in 6; SimpleInit lower"),
    "B8": ("07-patchesinit-ablations", "D ablation: 5C-1D best, 0C-6D worst"),
    "B9": ("08-patchesinit-vs-baselines", "CIFAR-100: below Kaiming, above Xavier; Normal beats Uniform"),
    "B10": ("13-tinyimagenet-resnet18", "Partial-PatchesInit helps up to block 2, hurts from block 3"),
}


def verdict(store, claim: str, frame=None) -> Verdict:
    """The verdict a chapter shows for ``claim`` (see :func:`patchinit.claims.sources.verdict`)."""
    from patchinit.claims.sources import verdict as _verdict

    return _verdict(store, claim, frame)


def dashboard(store):
    """One row per claim: verdict, tier and its size, the paper beside ours, and the chapter."""
    import pandas as pd

    from patchinit.claims.sources import judge

    rows = []
    for claim, (chapter, text) in CLAIMS.items():
        v = judge(store, claim)
        shown = v.verdict if v.stated() else "no evidence yet"
        rows.append({"claim": claim, "verdict": shown,
                     "reading of the quick profile": v.verdict if v.tier == "quick" else "",
                     "tier": v.evidence.describe(), "claim (short)": text, "paper": v.paper, "ours": v.ours,
                     "parts tested": _parts(v), "chapter": chapter})
    return pd.DataFrame(rows)


def _parts(v: Verdict) -> str:
    if not v.parts:
        return ""
    tested = sum(x is not None for x in v.parts.values())
    return f"{tested} of {len(v.parts)}"


__all__ = ["CLAIMS", "VERDICTS", "Evidence", "Gap", "Verdict", "dashboard", "verdict", "runs_frame", "arm", "at_chance", "at_epoch",
           "chance_edge", "curve_matrix", "gap", "pooled", "mean_low_lr_gap",
           "a1", "a2", "a3", "a4", "a5", "a6", "a7", "a8", "a9", "a10", "a11",
           "b1", "b2", "b2_sensitivity", "b3", "b4", "b5", "b6", "b7", "b8", "b9", "b10"]
