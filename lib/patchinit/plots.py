"""Figure style and helpers shared by the chapters (matplotlib; imported only by notebooks).

**The style, in one place.**  The book's text column is about 690 px wide (a 1280 px
window; 790 px on wider screens).  A figure drawn wider is shrunk to fit, and its
labels with it: a 15-inch, 1,500 px figure shown at 690 px has 6 px text.  So every
figure is drawn at most :data:`COLUMN_WIDTH` inches wide at :data:`DPI` dots per inch,
with fonts of 8-10 pt, and is shown at its own size.  :func:`use_book_style` sets this
(a chapter calls it once, in its set-up cell); :func:`panels` lays out n panels in rows
of at most two, so that four side by side never have to be read at a quarter of the
column; :func:`mark_overlaps` makes a curve that lies exactly on another visible.
"""
from __future__ import annotations

import re
from typing import Mapping, Sequence

import numpy as np

#: The widest figure, in inches, that the book shows at its own size (at :data:`DPI`).
COLUMN_WIDTH = 6.8
#: Dots per inch of the book's figures: 100, so a 9 pt label is 12.5 px tall on the page.
DPI = 100
#: The narrowest panel :func:`panels` makes, in inches (two fit in the column).
MIN_PANEL_WIDTH = 3.0

#: matplotlib settings of the book (see the module docstring).
STYLE = {
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
    "figure.figsize": (COLUMN_WIDTH, 3.0),
    "savefig.bbox": "tight",
    "font.size": 9,
    "axes.titlesize": 9.5,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "legend.title_fontsize": 8,
    "legend.framealpha": 0.85,
    "figure.titlesize": 10,
    "lines.linewidth": 1.6,
    "lines.markersize": 4.5,
}


def use_book_style() -> None:
    """Apply :data:`STYLE` to matplotlib (after the notebook's inline backend has set its own)."""
    import matplotlib
    import matplotlib.pyplot as plt  # noqa: F401  (importing pyplot sets the inline backend's defaults first)

    matplotlib.rcParams.update(STYLE)


