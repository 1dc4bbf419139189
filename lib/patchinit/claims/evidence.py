"""Tidy run data for the claim rules, one chance rule, and paired gaps between two arms.

:func:`runs_frame` turns a chapter's grid (``(row, config)`` pairs) and its store records into
one row per run: the grid's labels (init, seed, model, prune, lr, ...), the final metrics, the
per-epoch curves, the decoded predictions with their test labels, and the run's tier.  The
rules read only these columns, so the tests feed them frames built by hand.

Gaps are always ``b − a`` in percentage points, with a standard error and a one-sided p-value
in each direction, chosen by what the runs allow:

* ``seeds``: at least 3 seeds paired by seed: a paired t interval over the seeds (it sees the
  seed-to-seed variance the papers' claims are about);
* ``images``: fewer seeds, top-1 predictions stored: McNemar's test on the same test images,
  pooled over the seed pairs (discordant counts added; an exact binomial p-value);
* ``proportions``: fewer seeds and no per-image data (top-5): a two-proportion z test, which
  ignores the pairing and so errs on the cautious side.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
from scipy import stats as st

from patchinit.claims.verdict import Evidence
from patchinit.results import TIERS, decode_predictions, epochs_run, tier_of

__all__ = ["runs_frame", "chance_edge", "at_chance", "Gap", "gap", "evidence_of", "arm", "curve_matrix", "curve_epochs"]

CURVES = ("test_acc", "test_top5", "test_loss", "train_loss")


def runs_frame(grid: Sequence[tuple[Mapping, Mapping]], records: Sequence[Mapping], labels=None):
    """One row per run of ``grid`` with its ``records`` (in the same order).

    ``labels`` is a function from a config to the test labels its predictions refer to
    (default :func:`patchinit.experiment.test_labels`); runs scored on the same images share
    one array.
    """
    import pandas as pd

    if len(grid) != len(records):
        raise ValueError(f"{len(grid)} grid rows but {len(records)} records; pass the records run_all returned")
    if labels is None:
        from patchinit.experiment import test_labels as labels
    shared: dict = {}
    rows = []
    for (row, config), rec in zip(grid, records):
        cfg = rec["config"]
        metrics = rec["metrics"]
        last = metrics[-1] if metrics else {}
        pred = decode_predictions(rec["predictions"]) if rec.get("predictions") else None
        y = None
        if pred is not None:
            where = (cfg["dataset"], cfg.get("test_subset"), cfg.get("data_fingerprint"))
            if where not in shared:
                shared[where] = np.asarray(labels(cfg))
            y = shared[where]
        out = dict(row)
        out.update({
            "key": rec.get("key"), "tier": rec.get("tier") or tier_of(rec), "epochs_run": epochs_run(rec),
            "epochs": int(cfg.get("train", {}).get("epochs", len(metrics))),
            "dataset": cfg.get("dataset"), "num_classes": int(cfg.get("num_classes", 0)),
            "n_test": int(pred.size) if pred is not None else int(rec.get("extra", {}).get("n_test", 0) or 0),
            "acc": last.get("test_acc", np.nan), "top5": last.get("test_top5", np.nan),
            "loss": last.get("test_loss", np.nan),
            "diverged": rec.get("result", {}).get("diverged_at") is not None,
            "pred": pred, "labels": y, "init_record": rec.get("extra", {}).get("init", {}),
            "prefix_pred": {int(e): decode_predictions(p) for e, p in (rec.get("prefix_predictions") or {}).items()},
        })
        for key in CURVES:
            out[f"curve_{key}"] = np.array([m.get(key, np.nan) for m in metrics], dtype=float)
        rows.append(out)
    return pd.DataFrame(rows)


def arm(frame, **where):
    """The rows of ``frame`` whose columns equal ``where`` (``init="patch", lr=0.01``)."""
    mask = np.ones(len(frame), dtype=bool)
    for col, value in where.items():
        if col not in frame:
            raise KeyError(f"the run frame has no column {col!r}; it has {sorted(frame.columns)}")
        mask &= np.asarray([_same(v, value) for v in frame[col]])
    return frame[mask]


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0)
    return a == b


def curve_matrix(rows, key: str = "test_acc") -> np.ndarray:
    """``(runs, epochs)`` of a per-epoch metric (NaN-padded to the longest run)."""
    curves = [np.asarray(c, dtype=float) for c in rows[f"curve_{key}"]]
    n = max((len(c) for c in curves), default=0)
    out = np.full((len(curves), n), np.nan)
    for i, c in enumerate(curves):
        out[i, :len(c)] = c
    return out


def curve_epochs(a, b, min_runs: int = 2) -> int:
    """The most epochs that ``min_runs`` runs of each arm (all of an arm's runs, if it has fewer)
    reached: the curve parts of a claim are read over those runs and epochs."""
    def reach(rows):
        if len(rows) == 0:
            return 0
        return int(sorted(rows["epochs_run"], reverse=True)[min(min_runs, len(rows)) - 1])
    return min(reach(a), reach(b))


# ------------------------------------------------------------------------------ chance
def chance_edge(num_classes: int, n_test: int, k: int = 1, z: float = 3.0) -> float:
    """Upper edge of the chance band, in %: the accuracy of guessing (``k/num_classes`` for top-k)
    plus ``z`` binomial standard errors on ``n_test`` images.  The one chance rule of the book."""
    if num_classes < 2 or n_test < 1:
        raise ValueError(f"need num_classes >= 2 and n_test >= 1, got {num_classes} and {n_test}")
    p = min(k, num_classes) / num_classes
    return 100.0 * (p + z * math.sqrt(p * (1 - p) / n_test))


def at_chance(rows, metric: str = "acc", k: int | None = None) -> bool:
    """Whether the mean ``metric`` of ``rows`` lies inside the chance band (or every run diverged)."""
    if len(rows) == 0:
        return True
    if bool(np.all(rows["diverged"])):
        return True
    k = k or (5 if metric == "top5" else 1)
    edge = chance_edge(int(rows["num_classes"].iloc[0]), max(int(rows["n_test"].min()), 1), k)
    value = float(np.nanmean(rows[metric]))
    return not (value > edge)


# ------------------------------------------------------------------------------ gaps
@dataclass(frozen=True)
class Gap:
    """``b − a`` in points, its standard error, and how it was measured."""

    diff: float
    se: float
    df: float | None          # t degrees of freedom; None: normal
    method: str               # "seeds", "images" or "proportions"
    n: int                    # seeds, or test images
    a_mean: float
    b_mean: float
    discordant: tuple[int, int] | None = None  # (a only right, b only right), for "images"

    def ci(self, level: float = 0.95) -> tuple[float, float]:
        q = (st.t.ppf if self.df else lambda x, *_: st.norm.ppf(x))(0.5 + level / 2, self.df)
        return (self.diff - q * self.se, self.diff + q * self.se)

    def p_greater(self) -> float:
        """One-sided p-value for ``b > a``."""
        return self._p(+1)

    def p_less(self) -> float:
        """One-sided p-value for ``b < a``."""
        return self._p(-1)

    def _p(self, sign: int) -> float:
        if self.discordant is not None:
            a_only, b_only = self.discordant
            hits = b_only if sign > 0 else a_only
            return float(st.binomtest(hits, a_only + b_only, 0.5, alternative="greater").pvalue) \
                if a_only + b_only else 1.0
        if self.se == 0:
            return 0.0 if sign * self.diff > 0 else 1.0
        t = sign * self.diff / self.se
        return float(st.t.sf(t, self.df) if self.df else st.norm.sf(t))

    def equivalent(self, margin: float, level: float = 0.90) -> bool:
        """TOST at ``1 − level``/2 each side: the ``level`` interval lies inside ±margin."""
        lo, hi = self.ci(level)
        return -margin < lo and hi < margin

    def describe(self, label_a: str = "a", label_b: str = "b") -> str:
        lo, hi = self.ci()
        how = {"seeds": f"paired over {self.n} seeds (t)", "images": f"McNemar over {self.n:,} test images",
               "proportions": f"two-proportion z on {self.n:,} images"}[self.method]
        return (f"{label_b} − {label_a} = {self.diff:+.2f} points (95% CI {lo:+.2f} to {hi:+.2f}; {how})")


def gap(a, b, metric: str = "acc", min_seeds: int = 3, drop_diverged: bool = False) -> Gap:
    """``b − a`` between two arms (frames of runs), paired by seed (see the module docstring).
    ``drop_diverged`` leaves out the seed pairs in which either run diverged."""
    if len(a) == 0 or len(b) == 0:
        raise ValueError("both arms need at least one run")
    pairs = _pairs(a, b)
    if drop_diverged:
        pairs = [(ra, rb) for ra, rb in pairs if not (ra["diverged"] or rb["diverged"])]
        if not pairs:
            raise ValueError("every seed pair has a diverged run")
    va = np.array([float(ra[metric]) for ra, _ in pairs])
    vb = np.array([float(rb[metric]) for _, rb in pairs])
    if len(pairs) >= min_seeds:
        d = vb - va
        se = float(np.std(d, ddof=1) / math.sqrt(len(d)))
        return Gap(float(d.mean()), se, len(d) - 1, "seeds", len(d), float(va.mean()), float(vb.mean()))
    if metric == "acc" and all(ra["pred"] is not None and rb["pred"] is not None for ra, rb in pairs):
        a_only = b_only = n = 0
        for ra, rb in pairs:
            y = ra["labels"]
            if not (len(ra["pred"]) == len(rb["pred"]) == len(y)):
                raise ValueError("the two arms' runs are scored on different test images; they cannot be paired")
            right_a, right_b = ra["pred"] == y, rb["pred"] == y
            a_only += int(np.sum(right_a & ~right_b))
            b_only += int(np.sum(~right_a & right_b))
            n += len(y)
        diff = 100.0 * (b_only - a_only) / n
        se = 100.0 * math.sqrt(max(a_only + b_only - (b_only - a_only) ** 2 / n, 0.0)) / n
        return Gap(diff, se, None, "images", n, float(va.mean()), float(vb.mean()), (a_only, b_only))
    n = int(min(min(a["n_test"]), min(b["n_test"]))) * len(pairs)
    pa, pb = va.mean() / 100, vb.mean() / 100
    se = 100.0 * math.sqrt(max(pa * (1 - pa) + pb * (1 - pb), 1e-12) / max(n, 1))
    return Gap(100.0 * (pb - pa), se, None, "proportions", n, float(va.mean()), float(vb.mean()))


def _pairs(a, b) -> list:
    if "seed" in a and "seed" in b:
        bs = {s: r for s, (_, r) in zip(b["seed"], b.iterrows())}
        pairs = [(ra, bs[s]) for s, (_, ra) in zip(a["seed"], a.iterrows()) if s in bs]
        if pairs:
            return pairs
    return [(ra, rb) for (_, ra), (_, rb) in zip(a.iterrows(), b.iterrows())]


# ------------------------------------------------------------------------------ evidence
def evidence_of(*frames) -> Evidence:
    """The :class:`Evidence` of the runs in ``frames``: the weakest tier, the fewest epochs."""
    import pandas as pd

    frames = [f for f in frames if f is not None and len(f)]
    if not frames:
        return Evidence(None)
    runs = pd.concat(frames)
    tiers = [t for t in runs["tier"] if t]
    tier = max(tiers, key=TIERS.index) if tiers else None
    seeds = int(runs.groupby("init")["seed"].nunique().max()) if {"init", "seed"} <= set(runs) else 1
    return Evidence(tier, seeds, int(runs["epochs_run"].min()), int(runs["epochs"].max()),
                    int(runs["n_test"].min()), len(runs))


def pooled(gaps: Sequence[Gap]) -> Gap:
    """One gap from several cells' gaps: discordant counts added where every cell is per image,
    else the mean of the cells' gaps with the standard error of that mean (cells independent)."""
    gaps = list(gaps)
    if not gaps:
        raise ValueError("no gaps to pool")
    if all(g.discordant is not None for g in gaps):
        a_only = sum(g.discordant[0] for g in gaps)
        b_only = sum(g.discordant[1] for g in gaps)
        n = sum(g.n for g in gaps)
        diff = 100.0 * (b_only - a_only) / n
        se = 100.0 * math.sqrt(max(a_only + b_only - (b_only - a_only) ** 2 / n, 0.0)) / n
        return Gap(diff, se, None, "images", n, float(np.mean([g.a_mean for g in gaps])),
                   float(np.mean([g.b_mean for g in gaps])), (a_only, b_only))
    k = len(gaps)
    return Gap(float(np.mean([g.diff for g in gaps])), math.sqrt(sum(g.se ** 2 for g in gaps)) / k, None,
               gaps[0].method, sum(g.n for g in gaps), float(np.mean([g.a_mean for g in gaps])),
               float(np.mean([g.b_mean for g in gaps])))


def at_epoch(rows, epoch: int):
    """``rows`` with ``acc``, ``top5`` and the losses of epoch ``epoch`` (1-based) instead of the last
    one's; predictions are kept where that epoch is the run's last or the record kept them from the
    shorter record it extended (``prefix_predictions``).  Runs that stopped before ``epoch`` are dropped."""
    out = rows[rows["epochs_run"] >= epoch].copy()
    for col, key in (("acc", "test_acc"), ("top5", "test_top5"), ("loss", "test_loss")):
        out[col] = [float(c[epoch - 1]) for c in out[f"curve_{key}"]]
    kept = out["prefix_pred"] if "prefix_pred" in out else [{}] * len(out)
    out["pred"] = [p if e == epoch else k.get(epoch) for p, e, k in zip(out["pred"], out["epochs_run"], kept)]
    out["epochs_run"] = epoch
    return out
