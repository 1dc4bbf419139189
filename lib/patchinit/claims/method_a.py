"""Claims A1–A11 (Lehmann & Ebner): one rule each, from a frame of runs (:func:`runs_frame`).

Each rule states its test in its docstring.  Margins are constants here, with the reason for
each, so that no chapter carries a threshold of its own.
"""
from __future__ import annotations

import numpy as np
from scipy import stats as st

from patchinit.claims.evidence import Gap, arm, at_chance, at_epoch, curve_matrix, evidence_of, gap, pooled
from patchinit.claims.verdict import Evidence, Verdict, combine as _combine
from patchinit.stats import stuart_maxwell

ALPHA = 0.05
#: "tracks epoch by epoch" / "similar": every epoch's mean gap within 1 point.  Fig. 3's curves lie
#: within about a point of each other on MNIST after the first epoch; on CIFAR-10 the paper's
#: "similar" is read the same way, as an equivalence margin of 1 point (TOST at 90%).
TRACK_MARGIN = 1.0
SIMILAR_MARGIN = 1.0
#: "slightly": a gap of at most 2 points (A6, A7 at lr 0.1, A10).
SLIGHT = 2.0


def _inconclusive(claim: str, paper: str, ev: Evidence, why: str) -> Verdict:
    return Verdict(claim, "inconclusive", paper, why, ev, note="both arms inside the chance band")


def a1(frame) -> Verdict:
    """A1: patch tracks Kaiming U and N at every epoch (mean gap within TRACK_MARGIN), and its final
    accuracy is above Kaiming N (one-sided paired test, p < 0.05).  Refuted if patch is significantly
    below Kaiming N, or significantly more than the margin away from either at the end.  A seed whose
    run diverged in either arm is left out of that arm's comparison and reported: the claim is about
    how the inits train, and a divergence is a finding of its own, which the paper does not report."""
    paper = ("MNIST, lr 0.01: patch init tracks Kaiming U and N over 20 epochs and is slightly better than "
             "Kaiming N (Fig. 3, top left; no numbers given).")
    patch, ku, kn = arm(frame, init="patch"), arm(frame, init="Kaiming U"), arm(frame, init="Kaiming N")
    ev = evidence_of(patch, ku, kn)
    if at_chance(patch) and at_chance(ku) and at_chance(kn):
        return _inconclusive("A1", paper, ev, "every init is at chance")
    trained = [r[~r["diverged"].astype(bool)] for r in (patch, ku, kn)]
    if any(len(t) == 0 for t in trained):
        return Verdict("A1", "not confirmed", paper, "every run of one init diverged", ev)
    cp = np.nanmean(curve_matrix(trained[0]), 0)
    worst = max(float(np.nanmax(np.abs(cp - np.nanmean(curve_matrix(r), 0)))) for r in trained[1:])
    g_n, g_u = gap(kn, patch, drop_diverged=True), gap(ku, patch, drop_diverged=True)
    failed = {n: int(r["diverged"].sum()) for n, r in (("patch", patch), ("Kaiming U", ku), ("Kaiming N", kn))}
    note = ", ".join(f"{n} diverged in {k} of {len(r)} seeds" for (n, k), r in zip(failed.items(), (patch, ku, kn)) if k)
    parts = {"tracks": worst <= TRACK_MARGIN, "above Kaiming N": g_n.diff > 0 and g_n.p_greater() < ALPHA}
    far = any(lo > TRACK_MARGIN or hi < -TRACK_MARGIN for lo, hi in (g_n.ci(), g_u.ci()))
    refuted = g_n.p_less() < ALPHA or far
    ours = (f"final accuracy of the runs that trained: patch {g_n.b_mean:.2f}%, Kaiming U {g_u.a_mean:.2f}%, "
            f"Kaiming N {g_n.a_mean:.2f}%; largest per-epoch mean gap to either {worst:.2f} points; "
            f"{g_n.describe('Kaiming N', 'patch')}")
    return Verdict("A1", _combine(parts, refuted), paper, ours, ev, "one-sided paired test vs Kaiming N",
                   g_n.p_greater(), g_n.ci(), parts,
                   note=(note + " (left out of the comparisons; the paper reports no divergence)") if note else "")


