"""Every claim rule, three ways: the source's own numbers (its table, or numbers consistent with its
figure and words) must give "confirmed"; numbers that contradict the claim "refuted" (or "not
confirmed" where the words allow no refutation); runs at chance "inconclusive".  A rule that the
source's own table fails is a bug in the rule."""
import math

import numpy as np
import pandas as pd
import pytest

from patchinit import claims as C
from patchinit.claims import paper
from patchinit.claims.evidence import Gap, chance_edge, gap, pooled

RNG = np.random.default_rng(0)


def preds_with(acc: float, labels: np.ndarray, num_classes: int, rng=RNG) -> np.ndarray:
    """Predictions that are right on exactly round(acc% of n) random images."""
    n = len(labels)
    right = np.zeros(n, bool)
    right[rng.permutation(n)[:int(round(acc / 100 * n))]] = True
    return np.where(right, labels, (labels + 1 + rng.integers(0, num_classes - 1, n)) % num_classes)


def run(init, seed=0, acc=50.0, curve=None, top5=None, num_classes=10, n_test=10_000, tier="exact", diverged=False,
        pred=None, labels=None, train_loss=None, **labels_):
    curve = np.asarray(curve if curve is not None else [acc], float)
    return {"init": init, "seed": seed, "acc": float(curve[-1]), "top5": np.nan if top5 is None else float(np.asarray(top5).ravel()[-1]),
            "loss": np.nan, "diverged": diverged, "tier": tier, "epochs_run": len(curve), "epochs": len(curve),
            "num_classes": num_classes, "n_test": n_test, "pred": pred, "labels": labels, "init_record": {},
            "curve_test_acc": curve, "curve_test_top5": np.asarray(top5 if top5 is not None else [np.nan] * len(curve), float),
            "curve_test_loss": np.full(len(curve), np.nan),
            "curve_train_loss": np.asarray(train_loss if train_loss is not None else np.full(len(curve), np.nan), float),
            **labels_}


def frame(rows):
    return pd.DataFrame(rows)


def noisy(value, sd=0.05, rng=RNG):
    return float(value + rng.normal(0, sd))


# ----------------------------------------------------------------------------- the statistics
def test_chance_edge_is_the_binomial_band():
    assert chance_edge(10, 10_000) == pytest.approx(10 + 300 * math.sqrt(0.09 / 10_000))
    assert chance_edge(100, 10_000, k=5) == pytest.approx(5 + 300 * math.sqrt(0.05 * 0.95 / 10_000))
    with pytest.raises(ValueError, match="num_classes"):
        chance_edge(1, 10)


def test_gap_pairs_by_seed_and_pools_images_when_seeds_are_few():
    y = np.arange(1000) % 10
    a = frame([run("a", s, acc=50, pred=preds_with(50, y, 10), labels=y, n_test=1000) for s in (0, 1)])
    b = frame([run("b", s, acc=60, pred=preds_with(60, y, 10), labels=y, n_test=1000) for s in (1, 0)])
    g = gap(a, b)
    assert g.method == "images" and g.n == 2000
    assert g.diff == pytest.approx(10, abs=0.01) and g.p_greater() < 1e-6 and g.p_less() > 0.99
    three = gap(frame([run("a", s, acc=50 + s) for s in range(3)]), frame([run("b", s, acc=52 + s) for s in range(3)]))
    assert three.method == "seeds" and three.diff == pytest.approx(2) and three.se == pytest.approx(0)
    top5 = gap(frame([run("a", 0, top5=[40])]), frame([run("b", 0, top5=[45])]), "top5")
    assert top5.method == "proportions" and top5.p_greater() < 1e-10


def test_mismatched_test_sets_cannot_be_paired():
    y1, y2 = np.zeros(10, int), np.zeros(12, int)
    with pytest.raises(ValueError, match="different test images"):
        gap(frame([run("a", 0, pred=y1, labels=y1)]), frame([run("b", 0, pred=y2, labels=y1)]))


