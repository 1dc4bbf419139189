"""From results-store records to the arrays and verdicts a chapter reports."""
from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np

# The forward-scale readings live with the init engine's scalers; re-exported for the chapters.
from patchinit.init.scale import layer_output_std, patch_gain  # noqa: F401



def metric_matrix(records: Sequence[Mapping], key: str = "test_acc") -> np.ndarray:
    """``(runs, epochs)`` array of a per-epoch metric (NaN where a run has fewer epochs)."""
    n = max(len(r["metrics"]) for r in records)
    out = np.full((len(records), n), np.nan)
    for i, r in enumerate(records):
        vals = [m.get(key, np.nan) for m in r["metrics"]]
        out[i, : len(vals)] = vals
    return out


def finals(records: Iterable[Mapping], key: str = "test_acc") -> np.ndarray:
    """The last epoch's value of ``key`` for each run."""
    return np.array([r["metrics"][-1].get(key, np.nan) for r in records], dtype=float)


def diverged(records: Iterable[Mapping]) -> np.ndarray:
    return np.array([r["result"].get("diverged_at") is not None for r in records])


def grid_frame(grid: Sequence[tuple[Mapping, Mapping]], records: Sequence[Mapping],
               metrics: Sequence[str] = ("test_acc", "test_top5", "test_loss")):
    """One row per run of a chapter grid: the grid's row labels, the last epoch's
    ``metrics``, whether the run diverged, and its init record's time (if any)."""
    import pandas as pd

    if len(grid) != len(records):
        raise ValueError(f"{len(grid)} grid rows but {len(records)} records")
    rows = []
    for (row, _), rec in zip(grid, records):
        last = rec["metrics"][-1]
        out = {**row, **{m: last.get(m, np.nan) for m in metrics},
               "diverged": rec["result"].get("diverged_at") is not None}
        patch = (rec.get("extra") or {}).get("init", {}).get("patch")
        if patch:
            out["init_seconds"] = sum(float(layer.get("time_total", 0.0)) for layer in patch.values())
        rows.append(out)
    return pd.DataFrame(rows)


def thesis_vs_ours(ours, paper, value: str = "test_acc", metric: str = "top1",
                   inits: Sequence[str] = ("Random", "PatchesInit"), reference: str | None = None):
    """A thesis table beside ours, per (model, prune rate): each init's mean over seeds.

    ``ours`` is a :func:`grid_frame`; ``paper`` rows of ``method_b_accuracy.csv`` with a
    lower-case ``model``.  With ``reference`` (default: the first init) a Δ column gives
    each other init minus the reference, in both halves; the last group gives ours minus
    the thesis for each init.  Cells we did not run are dropped.
    """
    import pandas as pd

    reference = reference or inits[0]
    o = ours.groupby(["model", "prune", "init"])[value].mean().unstack("init")
    p = (paper[paper.metric == metric].assign(prune=lambda d: d.prune_pct / 100)
         .pivot_table(index=["model", "prune"], columns="init", values="value"))
    cols = {}
    for side, frame in (("thesis", p), ("ours", o)):
        for init in inits:
            cols[(side, init)] = frame[init] if init in frame else np.nan
        for init in inits:
            if init != reference:
                label = "Δ" if len(inits) == 2 else f"Δ {init}"
                cols[(side, label)] = cols[(side, init)] - cols[(side, reference)]
    for init in inits:
        cols[("ours − thesis", init)] = cols[("ours", init)] - cols[("thesis", init)]
    t = pd.DataFrame(cols)
    t = t.dropna(subset=[("ours", inits[0])])
    t.index = t.index.set_levels([f"{100 * v:.0f}%" for v in t.index.levels[1]], level=1)
    return t


def chance_edge(num_classes: int, n_test: int, z: float = 3.0) -> float:
    """Upper edge of the top-1 chance band, in %: the book's one chance rule,
    :func:`patchinit.claims.evidence.chance_edge` (kept here for the chapters' tables)."""
    from patchinit.claims.evidence import chance_edge as edge

    return edge(num_classes, n_test, 1, z)


def per_image_comparison(record_a: Mapping, record_b: Mapping, labels, num_classes: int) -> dict:
    """Paired per-image tests between two stored runs scored on the same test images.

    Decodes both runs' final predictions and returns their accuracies, the
    Stuart–Maxwell test of marginal homogeneity (do the models predict the classes
    in different proportions?) and McNemar's test on right/wrong (do they make
    different numbers of errors?), as one flat row for a table.
    """
    from patchinit.results import decode_predictions
    from patchinit.stats import mcnemar, stuart_maxwell

    a, b = decode_predictions(record_a["predictions"]), decode_predictions(record_b["predictions"])
    y = np.asarray(labels)
    if not (a.shape == b.shape == y.shape):
        raise ValueError(f"the two runs and the labels must cover the same test images; got {a.size}, {b.size} "
                         f"predictions and {y.size} labels")
    sm = stuart_maxwell(a, b, num_classes)
    mc = mcnemar(a, b, y)
    return {"acc_a": 100.0 * float(np.mean(a == y)), "acc_b": 100.0 * float(np.mean(b == y)),
            "disagree": int(np.sum(a != b)), "stuart_maxwell": sm.statistic, "df": sm.df, "p_stuart_maxwell": sm.pvalue,
            "a_only_right": mc.a_only, "b_only_right": mc.b_only, "p_mcnemar": mc.pvalue, "note": sm.note}