def a2(frame) -> Verdict:
    """A2: case (a) reaches accuracy similar to Fixup at lr 0.1: TOST, the 90% interval of the gap
    inside ±SIMILAR_MARGIN.  Refuted if the 95% interval lies wholly outside the margin."""
    paper = "CIFAR-10, Fixup ResNet-20, lr 0.1: patch init (first conv) reaches accuracy similar to Fixup (Fig. 3)."
    fix, pa = arm(frame, init="Fixup"), arm(frame, init="(a)")
    ev = evidence_of(fix, pa)
    if at_chance(fix) and at_chance(pa):
        return _inconclusive("A2", paper, ev, "both at chance")
    g = gap(fix, pa)
    lo, hi = g.ci()
    equivalent = g.equivalent(SIMILAR_MARGIN)
    refuted = lo > SIMILAR_MARGIN or hi < -SIMILAR_MARGIN
    verdict = "refuted" if refuted else ("confirmed" if equivalent else "not confirmed")
    return Verdict("A2", verdict, paper, f"Fixup {g.a_mean:.2f}%, (a) {g.b_mean:.2f}%; {g.describe('Fixup', '(a)')}",
                   ev, f"TOST, margin ±{SIMILAR_MARGIN:g} point", g.p_greater(), (lo, hi),
                   {"similar (90% CI within the margin)": equivalent})


LOW_LRS = (1e-3, 1e-4, 1e-5)


def _half_gaps(a, b) -> tuple[float, float]:
    d = np.nanmean(curve_matrix(b), 0) - np.nanmean(curve_matrix(a), 0)
    h = len(d) // 2
    return float(np.mean(d[:h])), float(np.mean(d[h:]))


def a3(frame) -> Verdict:
    """A3: at each low lr (1e-3, 1e-4, 1e-5) both inits end below their lr-0.01 accuracy; patch is
    above Kaiming U (p < 0.05 at ≥ 2 of the 3); its first-half mean gap exceeds its second-half
    mean gap at ≥ 2 of the 3; at lr 0.1 both diverge or stay at chance.  Refuted if patch is
    significantly below Kaiming U at ≥ 2 low lrs, or if both train at lr 0.1."""
    paper = ("MNIST, lr 1e-3, 1e-4, 1e-5: accuracy falls for both, but less for patch init than for Kaiming U, "
             "most visibly in the first half of training; lr 0.1 is too high to train (Fig. 3, bottom left).")
    ref_p, ref_u = arm(frame, init="patch", lr=0.01), arm(frame, init="Kaiming U", lr=0.01)
    lows = [lr for lr in LOW_LRS if len(arm(frame, init="patch", lr=lr)) and len(arm(frame, init="Kaiming U", lr=lr))]
    used = [arm(frame, lr=lr) for lr in (*lows, 0.01, 0.1)]
    ev = evidence_of(*used)
    if at_chance(ref_p) and at_chance(ref_u):
        return _inconclusive("A3", paper, ev, "even lr 0.01 stays at chance")
    gaps, halves, falls = {}, {}, []
    for lr in lows:
        p, u = arm(frame, init="patch", lr=lr), arm(frame, init="Kaiming U", lr=lr)
        gaps[lr], halves[lr] = gap(u, p), _half_gaps(u, p)
        falls.append(np.nanmean(p["acc"]) < np.nanmean(ref_p["acc"]) and np.nanmean(u["acc"]) < np.nanmean(ref_u["acc"]))
    need = min(2, len(lows))
    sig = sum(g.diff > 0 and g.p_greater() < ALPHA for g in gaps.values())
    first = sum(f > s for f, s in halves.values())
    hi_p, hi_u = arm(frame, init="patch", lr=0.1), arm(frame, init="Kaiming U", lr=0.1)
    fails_01 = None if not (len(hi_p) and len(hi_u)) else bool(at_chance(hi_p) and at_chance(hi_u))
    parts = {"falls for both": all(falls) if lows else None,
             "less for patch": sig >= need if lows else None,
             "most visibly in the first half": first >= need if lows else None,
             "lr 0.1 too high": fails_01}
    refuted = sum(g.p_less() < ALPHA for g in gaps.values()) >= max(need, 1) or fails_01 is False
    ours = "; ".join(f"lr {lr:g}: patch − Kaiming U {g.diff:+.2f} (p = {g.p_greater():.2g}), first half "
                     f"{halves[lr][0]:+.2f} vs second half {halves[lr][1]:+.2f}" for lr, g in gaps.items())
    if fails_01 is not None:
        ours += (f"; lr 0.1: patch {np.nanmean(hi_p['acc']):.1f}%, Kaiming U {np.nanmean(hi_u['acc']):.1f}% "
                 f"({int(hi_p['diverged'].sum() + hi_u['diverged'].sum())} of {len(hi_p) + len(hi_u)} runs diverged)")
    return Verdict("A3", _combine(parts, refuted), paper, ours, ev,
                   "one-sided paired test per lr; first- vs second-half mean gap", None, None, parts)


