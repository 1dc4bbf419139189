"""Stuart–Maxwell, McNemar and the per-seed paired comparison."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from patchinit.stats import confusion_between, mcnemar, paired_comparison, stuart_maxwell


def preds_from_table(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Prediction pairs whose (A, B) contingency table is ``table``."""
    a, b = [], []
    for i, j in np.ndindex(table.shape):
        a += [i] * int(table[i, j])
        b += [j] * int(table[i, j])
    order = np.random.default_rng(0).permutation(len(a))
    return np.array(a)[order], np.array(b)[order]


def hand_stuart_maxwell(table: np.ndarray) -> float:
    """chi2 = d' S^-1 d over the first K-1 categories (Stuart 1955; Maxwell 1970)."""
    t = table.astype(float)
    k = t.shape[0] - 1
    d = (t.sum(1) - t.sum(0))[:k]
    s = -(t + t.T)[:k, :k]
    np.fill_diagonal(s, (t.sum(1) + t.sum(0) - 2 * np.diag(t))[:k])
    return float(d @ np.linalg.inv(s) @ d)


TABLE = np.array([[20, 10, 2],
                  [3, 25, 5],
                  [4, 6, 30]])


def test_confusion_between():
    a, b = preds_from_table(TABLE)
    assert np.array_equal(confusion_between(a, b, 3), TABLE)
    assert confusion_between(a, b, 5).shape == (5, 5)


def test_stuart_maxwell_matches_hand_computation():
    a, b = preds_from_table(TABLE)
    res = stuart_maxwell(a, b, num_classes=3)
    expected = hand_stuart_maxwell(TABLE)
    assert res.statistic == pytest.approx(expected, rel=1e-10)
    assert res.df == 2 and res.n == TABLE.sum() and res.n_discordant == 30
    assert res.pvalue == pytest.approx(sps.chi2.sf(expected, 2), rel=1e-10)
    assert res.components == 1 and res.note == ""
    # by hand: d = (32-27, 33-41) = (5, -8); S = [[19, -13], [-13, 24]], det 287
    assert res.statistic == pytest.approx(776 / 287, rel=1e-12)
    assert res.pvalue == pytest.approx(math.exp(-776 / 287 / 2))  # chi2(2) sf = exp(-x/2)
    assert not res.significant(0.05)


def test_stuart_maxwell_identical_predictions_no_evidence():
    p = np.random.default_rng(1).integers(0, 10, size=500)
    res = stuart_maxwell(p, p.copy(), num_classes=10)
    assert res.statistic == 0.0 and res.df == 0 and res.pvalue == 1.0
    assert "never disagree" in res.note and not res.significant()


def test_stuart_maxwell_symmetric_disagreement_no_evidence():
    # A says 0 where B says 1 as often as the reverse: margins equal
    a = np.array([0] * 20 + [1] * 20 + [0, 1] * 30)
    b = np.array([1] * 20 + [0] * 20 + [0, 1] * 30)
    res = stuart_maxwell(a, b, 2)
    assert res.statistic == pytest.approx(0.0) and res.pvalue == pytest.approx(1.0)


def test_stuart_maxwell_strong_difference():
    rng = np.random.default_rng(2)
    b = rng.integers(0, 10, size=2000)
    a = b.copy()
    a[rng.random(2000) < 0.3] = 3  # model A over-predicts class 3
    res = stuart_maxwell(a, b, 10)
    assert res.df == 9 and res.pvalue < 1e-20  # sf keeps precision far below 1e-16


def test_stuart_maxwell_absent_classes_are_dropped():
    a, b = preds_from_table(TABLE)
    full = stuart_maxwell(a, b, 3)
    wide = stuart_maxwell(a + 2, b + 2, 10)  # classes 0, 1, 5..9 never predicted
    assert wide.statistic == pytest.approx(full.statistic, rel=1e-10)
    assert wide.df == 2 and wide.pvalue == pytest.approx(full.pvalue, rel=1e-10)
    assert "generalised inverse" in wide.note


