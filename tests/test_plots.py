"""The figure helpers draw what they are given (checked on the Agg backend)."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from patchinit.plots import accuracy_vs_prune, curves_with_band  # noqa: E402


def test_accuracy_vs_prune_means_seeds_and_adds_thesis_lines():
    ours = pd.DataFrame({"prune": [0.1, 0.1, 0.5, 0.5, 0.1, 0.5], "init": ["A", "A", "A", "A", "B", "B"],
                         "test_acc": [10.0, 20.0, 30.0, 50.0, 12.0, 14.0]})
    paper = pd.DataFrame({"prune_pct": [10, 50], "init": ["A", "A"], "value": [11.0, 41.0]})
    fig, ax = plt.subplots()
    accuracy_vs_prune(ax, ours, paper, inits=["A", "B"], colors={"A": "red"})
    handles, labels = ax.get_legend_handles_labels()
    lines = {label: h[0] for h, label in zip(handles, labels)}  # an errorbar container's data line
    assert set(lines) == {"A (ours)", "B (ours)", "A (thesis)"}
    xy = lambda line: np.asarray([line.get_xdata(), line.get_ydata()], dtype=float)  # noqa: E731
    np.testing.assert_allclose(xy(lines["A (ours)"]), [[10, 50], [15, 40]])  # mean over seeds, % axis
    np.testing.assert_allclose(xy(lines["A (thesis)"])[1], [11, 41])
    assert lines["A (ours)"].get_color() == "red"
    plt.close(fig)


def test_curves_with_band_uses_given_colours():
    fig, ax = plt.subplots()
    curves_with_band(ax, {"x": np.array([[1.0, 2.0], [3.0, 4.0]])}, colors={"x": "green"})
    (line,) = ax.get_lines()
    np.testing.assert_allclose(line.get_ydata(), [2, 3])
    assert line.get_color() == "green" and line.get_label() == "x (n=2)"
    plt.close(fig)