def mean_low_lr_gap(frame) -> float | None:
    """A3's effect size: the mean over the low lrs of patch − Kaiming U (A4 and A5 compare with it)."""
    diffs = [gap(arm(frame, init="Kaiming U", lr=lr), arm(frame, init="patch", lr=lr)).diff for lr in LOW_LRS
             if len(arm(frame, init="patch", lr=lr)) and len(arm(frame, init="Kaiming U", lr=lr))]
    return float(np.mean(diffs)) if diffs else None


def a4(frame, a3_gap: float | None = None) -> Verdict:
    """A4: over the momentum and weight-decay settings, patch − Kaiming U is positive (one-sided
    test on the per-seed mean over settings, p < 0.05) and smaller than A3's mean gap.  Refuted if
    it is significantly negative.  ``frame`` has a ``setting`` column naming each sweep value."""
    paper = ("MNIST, momentum 0.9 to 0.5 and weight decay 5e-5 to 5e-2: same direction as A3, with a smaller gap "
             "(§4.2 text).")
    p, u = arm(frame, init="patch"), arm(frame, init="Kaiming U")
    ev = evidence_of(p, u)
    if at_chance(p) and at_chance(u):
        return _inconclusive("A4", paper, ev, "every run at chance")
    cells = [gap(arm(u, setting=s), arm(p, setting=s)) for s in sorted(set(p["setting"]) & set(u["setting"]))]
    per_seed = p.groupby("seed")["acc"].mean() - u.groupby("seed")["acc"].mean()
    per_seed = per_seed.dropna()
    if len(per_seed) >= 3:
        se = float(per_seed.std(ddof=1) / np.sqrt(len(per_seed)))
        g = Gap(float(per_seed.mean()), se, len(per_seed) - 1, "seeds", len(per_seed), float(u["acc"].mean()),
                float(p["acc"].mean()))
    else:
        g = pooled(cells)
    parts = {"same direction": g.diff > 0 and g.p_greater() < ALPHA,
             "smaller gap than A3": None if a3_gap is None else bool(g.diff < a3_gap)}
    refuted = g.p_less() < ALPHA
    ours = (f"mean over {len(cells)} settings: {g.describe('Kaiming U', 'patch')}"
            + (f"; A3's mean gap {a3_gap:+.2f}" if a3_gap is not None else ""))
    return Verdict("A4", _combine(parts, refuted), paper, ours, ev, "one-sided paired test", g.p_greater(), g.ci(), parts)


