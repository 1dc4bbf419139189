"""Paired statistics for comparing two initialisations.

Two kinds of pairing occur in the book:

* **Per test image** (one seed): both models classify the same test images.
  Lehmann & Ebner (§4.3) compare case (b) with Fixup by the Stuart–Maxwell test,
  the K-class extension of McNemar's test recommended by Dietterich (1998): is
  the distribution of predicted classes the same for both models?
  :func:`stuart_maxwell`; for right/wrong per image, :func:`mcnemar`.
* **Per seed**: each seed gives a final accuracy for both methods, and the seed
  also fixes the shared random layers, so the accuracies are paired.
  :func:`paired_comparison` gives the mean difference with a t interval, the
  paired t-test, the Wilcoxon signed-rank test and Cohen's d_z.

Degenerate inputs give NaN or trivial results with a ``note`` saying why, never
an exception: with 5 seeds and a few cases, some comparisons will be degenerate.
"""
from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy import stats as sps
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components
from statsmodels.stats.contingency_tables import SquareTable
from statsmodels.stats.contingency_tables import mcnemar as _sm_mcnemar

log = logging.getLogger(__name__)

__all__ = [
    "StuartMaxwellResult",
    "McNemarResult",
    "PairedComparison",
    "confusion_between",
    "stuart_maxwell",
    "mcnemar",
    "paired_comparison",
]


# --------------------------------------------------------------------------- Stuart–Maxwell

@dataclass(frozen=True)
class StuartMaxwellResult:
    """Stuart–Maxwell test of marginal homogeneity between two models' predictions.

    ``table[i, j]`` counts test images that model A put in class i and model B in
    class j.  ``components`` is the number of groups of classes tested separately
    (1 in the usual case; see :func:`stuart_maxwell`).
    """

    statistic: float
    df: int
    pvalue: float
    n: int
    n_discordant: int
    components: int
    table: np.ndarray = field(repr=False)
    note: str = ""

    def significant(self, alpha: float = 0.05) -> bool:
        """True when ``pvalue < alpha`` (False for a NaN p-value)."""
        return bool(self.pvalue < alpha)


def _as_labels(x, name: str, num_classes: int | None = None) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of class indices, got shape {a.shape}")
    if a.size and not np.issubdtype(a.dtype, np.integer):
        if not np.all(np.isfinite(a)) or not np.all(a == np.round(a)):
            raise ValueError(f"{name} must hold integer class indices, got dtype {a.dtype}")
        a = a.astype(np.int64)
    a = a.astype(np.int64, copy=False)
    if num_classes is not None and a.size and (a.min() < 0 or a.max() >= num_classes):
        raise ValueError(f"{name} has class indices outside 0..{num_classes - 1} "
                         f"(min {a.min()}, max {a.max()}); check num_classes={num_classes}")
    return a