def test_tost_and_pooling():
    g = Gap(0.1, 0.2, None, "seeds", 5, 90, 90.1)
    assert g.equivalent(1.0) and not g.equivalent(0.2)
    p = pooled([Gap(1, 0, None, "images", 10, 1, 2, (4, 6)), Gap(1, 0, None, "images", 10, 1, 2, (1, 3))])
    assert p.discordant == (5, 9) and p.n == 20


# ----------------------------------------------------------------------------- A1
def mnist_curve(start, end, n=20):
    return np.linspace(start, end, n)


def a1_frame(patch_shift=0.15, level=99.0):
    rows = []
    for s in range(5):
        base = mnist_curve(level - 1.0, level) + RNG.normal(0, 0.03)
        rows += [run("Kaiming U", s, curve=base + 0.05), run("Kaiming N", s, curve=base),
                 run("patch", s, curve=base + patch_shift + RNG.normal(0, 0.03))]
    return frame(rows)


def test_a1_confirmed_refuted_inconclusive():
    assert C.a1(a1_frame()).verdict == "confirmed"
    assert C.a1(a1_frame(patch_shift=-0.5)).verdict == "refuted"
    assert C.a1(a1_frame(level=10.0, patch_shift=0.0)).verdict == "inconclusive"


def test_a1_tracking_needs_every_epoch():
    f = a1_frame()
    f["curve_test_acc"] = [c + np.r_[3.0, np.zeros(19)] if i == "patch" else c for i, c in zip(f.init, f.curve_test_acc)]
    v = C.a1(f)
    assert v.parts["tracks"] is False and v.verdict == "not confirmed"


# ----------------------------------------------------------------------------- A2, A5
def fixup_frame(fix, patch, lr=0.1, sd=0.2, dataset="cifar10"):
    return frame([r for s in range(5) for r in (run("Fixup", s, acc=noisy(fix, sd), lr=lr, dataset=dataset),
                                                run("(a)", s, acc=noisy(patch, sd), lr=lr, dataset=dataset))])


def test_a2_similar_is_an_equivalence_test():
    assert C.a2(fixup_frame(92.0, 92.1)).verdict == "confirmed"
    assert C.a2(fixup_frame(92.0, 85.0)).verdict == "refuted"
    assert C.a2(fixup_frame(10.0, 10.0, sd=0.01)).verdict == "inconclusive"
    # a mean gap near zero with a wide interval is not "similar" (the old rule said confirmed)
    assert C.a2(fixup_frame(50.0, 50.5, sd=8.0)).verdict == "not confirmed"


def test_a5():
    assert C.a5(fixup_frame(80.0, 81.0, lr=1e-3), mnist_gap=2.0).verdict == "confirmed"
    assert C.a5(fixup_frame(80.0, 78.0, lr=1e-3), mnist_gap=2.0).verdict == "refuted"
    assert C.a5(fixup_frame(10.0, 10.0, lr=1e-3, sd=0.01)).verdict == "inconclusive"
    assert C.a5(fixup_frame(80.0, 83.5, lr=1e-3), mnist_gap=2.0).parts["weaker than MNIST"] is False


# ----------------------------------------------------------------------------- A3, A4
A3_PAPER = {0.01: (99.0, 99.0), 1e-3: (98.6, 98.0), 1e-4: (96.0, 92.0), 1e-5: (85.0, 60.0)}


def a3_frame(table=A3_PAPER, early_gap=2.0, lr01_trains=False, level=None):
    rows = []
    for s in range(5):
        for lr, (p, u) in table.items():
            if level is not None:
                p = u = level
            cu = np.linspace(u - 10 if u > 20 else u, u, 20) + RNG.normal(0, 0.05)
            gap_curve = np.linspace((p - u) * early_gap, p - u, 20) + RNG.normal(0, 0.05, 20)
            rows += [run("Kaiming U", s, curve=cu, lr=lr), run("patch", s, curve=cu + gap_curve, lr=lr)]
        acc01 = 98.0 if lr01_trains else 9.8
        rows += [run(i, s, acc=acc01, curve=np.full(20, acc01), lr=0.1, diverged=not lr01_trains)
                 for i in ("patch", "Kaiming U")]
    return frame(rows)