def a5(frame, mnist_gap: float | None = None, epoch: int | None = None) -> Verdict:
    """A5: at lr 1e-3 case (a) is above Fixup (one-sided, p < 0.05) by less than MNIST's gap at the
    same lr (``mnist_gap``).  ``epoch``: judge the early lead at that epoch (an exact prefix).
    Refuted if (a) is significantly below Fixup."""
    paper = "CIFAR-10, lr 1e-3: patch init is slightly better than Fixup, a weaker effect than on MNIST (Fig. 3)."
    fix, pa = arm(frame, init="Fixup"), arm(frame, init="(a)")
    if epoch is not None:
        fix, pa = at_epoch(fix, epoch), at_epoch(pa, epoch)
    ev = evidence_of(fix, pa)
    if at_chance(fix) and at_chance(pa):
        return _inconclusive("A5", paper, ev, "both at chance")
    g = gap(fix, pa)
    parts = {"(a) above Fixup": g.diff > 0 and g.p_greater() < ALPHA,
             "weaker than MNIST": None if mnist_gap is None else bool(g.diff < mnist_gap)}
    ours = g.describe("Fixup", "(a)") + (f" at epoch {epoch}" if epoch else "") + \
        (f"; MNIST's gap at lr 1e-3 {mnist_gap:+.2f}" if mnist_gap is not None else "")
    return Verdict("A5", _combine(parts, g.p_less() < ALPHA), paper, ours, ev, "one-sided paired test",
                   g.p_greater(), g.ci(), parts)


def a6(frame, both: str = "patch (conv1 + conv2, activations)") -> Verdict:
    """A6: both conv layers from patches end below conv1 alone (one-sided, p < 0.05), by at most
    SLIGHT points.  Refuted if both-layer init is significantly better."""
    paper = "MNIST: initialising both conv layers from patches is slightly worse than only the first (§4.3)."
    one, two = arm(frame, init="patch"), arm(frame, init=both)
    ev = evidence_of(one, two)
    if at_chance(one) and at_chance(two):
        return _inconclusive("A6", paper, ev, "both at chance")
    g = gap(one, two)
    parts = {"worse": g.diff < 0 and g.p_less() < ALPHA, "slightly (at most 2 points)": bool(g.diff >= -SLIGHT)}
    return Verdict("A6", _combine(parts, g.p_greater() < ALPHA), paper, g.describe("conv1 only", "both layers"), ev,
                   "one-sided paired test", g.p_less(), g.ci(), parts)


CASES = ("(a)", "(b)", "(c)", "(d)")


def _failed(rows) -> np.ndarray:
    return np.array([bool(r["diverged"]) or at_chance(rows.loc[[i]]) for i, r in rows.iterrows()])


def _rises(frame, dataset: str) -> tuple[bool | None, bool, str]:
    """Accuracy rises from (a) to (d) at lr 1e-3: the case means' Spearman rank correlation with the
    number of patch layers is at least 0.8 and (d) is above (a), one-sided p < 0.05."""
    rows = {c: arm(frame, dataset=dataset, lr=1e-3, init=c) for c in CASES}
    if any(len(r) == 0 for r in rows.values()):
        return None, False, ""
    means = [float(np.nanmean(rows[c]["acc"])) for c in CASES]
    rho = float(st.spearmanr(range(4), means).statistic) if len(set(means)) > 1 else 0.0
    g = gap(rows["(a)"], rows["(d)"])
    text = (f"lr 1e-3 means {', '.join(f'{c} {m:.1f}%' for c, m in zip(CASES, means))} (Spearman {rho:+.2f}); "
            f"{g.describe('(a)', '(d)')}")
    return bool(rho >= 0.8 and g.p_greater() < ALPHA), bool(g.p_less() < ALPHA), text