def confusion_between(pred_a, pred_b, num_classes: int) -> np.ndarray:
    """K x K table of (model A's class, model B's class) counts over the same images."""
    if not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
    a = _as_labels(pred_a, "pred_a", num_classes)
    b = _as_labels(pred_b, "pred_b", num_classes)
    if a.shape != b.shape:
        raise ValueError(f"pred_a and pred_b must be predictions for the same images; "
                         f"got lengths {a.size} and {b.size}")
    counts = np.bincount(a * num_classes + b, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def _homogeneity_statistic(sub_table: np.ndarray) -> float:
    """statsmodels' Stuart–Maxwell statistic for one connected group of classes."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a singular matrix here would be a bug: fail loudly
        res = SquareTable(sub_table, shift_zeros=False).homogeneity(method="stuart_maxwell")
    return float(res.statistic)


def stuart_maxwell(pred_a, pred_b, num_classes: int) -> StuartMaxwellResult:
    """Stuart–Maxwell test from two models' predicted classes on the same test images.

    The statistic is ``dᵀ S⁻¹ d`` with ``d`` the row-minus-column margins and ``S``
    their covariance, over K−1 classes, referred to χ² with K−1 df
    (statsmodels ``SquareTable(table).homogeneity()``; we pass
    ``shift_zeros=False``, since its default would replace empty cells by 0.5 and
    change the statistic).

    ``S`` is built from disagreements only (``S_ij = −(n_ij + n_ji)``), so it is
    singular whenever the classes split into groups that the two models never
    confuse across: a class never predicted by either model, a class on which they
    always agree, or identical predictions.  Then we test each connected group of
    classes (linked by at least one disagreement) separately and add the statistics
    and the degrees of freedom (group size − 1 each); classes with no disagreement
    contribute 0 and 0.  This equals ``dᵀ S⁺ d`` with the Moore–Penrose inverse and
    ``df = rank(S)``, and in the usual connected case it is exactly statsmodels'
    result.  With no disagreement at all, the statistic is 0 with df 0 and the
    p-value is 1 (nothing speaks against homogeneity).  The p-value is taken from
    ``chi2.sf``, which stays accurate far below 1e-16.
    """
    table = confusion_between(pred_a, pred_b, num_classes)
    n = int(table.sum())
    off = table - np.diag(np.diag(table))
    n_discordant = int(off.sum())
    links = off + off.T
    n_groups, labels = connected_components(csr_matrix(links), directed=False)
    statistic, df, tested = 0.0, 0, 0
    for g in range(n_groups):
        idx = np.flatnonzero(labels == g)
        if idx.size < 2:
            continue  # an isolated class: d_i = 0 and no variance
        statistic += _homogeneity_statistic(table[np.ix_(idx, idx)])
        df += idx.size - 1
        tested += 1
    notes = []
    if n == 0:
        notes.append("no predictions")
    if tested == 0:
        notes.append("the models never disagree: statistic 0 on 0 df, p = 1")
    elif tested > 1 or df < num_classes - 1:
        notes.append(f"covariance singular for all {num_classes} classes; tested {tested} group(s) "
                     f"of classes that the models confuse, df = {df} (generalised inverse)")
    pvalue = float(sps.chi2.sf(statistic, df)) if df > 0 else 1.0
    return StuartMaxwellResult(statistic=float(statistic), df=int(df), pvalue=pvalue, n=n,
                               n_discordant=n_discordant, components=tested, table=table,
                               note="; ".join(notes))


# --------------------------------------------------------------------------- McNemar

@dataclass(frozen=True)
class McNemarResult:
    """McNemar's test on right/wrong: ``a_only`` images only A got right, ``b_only`` only B."""

    statistic: float
    pvalue: float
    a_only: int
    b_only: int
    n: int
    exact: bool


def mcnemar(pred_a, pred_b, target, exact: bool | None = None) -> McNemarResult:
    """McNemar's test of whether two models have the same error rate on the same images.

    Dietterich (1998)'s recommended test.  ``exact=None`` picks the exact binomial
    test when fewer than 25 images are discordant and the χ² test with continuity
    correction otherwise (statsmodels' ``mcnemar``).
    """
    t = _as_labels(target, "target")
    a = _as_labels(pred_a, "pred_a")
    b = _as_labels(pred_b, "pred_b")
    if not (a.shape == b.shape == t.shape):
        raise ValueError(f"pred_a, pred_b and target must have the same length; "
                         f"got {a.size}, {b.size}, {t.size}")
    ra, rb = a == t, b == t
    a_only, b_only = int(np.sum(ra & ~rb)), int(np.sum(~ra & rb))
    if exact is None:
        exact = a_only + b_only < 25
    table = [[int(np.sum(ra & rb)), a_only], [b_only, int(np.sum(~ra & ~rb))]]
    if a_only + b_only == 0:
        return McNemarResult(0.0, 1.0, 0, 0, int(t.size), bool(exact))
    res = _sm_mcnemar(table, exact=exact, correction=True)
    return McNemarResult(float(res.statistic), float(res.pvalue), a_only, b_only, int(t.size), bool(exact))


# --------------------------------------------------------------------------- paired, per seed

@dataclass(frozen=True)
class PairedComparison:
    """Summary of ``a − b`` over paired observations (e.g. per-seed final accuracies).

    ``pvalue`` is the p-value of the test chosen by ``test``; both are always
    reported.  ``ci_low, ci_high`` is the t-based interval of the mean difference at
    ``confidence``.
    """

    n: int
    mean_diff: float
    std_diff: float
    ci_low: float
    ci_high: float
    confidence: float
    t_statistic: float
    t_pvalue: float
    wilcoxon_statistic: float
    wilcoxon_pvalue: float
    cohens_dz: float
    test: str
    note: str = ""

    @property
    def pvalue(self) -> float:
        return self.t_pvalue if self.test == "t" else self.wilcoxon_pvalue


_TESTS = ("t", "wilcoxon")


def _paired_arrays(a, b) -> np.ndarray:
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"a and b must be 1-D and paired (same length); got shapes {x.shape} and {y.shape}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("a and b must be finite; drop or impute missing runs before comparing")
    return x - y


def _t_part(d: np.ndarray, confidence: float) -> tuple[float, float, float, float, float, str]:
    """(std, ci_low, ci_high, t, p, note) for differences ``d``."""
    n = d.size
    mean = float(d.mean())
    if n < 2:
        return math.nan, math.nan, math.nan, math.nan, math.nan, "n < 2: no spread, no test"
    sd = float(d.std(ddof=1))
    half = float(sps.t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)
    if sd == 0:
        return 0.0, mean, mean, math.nan, math.nan, "all differences equal (std 0): t-test undefined"
    t = mean / (sd / math.sqrt(n))
    p = float(2 * sps.t.sf(abs(t), n - 1))
    return sd, mean - half, mean + half, t, p, ""


def _wilcoxon_part(d: np.ndarray) -> tuple[float, float, str]:
    if np.all(d == 0):
        return math.nan, math.nan, "no non-zero difference: Wilcoxon undefined"
    res = sps.wilcoxon(d, zero_method="wilcox", alternative="two-sided")
    return float(res.statistic), float(res.pvalue), ""


def paired_comparison(a, b, test: str = "t", confidence: float = 0.95) -> PairedComparison:
    """Compare paired results ``a`` and ``b`` (e.g. per-seed accuracy of two methods).

    Returns the mean and standard deviation of ``a − b``, a t-based
    ``confidence`` interval of the mean difference, the paired t-test and the
    Wilcoxon signed-rank test (two-sided; zero differences dropped, exact for small
    n without ties), and Cohen's ``d_z = mean / std`` of the differences.  With
    n < 2, or when every difference is the same (std 0), the undefined quantities are
    NaN and ``note`` says why.  ``test`` ("t" or "wilcoxon") picks ``.pvalue``.
    """
    if test not in _TESTS:
        raise ValueError(f"test must be one of {_TESTS}, got {test!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    d = _paired_arrays(a, b)
    if d.size == 0:
        raise ValueError("a and b are empty: nothing to compare")
    sd, lo, hi, t, tp, t_note = _t_part(d, confidence)
    w, wp, w_note = _wilcoxon_part(d)
    dz = float(d.mean() / sd) if sd and not math.isnan(sd) else math.nan
    note = "; ".join(s for s in (t_note, w_note) if s)
    return PairedComparison(n=int(d.size), mean_diff=float(d.mean()), std_diff=sd, ci_low=lo, ci_high=hi,
                            confidence=confidence, t_statistic=t, t_pvalue=tp, wilcoxon_statistic=w,
                            wilcoxon_pvalue=wp, cohens_dz=dz, test=test, note=note)