def test_stuart_maxwell_disconnected_groups_equal_pseudo_inverse():
    # classes {0,1} and {2,3} are confused only within their group; class 4 always agreed
    table = np.zeros((5, 5), dtype=int)
    table[:2, :2] = [[10, 8], [2, 12]]
    table[2:4, 2:4] = [[7, 1], [6, 9]]
    table[4, 4] = 15
    a, b = preds_from_table(table)
    res = stuart_maxwell(a, b, 5)
    t = table.astype(float)
    d = t.sum(1) - t.sum(0)
    s = -(t + t.T)
    np.fill_diagonal(s, t.sum(1) + t.sum(0) - 2 * np.diag(t))
    assert res.statistic == pytest.approx(float(d @ np.linalg.pinv(s) @ d), rel=1e-8)
    assert res.df == np.linalg.matrix_rank(s) == 2 and res.components == 2
    # each group alone is McNemar without correction: (b - c)^2 / (b + c)
    assert res.statistic == pytest.approx(36 / 10 + 25 / 7, rel=1e-10)


def test_stuart_maxwell_two_classes_is_mcnemar_uncorrected():
    table = np.array([[40, 15], [5, 40]])
    a, b = preds_from_table(table)
    assert stuart_maxwell(a, b, 2).statistic == pytest.approx((15 - 5) ** 2 / 20)


def test_stuart_maxwell_errors():
    with pytest.raises(ValueError, match="same images"):
        stuart_maxwell([0, 1], [0], 2)
    with pytest.raises(ValueError, match="num_classes"):
        stuart_maxwell([0, 3], [0, 1], 3)
    with pytest.raises(ValueError, match="num_classes"):
        stuart_maxwell([0], [0], 1)
    with pytest.raises(ValueError, match="integer"):
        stuart_maxwell([0.5, 1], [0, 1], 2)


def test_mcnemar():
    target = np.zeros(100, dtype=int)
    a = np.zeros(100, dtype=int)
    b = np.zeros(100, dtype=int)
    a[:30] = 1   # A wrong on 30
    b[20:30] = 1  # B wrong on 10 of those, right on the other 20
    res = mcnemar(a, b, target, exact=False)
    assert (res.a_only, res.b_only) == (0, 20)
    assert res.statistic == pytest.approx((20 - 0 - 1) ** 2 / 20)  # continuity corrected
    assert res.pvalue < 1e-3
    exact = mcnemar(a, b, target)
    assert exact.exact and exact.pvalue == pytest.approx(2 * 0.5 ** 20)
    same = mcnemar(a, a, target)
    assert same.pvalue == 1.0 and same.statistic == 0.0


def _right_wrong(a_only: int, b_only: int, both: int = 40, neither: int = 10):
    """Predictions of two models and the target, with ``a_only`` images only A gets right and
    ``b_only`` only B (class 0 is right, class 1 wrong)."""
    a = np.array([0] * both + [0] * a_only + [1] * b_only + [1] * neither)
    b = np.array([0] * both + [1] * a_only + [0] * b_only + [1] * neither)
    return a, b, np.zeros_like(a)


@pytest.mark.parametrize("a_only, b_only, exact", [(5, 19, True), (6, 19, False), (0, 24, True), (8, 17, False)])
def test_mcnemar_switches_to_the_chi2_test_at_25_discordant_images(a_only, b_only, exact):
    """Fewer than 25 discordant images: the exact binomial test, p = 2 P(X <= min) for X ~ Bin(n, 1/2);
    from 25 on: chi2 with continuity correction, (|b - c| - 1)^2 / (b + c) on 1 df."""
    a, b, target = _right_wrong(a_only, b_only)
    n = a_only + b_only
    res = mcnemar(a, b, target)
    assert res.exact is exact and (res.a_only, res.b_only, res.n) == (a_only, b_only, len(target))
    if exact:
        assert res.statistic == min(a_only, b_only)
        assert res.pvalue == pytest.approx(min(1.0, 2 * sps.binom.cdf(min(a_only, b_only), n, 0.5)), rel=1e-9)
    else:
        chi2 = (abs(a_only - b_only) - 1) ** 2 / n
        assert res.statistic == pytest.approx(chi2) and res.pvalue == pytest.approx(sps.chi2.sf(chi2, 1), rel=1e-9)
    # the choice can be forced either way, and then it is the other test's number
    other = mcnemar(a, b, target, exact=not exact)
    assert other.exact is (not exact) and other.pvalue != pytest.approx(res.pvalue, rel=1e-3)


def test_mcnemar_errors():
    with pytest.raises(ValueError, match=r"same length; got 3, 3, 2"):
        mcnemar([0, 1, 1], [0, 1, 0], [0, 1])
    with pytest.raises(ValueError, match=r"same length; got 2, 3, 3"):
        mcnemar([0, 1], [0, 1, 0], [0, 1, 1])
    with pytest.raises(ValueError, match="1-D"):
        mcnemar([[0, 1]], [[0, 1]], [[0, 1]])
    with pytest.raises(ValueError, match="integer class indices"):
        mcnemar([0.5, 1.0], [0, 1], [0, 1])