def a7(frame) -> Verdict:
    """A7 on CIFAR-10, three parts: (1) at lr 1e-3 accuracy rises with the number of patch layers
    (see ``_rises``); (2) at lr 0.1 the cases that train end below Fixup by less than SLIGHT points
    on average; (3) (c) and (d) fail (diverge or stay at chance) for some seeds but not all:
    0 < fails < seeds for at least one of them, and neither fails for every seed.  Refuted if (d)
    is significantly below (a) at lr 1e-3, or the cases are significantly above Fixup at lr 0.1."""
    paper = ("CIFAR-10, cases (a)–(d): at lr 1e-3 accuracy rises with the number of patch layers; at lr 0.1 they are "
             "slightly below Fixup, and (c) and (d) fail to train for some seeds (Fig. 4, left).")
    sub = arm(frame, dataset="cifar10")
    ev = evidence_of(sub)
    if len(sub) == 0 or at_chance(sub):
        return _inconclusive("A7", paper, ev, "every run at chance")
    rises, reversed_, text = _rises(sub, "cifar10")
    fix = arm(sub, lr=0.1, init="Fixup")
    below, above_sig, cd, tail = None, False, None, ""
    if len(fix):
        cases = [arm(sub, lr=0.1, init=c) for c in CASES]
        trained = [c[~_failed(c)] for c in cases]
        gaps = [gap(fix, t) for t in trained if len(t)]
        if gaps:
            g = pooled(gaps)
            below = bool(-SLIGHT < g.diff < 0)
            above_sig = g.p_greater() < ALPHA
            tail += f"; lr 0.1, cases that trained − Fixup {g.diff:+.2f} points"
        fails = {c: (int(_failed(arm(sub, lr=0.1, init=c)).sum()), len(arm(sub, lr=0.1, init=c))) for c in ("(c)", "(d)")}
        if all(n for _, n in fails.values()):
            cd = any(0 < f for f, _ in fails.values()) and all(f < n for f, n in fails.values())
            tail += "; failed at lr 0.1: " + ", ".join(f"{c} {f} of {n}" for c, (f, n) in fails.items())
    parts = {"rises with layers at lr 1e-3": rises, "slightly below Fixup at lr 0.1": below,
             "(c), (d) fail for some seeds": cd}
    return Verdict("A7", _combine(parts, reversed_ or above_sig), paper, (text or "no lr-1e-3 runs") + tail, ev,
                   "Spearman of case means; one-sided paired tests; counts of failed seeds", None, None, parts)


def a8(frame, lrs=(1e-3, 0.1)) -> Verdict:
    """A8: Stuart–Maxwell, case (b) against Fixup, per seed: at lr 1e-3 p < 0.01 for most seeds; at
    lr 0.1 p < 0.1 for some but at most half of the seeds (the paper: 2 of 5; untested with fewer
    than 3 seeds).  Refuted if at lr 1e-3 most seeds give p ≥ 0.1 (no difference)."""
    paper = "Stuart–Maxwell, case (b) vs Fixup: p < 0.01 at lr 1e-3; at lr 0.1, p < 0.1 for only 2 of 5 seeds (§4.3)."
    sub = arm(frame, dataset="cifar10")
    used = [arm(sub, lr=lr, init=i) for lr in lrs for i in ("Fixup", "(b)")]
    ev = evidence_of(*used)
    if all(at_chance(u) for u in used if len(u)):
        return _inconclusive("A8", paper, ev, "every run at chance")
    pvals = {}
    for lr in lrs:
        f, b = arm(sub, lr=lr, init="Fixup"), arm(sub, lr=lr, init="(b)")
        bs = {s: r for s, (_, r) in zip(b["seed"], b.iterrows())}
        pvals[lr] = [stuart_maxwell(rf["pred"], bs[s]["pred"], int(rf["num_classes"])).pvalue
                     for s, (_, rf) in zip(f["seed"], f.iterrows()) if s in bs and rf["pred"] is not None]
    lo, hi = pvals.get(1e-3, []), pvals.get(0.1, [])
    part1 = None if not lo else sum(p < 0.01 for p in lo) > len(lo) / 2
    part2 = None if len(hi) < 3 else 0 < sum(p < 0.1 for p in hi) <= len(hi) / 2
    refuted = bool(lo) and sum(p >= 0.1 for p in lo) > len(lo) / 2
    ours = "; ".join(f"lr {lr:g}: p = " + ", ".join(f"{p:.2g}" for p in ps) for lr, ps in pvals.items() if ps)
    return Verdict("A8", _combine({"lr 1e-3": part1, "lr 0.1": part2}, refuted), paper, ours or "no paired runs", ev,
                   "Stuart–Maxwell per seed", None, None, {"p < 0.01 at lr 1e-3": part1, "only some seeds at lr 0.1": part2})