def test_a3_confirmed_refuted_inconclusive():
    assert C.a3(a3_frame()).verdict == "confirmed"
    worse = {lr: (u, p) for lr, (p, u) in A3_PAPER.items()}
    assert C.a3(a3_frame(worse)).verdict == "refuted"
    assert C.a3(a3_frame(lr01_trains=True)).verdict == "refuted"
    assert C.a3(a3_frame(level=10.0)).verdict == "inconclusive"


def test_a3_first_half_compares_the_halves():
    # the gap grows during training: it is not "most visible in the first half" (the old rule confirmed this)
    v = C.a3(a3_frame(early_gap=0.2))
    assert v.parts["most visibly in the first half"] is False and v.verdict == "not confirmed"


def a4_frame(gap_points=0.3, level=98.5):
    rows = []
    for s in range(5):
        for setting in ("momentum 0.8", "momentum 0.5", "weight decay 5e-05", "weight decay 0.05"):
            u = noisy(level, 0.1)
            rows += [run("Kaiming U", s, acc=u, setting=setting), run("patch", s, acc=noisy(u + gap_points, 0.05), setting=setting)]
    return frame(rows)


def test_a4():
    assert C.a4(a4_frame(), a3_gap=5.0).verdict == "confirmed"
    assert C.a4(a4_frame(gap_points=-0.5), a3_gap=5.0).verdict == "refuted"
    assert C.a4(a4_frame(level=10.0, gap_points=0.0)).verdict == "inconclusive"
    assert C.a4(a4_frame(gap_points=6.0), a3_gap=5.0).verdict == "not confirmed"  # larger than A3's gap


# ----------------------------------------------------------------------------- A6
def a6_frame(one, two, sd=0.05):
    both = "patch (conv1 + conv2, activations)"
    return frame([r for s in range(5) for r in (run("patch", s, acc=noisy(one, sd)), run(both, s, acc=noisy(two, sd)))])


def test_a6():
    assert C.a6(a6_frame(99.0, 98.7)).verdict == "confirmed"
    assert C.a6(a6_frame(99.0, 99.3)).verdict == "refuted"
    assert C.a6(a6_frame(10.0, 10.0, sd=0.01)).verdict == "inconclusive"
    assert C.a6(a6_frame(99.0, 90.0)).verdict == "not confirmed"  # worse, but not slightly


# ----------------------------------------------------------------------------- A7, A9
def cases_frame(means_1e3, dataset="cifar10", fails=None, level=None, classes=10):
    fails = fails if fails is not None else {"(c)": 2, "(d)": 1}
    rows = []
    for s in range(5):
        for case, m in zip(C.method_a.CASES, means_1e3):
            acc = level if level is not None else noisy(m, 0.2)
            rows.append(run(case, s, acc=acc, lr=1e-3, dataset=dataset, num_classes=classes))
        rows.append(run("Fixup", s, acc=level or noisy(92.0, 0.1), lr=0.1, dataset=dataset, num_classes=classes))
        for case, m in zip(C.method_a.CASES, (91.8, 91.6, 91.5, 91.4)):
            failed = s < fails.get(case, 0)
            acc = level if level is not None else (10.0 if failed else noisy(m, 0.1))
            rows.append(run(case, s, acc=acc, lr=0.1, dataset=dataset, diverged=failed, num_classes=classes))
    return frame(rows)


def test_a7():
    assert C.a7(cases_frame((80, 81, 82, 83))).verdict == "confirmed"
    assert C.a7(cases_frame((83, 82, 81, 80))).verdict == "refuted"
    assert C.a7(cases_frame((80, 81, 82, 83), level=10.0)).verdict == "inconclusive"