def test_paired_comparison_hand_example():
    a = np.array([91.0, 92.0, 93.0, 94.0, 95.0])
    b = np.array([90.0, 90.0, 90.0, 90.0, 90.0])
    res = paired_comparison(a, b)
    sd = math.sqrt(2.5)
    assert res.n == 5 and res.mean_diff == pytest.approx(3.0) and res.std_diff == pytest.approx(sd)
    t = 3.0 / (sd / math.sqrt(5))  # = 4.2426
    assert res.t_statistic == pytest.approx(t) and t == pytest.approx(4.242640687)
    assert res.t_pvalue == pytest.approx(2 * sps.t.sf(t, 4))
    assert res.t_pvalue == pytest.approx(sps.ttest_rel(a, b).pvalue)
    half = 2.7764451051977987 * sd / math.sqrt(5)  # t_{0.975, 4}
    assert (res.ci_low, res.ci_high) == (pytest.approx(3 - half), pytest.approx(3 + half))
    assert res.cohens_dz == pytest.approx(3.0 / sd)
    assert res.wilcoxon_pvalue == pytest.approx(2 / 32)  # all 5 positive, exact
    assert res.pvalue == res.t_pvalue
    assert paired_comparison(a, b, test="wilcoxon").pvalue == res.wilcoxon_pvalue
    flipped = paired_comparison(b, a)
    assert flipped.mean_diff == pytest.approx(-3.0) and flipped.t_pvalue == pytest.approx(res.t_pvalue)


def test_paired_comparison_no_difference_has_large_p():
    rng = np.random.default_rng(3)
    a = rng.normal(80, 1, size=20)
    res = paired_comparison(a, a + rng.normal(0, 0.01, size=20))
    assert res.ci_low < 0 < res.ci_high and res.t_pvalue > 0.05


def test_paired_comparison_degenerate_cases():
    one = paired_comparison([90.0], [89.0])
    assert one.n == 1 and one.mean_diff == 1.0
    assert math.isnan(one.t_pvalue) and math.isnan(one.ci_low) and math.isnan(one.cohens_dz)
    assert "n < 2" in one.note
    equal = paired_comparison([91.0, 92.0, 93.0], [90.0, 91.0, 92.0])
    assert equal.std_diff == 0.0 and math.isnan(equal.t_pvalue) and math.isnan(equal.cohens_dz)
    assert equal.ci_low == equal.ci_high == 1.0 and "std 0" in equal.note
    assert equal.wilcoxon_pvalue == pytest.approx(0.25)  # 3 positive differences, exact
    zero = paired_comparison([1.0, 2.0], [1.0, 2.0])
    assert zero.mean_diff == 0.0 and math.isnan(zero.t_pvalue) and math.isnan(zero.wilcoxon_pvalue)
    assert "Wilcoxon undefined" in zero.note