def a9(frame) -> Verdict:
    """A9: CIFAR-100 shows A7's effect: accuracy rises from (a) to (d) at lr 1e-3 (the rule of A7
    part 1).  Refuted if (d) is significantly below (a)."""
    paper = "CIFAR-100 shows the same effect as CIFAR-10 for cases (a) to (d) (Fig. 4, right)."
    sub = arm(frame, dataset="cifar100")
    ev = evidence_of(sub)
    if len(sub) == 0 or at_chance(sub):
        return _inconclusive("A9", paper, ev, "every run at chance")
    rises, reversed_, text = _rises(sub, "cifar100")
    parts = {"rises with layers at lr 1e-3": rises}
    return Verdict("A9", _combine(parts, reversed_), paper, text or "no lr-1e-3 runs", ev,
                   "Spearman of case means; one-sided paired test", None, None, parts)


def a10(frame, choices=None) -> Verdict:
    """A10: at lr 1e-3 the best layer choice beats Kaiming U (one-sided, Bonferroni over the choices,
    p < 0.05) by at most SLIGHT points, while some other choice does not beat it ("only a careful
    choice").  Refuted if even the best choice is significantly below Kaiming U."""
    paper = ("ResNet-18 with BN on CIFAR-10: a weaker effect; only a careful choice of layers slightly beats Kaiming U "
             "at a suboptimal lr (§4.3).")
    sub = arm(frame, lr=1e-3)
    ku = arm(sub, init="Kaiming U")
    choices = choices or sorted(set(sub["init"]) - {"Kaiming U"})
    ev = evidence_of(sub)
    if at_chance(sub):
        return _inconclusive("A10", paper, ev, "every run at chance")
    gaps = {c: gap(ku, arm(sub, init=c)) for c in choices if len(arm(sub, init=c))}
    best = max(gaps, key=lambda c: gaps[c].diff)
    g = gaps[best]
    p_best = min(1.0, g.p_greater() * len(gaps))
    parts = {"best choice slightly beats Kaiming U": bool(g.diff > 0 and p_best < ALPHA and g.diff <= SLIGHT),
             "not every choice does": any(gaps[c].diff <= 0 or gaps[c].p_greater() * len(gaps) >= ALPHA
                                          for c in gaps if c != best) if len(gaps) > 1 else None}
    ours = "; ".join(f"{c}: {gg.diff:+.2f} points" for c, gg in gaps.items()) + f"; best: {g.describe('Kaiming U', best)}"
    return Verdict("A10", _combine(parts, g.p_less() < ALPHA), paper, ours, ev,
                   "one-sided paired test, Bonferroni over the choices", p_best, g.ci(), parts)


def a11() -> Verdict:
    """A11 cannot be tested here: the plant-seedlings data and the paper's fine-tuning setup are not available."""
    return Verdict("A11", "not reproducible",
                   "ImageNet-pretrained ResNet-18 fine-tuned on plant seedlings: altering its weights with patches "
                   "lowers accuracy (§4.3).",
                   "not run: the plant-seedlings dataset is not among the data available here, and no ImageNet "
                   "weights can be loaded without torchvision or a network", Evidence(None))