def test_a7_some_seeds_fail_means_neither_none_nor_all():
    every = C.a7(cases_frame((80, 81, 82, 83), fails={"(c)": 5, "(d)": 5}))
    none = C.a7(cases_frame((80, 81, 82, 83), fails={}))
    assert every.parts["(c), (d) fail for some seeds"] is False and every.verdict == "not confirmed"
    assert none.parts["(c), (d) fail for some seeds"] is False


def test_a9():
    assert C.a9(cases_frame((40, 41, 42, 43), "cifar100", classes=100)).verdict == "confirmed"
    assert C.a9(cases_frame((43, 42, 41, 40), "cifar100", classes=100)).verdict == "refuted"
    assert C.a9(cases_frame((40, 41, 42, 43), "cifar100", level=1.0, classes=100)).verdict == "inconclusive"


# ----------------------------------------------------------------------------- A8
def a8_frame(shift_1e3=True, shifted_01=2, chance=False, n=2000):
    y = np.arange(n) % 10
    rows = []
    for s in range(5):
        rng = np.random.default_rng(s)
        for lr in (1e-3, 0.1):
            fix = preds_with(10 if chance else 80, y, 10, rng)
            b = fix.copy()
            shifted = shift_1e3 if lr == 1e-3 else s < shifted_01
            if chance:
                b = rng.integers(0, 10, n)
            elif shifted:  # (b) moves some of its answers to class 0: different class proportions
                idx = rng.permutation(n)[:300]
                b[idx] = 0
            else:  # a few swaps that keep the proportions
                idx = rng.permutation(n)[:20]
                b[idx] = b[np.roll(idx, 1)]
            acc_f, acc_b = 100 * np.mean(fix == y), 100 * np.mean(b == y)
            rows += [run("Fixup", s, acc=acc_f, pred=fix, labels=y, lr=lr, dataset="cifar10", n_test=n),
                     run("(b)", s, acc=acc_b, pred=b, labels=y, lr=lr, dataset="cifar10", n_test=n)]
    return frame(rows)


def test_a8():
    assert C.a8(a8_frame()).verdict == "confirmed"
    assert C.a8(a8_frame(shift_1e3=False)).verdict == "refuted"
    assert C.a8(a8_frame(chance=True)).verdict == "inconclusive"
    assert C.a8(a8_frame(shifted_01=5)).parts["only some seeds at lr 0.1"] is False


# ----------------------------------------------------------------------------- A10, A11
def a10_frame(choices=(("stem", 85.8), ("stem + layer1", 84.9), ("stem + every stage", 84.0)), ku=85.0, level=None):
    rows = []
    for s in range(5):
        rows.append(run("Kaiming U", s, acc=level or noisy(ku, 0.1), lr=1e-3))
        rows += [run(c, s, acc=level or noisy(m, 0.1), lr=1e-3) for c, m in choices]
    return frame(rows)


def test_a10_a11():
    assert C.a10(a10_frame()).verdict == "confirmed"
    assert C.a10(a10_frame(choices=(("stem", 83.0), ("stem + layer1", 82.0)))).verdict == "refuted"
    assert C.a10(a10_frame(level=10.0)).verdict == "inconclusive"
    assert C.a10(a10_frame(choices=(("stem", 86.0), ("stem + layer1", 86.0)))).parts["not every choice does"] is False
    assert C.a11().verdict == "not reproducible" and not C.a11().evidence.tier


# ----------------------------------------------------------------------------- method B: the thesis's tables
def table_frame(dataset: str, metric: str, n=10_000, swap=False, level=None, seeds=1, rng=RNG):
    t = paper.method_b_accuracy()
    t = t[(t.dataset == dataset)]
    classes = {"CIFAR-10": 10, "CIFAR-100": 100, "TinyImageNet-200": 200}[dataset]
    name = {"CIFAR-10": "cifar10", "CIFAR-100": "cifar100", "TinyImageNet-200": "tinyimagenet"}[dataset]
    y = np.arange(n) % classes
    rows = []
    for (model, prune, init), cell in t.groupby(["model", "prune", "init"]):
        if swap and init in ("Random", "PatchesInit"):
            init = {"Random": "PatchesInit", "PatchesInit": "Random"}[init]
        top1 = cell[cell.metric == "top1"]["value"]
        top5 = cell[cell.metric == "top5"]
        std = float(top5["std"].iloc[0]) if len(top5) and top5["std"].notna().all() else 0.5
        for s in range(seeds):
            acc = level if level is not None else (float(top1.iloc[0]) if len(top1) else 50.0)
            t5 = level if level is not None else (float(top5["value"].iloc[0]) + rng.normal(0, std) if len(top5) else np.nan)
            pred = preds_with(acc, y, classes, rng) if seeds == 1 else None
            rows.append(run(init, s, acc=acc, top5=[t5], pred=pred, labels=y if seeds == 1 else None, n_test=n,
                            num_classes=classes, model=model, prune=prune, dataset=name))
    return frame(rows)