def panels(n: int, ncols: int | None = None, *, height: float = 2.6, width: float = COLUMN_WIDTH,
           sharex: bool = False, sharey: bool = False):
    """A figure of ``n`` panels that fits the column: ``(fig, axes)``, ``axes`` a flat list of ``n``.

    ``ncols`` defaults to as many :data:`MIN_PANEL_WIDTH`-inch panels as fit in ``width``
    (two in the book's column), so five panels come as three rows of two; surplus axes
    of the last row are removed.  ``height`` is the height of one row, in inches.
    """
    import matplotlib.pyplot as plt

    if n < 1:
        raise ValueError(f"panels needs n >= 1, got {n}")
    if ncols is None:
        ncols = max(1, min(n, int(width // MIN_PANEL_WIDTH)))
    if ncols < 1:
        raise ValueError(f"ncols must be >= 1, got {ncols}")
    nrows = -(-n // ncols)
    fig, grid = plt.subplots(nrows, ncols, figsize=(width, height * nrows), sharex=sharex, sharey=sharey,
                             squeeze=False)
    flat = list(grid.ravel())
    for ax in flat[n:]:
        ax.remove()
    return fig, flat[:n]


def mark_overlaps(ax, atol: float = 1e-6) -> list[tuple[str, str]]:
    """Make each labelled line that lies exactly on an earlier one visible, and say so.

    A line whose points equal those of an earlier labelled line (within ``atol``) is drawn
    dashed on top of it, and its legend label gains "(on top of <the other>)"; otherwise a
    legend names a line the reader cannot see.  Call it before ``ax.legend()``.
    Returns the (line, hidden under) label pairs.
    """
    seen, pairs = [], []
    for line in ax.get_lines():
        label = line.get_label()
        if label.startswith("_"):
            continue
        x, y = np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)
        for other, ox, oy in seen:
            if x.shape == ox.shape and np.allclose(x, ox, atol=atol, equal_nan=True) and \
                    np.allclose(y, oy, atol=atol, equal_nan=True):
                line.set_linestyle((0, (4, 3)))
                line.set_zorder(max(line.get_zorder(), 2.5) + 0.1)
                if line.get_marker() in (None, "None", "", " "):
                    line.set_marker("o")
                    line.set_markevery(max(1, len(x) // 6))
                    line.set_markersize(3.5)
                line.set_label(f"{label} (on top of {re.sub(r' [(]n=[0-9]+[)]$', '', other)})")
                pairs.append((label, other))
                break
        seen.append((label, x, y))
    return pairs


def _to_hwc(img: np.ndarray) -> np.ndarray:
    """(H, W), (H, W, C) or (C, H, W) -> (H, W) or (H, W, 3) for imshow."""
    a = np.asarray(img)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
        a = a.transpose(1, 2, 0)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    return a


def show_images(ax_grid, images: Sequence[np.ndarray], titles: Sequence[str] | None = None,
                symmetric: bool = False, cmap: str = "gray"):
    """Draw images on a grid of axes.

    uint8 images are drawn as they are; float images are rescaled per image to
    [0, 1] (``symmetric=True`` maps 0 to mid-grey, for zero-mean filters).
    """
    axes = np.atleast_1d(ax_grid).ravel()
    for i, ax in enumerate(axes):
        ax.set_axis_off()
        if i >= len(images):
            continue
        a = _to_hwc(images[i])
        if a.dtype != np.uint8:
            a = a.astype(np.float64)
            if symmetric:
                m = np.abs(a).max() or 1.0
                a = 0.5 + 0.5 * a / m
            else:
                lo, hi = a.min(), a.max()
                a = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
        ax.imshow(a, cmap=cmap if a.ndim == 2 else None, vmin=0, vmax=255 if a.dtype == np.uint8 else 1,
                  interpolation="nearest")
        if titles is not None and i < len(titles):
            ax.set_title(titles[i], fontsize=7)
    return axes


def image_grid(images: np.ndarray, titles: Sequence[str] | None = None, ncols: int = 10,
               size: float = 1.0, symmetric: bool = False, suptitle: str | None = None):
    """A figure with ``images`` (N, ...) laid out in rows of ``ncols``."""
    import matplotlib.pyplot as plt

    n = len(images)
    nrows = max(1, -(-n // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * size, nrows * size * 1.1), squeeze=False)
    show_images(axes, list(images), titles, symmetric=symmetric)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    return fig


def examples_per_class(labels: np.ndarray, per_class: int, classes: Sequence[int]) -> np.ndarray:
    """Indices of the first ``per_class`` examples of each class in ``classes``."""
    idx = [np.flatnonzero(labels == c)[:per_class] for c in classes]
    return np.concatenate(idx)


def curves_with_band(ax, curves: Mapping[str, np.ndarray], x: np.ndarray | None = None,
                     ylabel: str = "test accuracy (%)", xlabel: str = "epoch",
                     colors: Mapping[str, str] | None = None):
    """Mean ± std across seeds of each named ``(seeds, epochs)`` array."""
    for name, arr in curves.items():
        arr = np.asarray(arr, dtype=float)
        xs = np.arange(1, arr.shape[1] + 1) if x is None else x
        mean, std = np.nanmean(arr, 0), np.nanstd(arr, 0)
        (line,) = ax.plot(xs, mean, label=f"{name} (n={arr.shape[0]})", color=(colors or {}).get(name))
        ax.fill_between(xs, mean - std, mean + std, color=line.get_color(), alpha=0.2)
    mark_overlaps(ax, atol=1e-3)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if x is None:
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend()
    return ax


def boxes_on_image(ax, image: np.ndarray, boxes: np.ndarray, dropped: np.ndarray | None = None,
                   windows: np.ndarray | None = None, size: int = 3, title: str | None = None):
    """Draw an ``(H, W, C)`` uint8 image with boxes and patch windows on ``ax``.

    ``boxes`` and ``dropped`` are OpenCV ``(x, y, w, h)`` rows (selective search):
    kept boxes solid, dropped ones dashed red.  ``windows`` are ``(row, col)``
    top-left corners of ``size x size`` patches, drawn as small white squares.
    Pixel edges sit at half-integers, so a box covers whole pixels.
    """
    from matplotlib.patches import Rectangle

    ax.imshow(_to_hwc(image), interpolation="nearest")
    colors = ["yellow", "cyan", "lime", "magenta", "orange", "deepskyblue"]
    for i, (x, y, w, h) in enumerate(np.asarray(boxes).reshape(-1, 4)):
        ax.add_patch(Rectangle((x - 0.5, y - 0.5), w, h, fill=False, lw=1.2, ec=colors[i % len(colors)]))
    if dropped is not None:
        for x, y, w, h in np.asarray(dropped).reshape(-1, 4):
            ax.add_patch(Rectangle((x - 0.5, y - 0.5), w, h, fill=False, lw=1.0, ec="red", ls="--"))
    if windows is not None:
        for r, c in np.asarray(windows).reshape(-1, 2):
            ax.add_patch(Rectangle((c - 0.5, r - 0.5), size, size, fill=False, lw=0.7, ec="white"))
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)
    return ax


def accuracy_vs_prune(ax, ours, paper=None, value: str = "test_acc", inits: Sequence[str] | None = None,
                      colors: Mapping[str, str] | None = None) -> None:
    """Final accuracy against prune rate per init (Figs. 5.2, 5.4, 5.6).

    ``ours``: a frame with columns ``prune`` (fraction), ``init`` and ``value`` (several
    seeds per point are drawn as mean with a ±1 std bar); ``paper``: a frame with
    ``prune_pct``, ``init``, ``value`` (and optional ``std``), drawn dashed.
    """
    inits = list(inits or dict.fromkeys(ours["init"]))
    colors = dict(colors or {})
    cycle = iter(["tab:grey", "tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"])
    for init in inits:
        color = colors.setdefault(init, next(cycle))
        g = ours[ours["init"] == init].groupby("prune")[value]
        mean, std = g.mean(), g.std().fillna(0.0)
        ax.errorbar(100 * mean.index.to_numpy(), mean.to_numpy(), yerr=std.to_numpy(), color=color, marker="o",
                    lw=1.8, capsize=3, label=f"{init} (ours)")
        if paper is not None and (paper["init"] == init).any():
            p = paper[paper["init"] == init].sort_values("prune_pct")
            ax.errorbar(p["prune_pct"], p["value"], yerr=p["std"] if "std" in p else None, color=color,
                        marker="s", ls="--", lw=1.2, alpha=0.7, capsize=3, label=f"{init} (thesis)")
    ax.set_xlabel("prune rate (% of weights removed)")
    ax.set_xticks([10, 30, 50, 70, 90])
    ax.grid(alpha=0.3)