def test_paired_comparison_errors():
    with pytest.raises(ValueError, match="paired"):
        paired_comparison([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="finite"):
        paired_comparison([1.0, float("nan")], [1.0, 2.0])
    with pytest.raises(ValueError, match="test"):
        paired_comparison([1.0, 2.0], [1.0, 3.0], test="sign")
    with pytest.raises(ValueError, match="empty"):
        paired_comparison([], [])


def test_grid_frame_and_thesis_table():
    import pandas as pd

    from patchinit.analysis import grid_frame, thesis_vs_ours

    def rec(acc, secs=None):
        extra = {"init": {"patch": {"conv1": {"time_total": secs}, "conv2": {"time_total": secs}}}} if secs else {}
        return {"metrics": [{"test_acc": 1.0}, {"test_acc": acc, "test_top5": acc + 20}],
                "result": {"diverged_at": None}, "extra": extra}

    grid = [({"model": "conv2", "prune": p, "init": i}, {}) for p in (0.1, 0.5) for i in ("Random", "PatchesInit")]
    frame = grid_frame(grid, [rec(40), rec(45, 1.5), rec(60), rec(58, 2.0)])
    assert list(frame.test_acc) == [40, 45, 60, 58] and list(frame.test_top5) == [60, 65, 80, 78]
    assert frame.init_seconds.isna().tolist() == [True, False, True, False] and frame.init_seconds[3] == 4.0
    paper = pd.DataFrame({"model": "conv2", "metric": "top1", "init": ["Random", "PatchesInit"] * 2,
                          "prune_pct": [10, 10, 50, 50], "value": [48.1, 52.4, 67.3, 70.7]})
    t = thesis_vs_ours(frame, paper)
    assert list(t.index) == [("conv2", "10%"), ("conv2", "50%")]
    assert t[("thesis", "Δ")].round(1).tolist() == [4.3, 3.4] and t[("ours", "Δ")].tolist() == [5.0, -2.0]
    assert t[("ours − thesis", "Random")].round(1).tolist() == [-8.1, -7.3]
    with pytest.raises(ValueError, match="grid rows"):
        grid_frame(grid, [rec(1)])


def test_per_image_comparison_from_stored_records():
    from patchinit.analysis import per_image_comparison
    from patchinit.results import encode_predictions

    y = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    a = np.array([0, 1, 2, 0, 1, 2, 1, 1])   # 7 right
    b = np.array([0, 1, 2, 1, 2, 0, 0, 1])   # 5 right
    row = per_image_comparison({"predictions": encode_predictions(a)}, {"predictions": encode_predictions(b)}, y, 3)
    assert row["acc_a"] == 87.5 and row["acc_b"] == 62.5 and row["disagree"] == 4
    assert (row["a_only_right"], row["b_only_right"]) == (3, 1)
    expected = stuart_maxwell(a, b, 3)
    assert row["stuart_maxwell"] == pytest.approx(expected.statistic) and row["df"] == expected.df
    with pytest.raises(ValueError, match="same test images"):
        per_image_comparison({"predictions": encode_predictions(a)}, {"predictions": encode_predictions(b[:4])}, y, 3)


def test_chance_edge():
    from patchinit.analysis import chance_edge

    assert chance_edge(10, 2000) == pytest.approx(10 + 300 * math.sqrt(0.09 / 2000))
    assert chance_edge(200, 1000, z=0) == pytest.approx(0.5)


def test_metric_matrix_finals_and_diverged_from_records():
    from patchinit.analysis import diverged, finals, metric_matrix

    records = [
        {"metrics": [{"test_acc": 10.0, "test_loss": 2.0}, {"test_acc": 20.0, "test_loss": 1.5},
                     {"test_acc": 30.0, "test_loss": 1.0}], "result": {"diverged_at": None}},
        {"metrics": [{"test_acc": 11.0}, {"test_acc": 9.0, "test_loss": float("nan")}],  # stopped early
         "result": {"diverged_at": 2}},
        {"metrics": [{"test_acc": 50.0, "test_loss": 0.5}], "result": {}},
    ]
    m = metric_matrix(records)
    assert m.shape == (3, 3)
    np.testing.assert_array_equal(m, [[10, 20, 30], [11, 9, np.nan], [50, np.nan, np.nan]])
    loss = metric_matrix(records, "test_loss")
    np.testing.assert_array_equal(loss, [[2.0, 1.5, 1.0], [np.nan, np.nan, np.nan], [0.5, np.nan, np.nan]])
    np.testing.assert_array_equal(finals(records), [30.0, 9.0, 50.0])  # each run's own last epoch
    np.testing.assert_array_equal(finals(records, "test_loss"), [1.0, np.nan, 0.5])
    np.testing.assert_array_equal(finals(iter(records)), [30.0, 9.0, 50.0])  # any iterable
    assert diverged(records).tolist() == [False, True, False]
    assert diverged(records).dtype == bool


def test_layer_output_std_hooks_the_named_layers_and_removes_its_hooks():
    import torch
    import torch.nn as nn

    from patchinit.analysis import layer_output_std

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(48, 2))
    x = torch.randn(5, 1, 6, 6)
    with torch.no_grad():
        conv = model[0](x)
        expected = {"0": float(conv.std()), "1": float(conv.relu().std()), "3": float(model(x).std())}
    out = layer_output_std(model, x, ["0", "1", "3"])
    assert out.keys() == expected.keys()
    for name in expected:
        assert out[name] == pytest.approx(expected[name], rel=1e-6), name
    assert out["1"] < out["0"]  # the ReLU's output is not the conv's
    assert all(not m._forward_hooks for m in model.modules())
    with pytest.raises(RuntimeError):  # a failing forward pass leaves no hook behind either
        layer_output_std(model, torch.randn(2, 1, 5, 5), ["0"])
    assert all(not m._forward_hooks for m in model.modules())
    with pytest.raises(KeyError):
        layer_output_std(model, x, ["conv9"])