def test_b1_on_the_thesis_tables():
    assert C.b1(table_frame("CIFAR-10", "top1")).verdict == "confirmed"
    assert C.b1(table_frame("CIFAR-10", "top1", swap=True)).verdict == "refuted"
    assert C.b1(table_frame("CIFAR-10", "top1", level=10.0)).verdict == "inconclusive"


def test_b3_on_the_thesis_tables():
    f = table_frame("CIFAR-100", "top5", seeds=3)
    v = C.b3(f)
    assert v.verdict == "confirmed", v.ours
    assert C.b3(table_frame("CIFAR-100", "top5", seeds=3, swap=True)).verdict == "refuted"
    assert C.b3(table_frame("CIFAR-100", "top5", seeds=3, level=1.0)).verdict in ("inconclusive", "not confirmed")


def test_b5_on_table_5_2_including_its_minus_0_2_cell():
    f = table_frame("TinyImageNet-200", "top1")
    assert C.b5(f).verdict == "confirmed"
    f2 = f.copy()
    f2["init"] = f2["init"].map({"Random": "PatchesInit", "PatchesInit": "Random", "Partial-PatchesInit": "Partial-PatchesInit"})
    assert C.b5(f2).verdict == "refuted"
    assert C.b5(table_frame("TinyImageNet-200", "top1", level=0.5)).verdict == "inconclusive"


def early_frame(dataset, random1, patch1, metric="acc", classes=10, seeds=3, epochs=5):
    rows = []
    for s in range(seeds):
        for init, start in (("Random", random1), ("PatchesInit", patch1)):
            curve = np.linspace(start, start + (20 if start > 20 else 0), epochs) + RNG.normal(0, 0.5, epochs)
            loss = np.linspace(2.0, 1.2, epochs)
            kw = {"curve": curve} if metric == "acc" else {"curve": curve / 3, "top5": curve}
            rows.append(run(init, s, num_classes=classes, dataset=dataset, model="conv6", prune=0.5, train_loss=loss, **kw))
    return frame(rows)


def test_b2():
    assert C.b2(early_frame("cifar10", 12.0, 45.0)).verdict == "confirmed"
    assert C.b2(early_frame("cifar10", 12.0, 15.0)).verdict == "refuted"
    assert C.b2(early_frame("cifar10", 10.0, 10.0, epochs=1)).verdict == "inconclusive"
    one = C.b2(early_frame("cifar10", 12.0, 45.0, epochs=1))
    assert one.verdict == "confirmed" and one.parts["loss falls at every epoch"] is None  # epoch 1 only: untested part


def test_b2_reads_its_curve_over_the_runs_that_went_furthest():
    # seeds 0 and 1 extended to epoch 5, seed 2 still at epoch 1: the epoch-1 lead uses all 3 seeds,
    # the curve parts the 2 seeds with 5 epochs.
    f = early_frame("cifar10", 12.0, 45.0)
    short = f["seed"] == 2
    for col in ("curve_test_acc", "curve_train_loss", "curve_test_top5", "curve_test_loss"):
        f.loc[short, col] = pd.Series([c[:1] for c in f.loc[short, col]], index=f.index[short])
    f.loc[short, "epochs_run"] = 1
    v = C.b2(f)
    assert v.evidence.seeds == 3 and v.evidence.epochs_run == 1
    assert v.parts["converges faster (ahead at every epoch)"] is True and v.parts["loss falls at every epoch"] is True
    assert "epochs 1–5 observed (2 seeds per arm)" in v.ours and v.verdict == "confirmed"
    # Random overtakes PatchesInit by epoch 5: it does not converge faster, and B2 is refuted
    late = f.copy()
    late["curve_test_acc"] = [c if i == "PatchesInit" else np.linspace(12.0, 70.0, len(c)) for c, i in zip(late["curve_test_acc"], late["init"])]
    late.loc[short, "curve_test_acc"] = pd.Series([c[:1] for c in late.loc[short, "curve_test_acc"]], index=late.index[short])
    assert C.b2(late).parts["converges faster (ahead at every epoch)"] is False and C.b2(late).verdict == "refuted"
    # behind by 0.2 points after epoch 5 (2 seeds x 10,000 images): not significantly behind, so not refuted
    close = f.copy()
    close["curve_test_acc"] = [np.array([45.0, 50, 55, 60, 65.0] if i == "PatchesInit" else [12.0, 30, 45, 55, 65.2])[:len(c)]
                               for c, i in zip(close["curve_test_acc"], close["init"])]
    close["acc"] = [c[-1] for c in close["curve_test_acc"]]
    v = C.b2(close)
    assert v.parts["converges faster (ahead at every epoch)"] is False and v.verdict == "not confirmed"
    assert "ahead at 4 of 5 epochs" in v.ours and "after epoch 5: PatchesInit − Random = -0.20" in v.ours


def test_at_epoch_pairs_on_the_predictions_a_longer_record_kept():
    from patchinit.claims.evidence import at_epoch

    y = RNG.integers(0, 10, 2000)
    rows = []
    for s in range(2):
        for init, acc in (("Random", 12.0), ("PatchesInit", 30.0)):
            r = run(init, s, curve=[acc, acc + 10], pred=preds_with(acc + 10, y, 10), labels=y, n_test=len(y))
            r["prefix_pred"] = {1: preds_with(acc, y, 10)}
            rows.append(r)
    g = gap(*(at_epoch(frame(rows)[lambda d, i=i: d["init"] == i], 1) for i in ("Random", "PatchesInit")))
    assert g.method == "images" and abs(g.diff - 18.0) < 0.5
    without = frame(rows).drop(columns="prefix_pred")
    assert gap(*(at_epoch(without[without["init"] == i], 1) for i in ("Random", "PatchesInit"))).method == "proportions"


def test_b2_sensitivity_judges_each_reading_against_the_same_random_runs():
    lo, hi = early_frame("cifar10", 12.0, 20.0, epochs=1), early_frame("cifar10", 12.0, 45.0, epochs=1)
    lo["reading"], hi["reading"] = "fan (a priori)", "variance-preserving (ours)"
    both = pd.concat([lo, hi[hi["init"] == "PatchesInit"]], ignore_index=True)
    both.loc[both["init"] == "Random", "reading"] = None
    table = C.b2_sensitivity(both).set_index("reading")
    assert list(table.index) == ["fan (a priori)", "variance-preserving (ours)"]
    assert table.loc["fan (a priori)", "a priori"] and not table.loc["variance-preserving (ours)", "a priori"]
    assert table.loc["fan (a priori)", "verdict"] == "refuted"                 # about 8 points ahead, not 28
    assert table.loc["variance-preserving (ours)", "verdict"] == "confirmed"   # about 33 points ahead
    assert 30 < table.loc["variance-preserving (ours)", "lead over Random (points)"] < 36
    assert (table["seeds"] == 3).all() and (table["tier"] == "exact").all()


def test_b4():
    assert C.b4(early_frame("cifar100", 20.0, 44.0, "top5", 100)).verdict == "confirmed"
    assert C.b4(early_frame("cifar100", 20.0, 22.0, "top5", 100)).verdict == "refuted"
    assert C.b4(early_frame("cifar100", 5.0, 5.0, "top5", 100, epochs=1)).verdict == "inconclusive"


def pc_frames(reverse=False, level=None):
    t = paper.method_b_pc_ablation()
    rows = []
    for _, r in t.iterrows():
        top5 = level if level is not None else r["top5"]
        rows.append(run("SimpleInit" if r["C"] is None else "PatchesInit", 0, top5=[top5], num_classes=100, prune=r["prune"],
                        P=r["P"], C=r["C"], row=r["patches_P"]))
    f = frame(rows)
    if reverse:  # larger P better: the rows above 50k score higher
        for prune in set(f.prune):
            m = (f.prune == prune) & f.C.notna()
            f.loc[m, "top5"] = sorted(f.loc[m, "top5"])
    timing = t[t.prune == 0.5].assign(init=lambda d: ["SimpleInit" if c is None else "PatchesInit" for c in d.C],
                                      seconds=lambda d: 60 * d.init_minutes)[["init", "P", "seconds"]]
    return f, timing


def test_b6_on_tables_5_3_8_10_8_11():
    f, timing = pc_frames()
    v = C.b6(f, timing)
    assert v.verdict == "confirmed", (v.parts, v.ours)
    f2, _ = pc_frames(reverse=True)
    assert C.b6(f2, timing).verdict == "refuted"
    f3, _ = pc_frames(level=5.0)
    assert C.b6(f3, timing).verdict == "inconclusive"
    slow = timing.assign(seconds=lambda d: np.where(d.init == "PatchesInit", d.P.astype(float) ** 2 / 1e6, 120.0))
    assert C.b6(None, slow).verdict == "refuted"  # init time growing with P squared


def test_b7_on_table_5_4():
    t = paper.method_b_entropy()
    e = t[t.clusters_C.isin(["SimpleInit", "500"])].assign(init=lambda d: np.where(d.clusters_C == "SimpleInit", "SimpleInit", "PatchesInit"))
    assert C.b7(e).verdict == "confirmed"
    flipped = e.assign(init=lambda d: np.where(d.init == "SimpleInit", "PatchesInit", "SimpleInit"))
    assert C.b7(flipped).verdict == "refuted"
    flat = e.assign(mean_entropy_bits=5.5)
    assert C.b7(flat).verdict == "refuted"  # no drop in layer 6


def d_frame(swap=False, level=None):
    t = paper.method_b_d_ablation()
    rows = []
    for _, r in t.iterrows():
        sel = r["selection"]
        if swap:
            sel = {"5C-1D": "0C-6D", "0C-6D": "5C-1D"}.get(sel, sel)
        rows.append(run("PatchesInit", 0, top5=[level if level is not None else r["top5"]], num_classes=100,
                        prune=r["prune"], row=sel))
    return frame(rows)


def test_b8_on_tables_5_5_8_12_8_13():
    assert C.b8(d_frame()).verdict == "confirmed"
    assert C.b8(d_frame(swap=True)).verdict == "refuted"
    assert C.b8(d_frame(level=5.0)).verdict == "inconclusive"


def b9_frame(pi=66.0, level=None):
    means = {"Kaiming normal": 70.0, "Kaiming uniform": 68.0, "PatchesInit": pi, "Xavier normal": 62.0, "Xavier uniform": 60.0}
    rows = []
    for model in ("conv2", "conv4", "conv6"):
        for prune in (0.1, 0.3, 0.5, 0.7, 0.9):
            for s in range(3):
                for init, m in means.items():
                    spread = 1.5 if init.startswith("Kaiming") else 0.3
                    rows.append(run(init, s, top5=[level if level is not None else m + spread * (s - 1)], num_classes=100,
                                    model=model, prune=prune, dataset="cifar100"))
    return frame(rows)


def test_b9():
    assert C.b9(b9_frame()).verdict == "confirmed"
    assert C.b9(b9_frame(pi=72.0)).verdict == "refuted"
    assert C.b9(b9_frame(level=5.0)).verdict == "inconclusive"


def b10_frame(gaps=(1.2, 1.0, -1.5), level=None, n=10_000):
    y = np.arange(n) % 200
    rows = []
    for prune in (0.1, 0.3, 0.5, 0.7):
        base = level if level is not None else 50.0
        rows.append(run("Random", 0, acc=base, pred=preds_with(base, y, 200), labels=y, num_classes=200, n_test=n,
                        prune=prune, blocks=0))
        for b, g in enumerate(gaps, 1):
            acc = level if level is not None else base + g
            rows.append(run(f"Partial {b}", 0, acc=acc, pred=preds_with(acc, y, 200), labels=y, num_classes=200,
                            n_test=n, prune=prune, blocks=b))
    return frame(rows)


def test_b10():
    assert C.b10(b10_frame()).verdict == "confirmed"
    assert C.b10(b10_frame(gaps=(-1.5, 1.0, -1.5))).verdict == "refuted"
    assert C.b10(b10_frame(level=0.5)).verdict == "inconclusive"


# ----------------------------------------------------------------------------- verdicts render without None/nan
def test_verdict_box_never_prints_none_and_names_its_tier():
    v = C.a1(a1_frame())
    text = v._repr_markdown_()
    assert "None" not in text and "nan" not in text and "tier: exact" in text
    quick = C.a1(a1_frame().assign(tier="quick"))
    assert not quick.stated() and "not evidence" in quick._repr_markdown_()
    with pytest.raises(ValueError, match="verdict must be one of"):
        C.Verdict("X", "maybe", "", "", C.Evidence("exact"))


def test_a1_leaves_out_a_diverged_seed_and_says_so():
    f = a1_frame()
    i = f.index[(f.init == "Kaiming N") & (f.seed == 0)][0]
    f.at[i, "diverged"] = True
    f.at[i, "acc"] = 9.74
    f.at[i, "curve_test_acc"] = np.full(20, 9.74)
    v = C.a1(f)
    assert v.verdict == "confirmed" and "Kaiming N diverged in 1 of 5 seeds" in v.note


# ----------------------------------------------------------------------------- tiers on fewer seeds
class _SeedStore:
    """A store holding, for each arm, the runs of the listed seeds."""

    def __init__(self, stored):
        self.stored = stored

    def get(self, cfg, min_epochs=None):
        return {"seed": cfg["seed"]} if cfg["seed"] in self.stored[cfg["arm"]] else None


def test_a_tier_may_rest_on_its_first_seeds_but_never_on_a_chosen_few(monkeypatch):
    from patchinit import experiment
    from patchinit.claims.sources import Source, seed_prefix

    monkeypatch.setattr(experiment, "identify", lambda cfg: cfg)
    grid = [({"init": arm, "seed": s}, {"arm": arm, "seed": s}) for arm in ("a", "b") for s in range(5)]
    source = Source("exact", "paper", lambda p: grid, min_seeds=3)

    def seeds(stored):
        sub, records = seed_prefix(_SeedStore(stored), grid, source)
        return None if records is None else sorted({row["seed"] for row, _ in sub})

    assert seeds({"a": {0, 1, 2, 3}, "b": {0, 1, 2, 3, 4}}) == [0, 1, 2, 3]
    assert seeds({"a": {0, 1, 2, 4}, "b": {0, 1, 2, 3, 4}}) == [0, 1, 2]      # seed 4 is not the next one
    assert seeds({"a": {1, 2, 3, 4}, "b": {0, 1, 2, 3, 4}}) is None           # seeds 1-4 are not the first four
    assert seeds({"a": {0, 1}, "b": {0, 1}}) is None                          # fewer than min_seeds
    assert seed_prefix(_SeedStore({"a": {0, 1, 2}, "b": {0, 1, 2}}), grid, Source("exact", "paper", lambda p: grid))[1] is None
    shown = C.Evidence("exact", seeds=3, epochs_run=20, epochs=20, n_test=10_000, runs=48, seeds_of=5).describe()
    assert "the first 3 of 5 seeds per arm" in shown
