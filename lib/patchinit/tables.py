"""How the book prints a table: numbers to a few significant figures, "—" for a missing cell.

pandas prints a float index as ``0.100000`` and ``0.000010`` and a missing cell as
``NaN``.  :func:`show` returns a :class:`pandas.io.formats.style.Styler` that
prints float labels (index and columns) with :func:`sig`, float cells with a fixed
number of decimals (or a format per column), and missing cells as :data:`MISSING`::

    show(table, 2)                                  # cells to 2 decimals
    show(table, 2, formats={"p": "{:.2g}"})         # one column as 2 significant figures
    show(table, 1, caption="Table 8.1: ...")

:func:`use_book_tables` sets pandas' Styler defaults the same way, so a chapter's own
``df.style.format(...)`` prints "—" too.  The book's CSS (``_static/tables.css``)
puts every output table in its own scroll box.
"""
from __future__ import annotations

import html
import math
import numbers
import re
from typing import Callable, Mapping

import numpy as np
from pandas.io.formats.style import Styler

__all__ = ["MISSING", "sig", "show", "use_book_tables", "is_missing", "BookStyler"]

#: What a missing cell prints as.
MISSING = "—"


def is_missing(x) -> bool:
    """True for None, NaN, pandas' NA and NaT."""
    if x is None:
        return True
    try:
        import pandas as pd

        result = pd.isna(x)
    except (TypeError, ValueError):
        return False
    return bool(result) if np.ndim(result) == 0 else False


def _tidy_exponent(text: str) -> str:
    """``1e-05`` -> ``1e-5``, ``2.5e+06`` -> ``2.5e6``."""
    return re.sub(r"e([+-])0*(\d+)", lambda m: f"e{'-' if m.group(1) == '-' else ''}{m.group(2)}", text)


def sig(x, digits: int = 3, na: str = MISSING) -> str:
    """``x`` with at most ``digits`` significant figures, as a person writes it.

    ``0.1`` -> ``0.1``, ``1e-05`` -> ``1e-5``, ``0.0005`` -> ``0.0005``, ``12.345`` -> ``12.3``,
    ``123456.0`` -> ``123,456`` (a number with more integer digits than ``digits`` keeps them all);
    integers print whole, missing values print ``na``, anything else as ``str(x)``.
    """
    if digits < 1:
        raise ValueError(f"digits must be >= 1, got {digits}")
    if is_missing(x):
        return na
    if isinstance(x, (bool, np.bool_)):
        return str(bool(x))
    if isinstance(x, numbers.Integral):
        return f"{int(x):,}"
    if isinstance(x, numbers.Real):
        f = float(x)
        if math.isinf(f):
            return "∞" if f > 0 else "−∞"
        if f == 0:
            return "0"
        if f.is_integer() and abs(f) < 1e15:
            return f"{int(f):,}"
        if abs(f) >= 10 ** digits:
            return f"{f:,.0f}"
        return _tidy_exponent(f"{f:.{digits}g}")
    return str(x)


def _label_formatter(digits: int) -> Callable:
    def fmt(label):
        if isinstance(label, (float, np.floating)):
            return sig(label, digits)
        return MISSING if is_missing(label) else str(label)
    return fmt


class BookStyler(Styler):
    """A Styler whose HTML puts the caption above the table's own scroll box.

    A ``<caption>`` is as wide as its table, so the caption of a table wider than the
    column would scroll out of sight with it.  Here the caption is a paragraph outside
    the box that scrolls (``div.pi-table-scroll``), so it is always read in full.
    """

    def _repr_html_(self) -> str:
        caption, self.caption = self.caption, None
        try:
            body = self.to_html()
        finally:
            self.caption = caption
        head = f'<p class="pi-table-caption">{html.escape(str(caption))}</p>' if caption else ""
        return f'<div class="pi-table">{head}<div class="pi-table-scroll">{body}</div></div>'


def show(frame, precision: int = 2, *, formats: Mapping[str, str | Callable] | None = None,
         caption: str | None = None, na: str = MISSING, label_digits: int = 3, hide_index: bool = False):
    """A :class:`~pandas.io.formats.style.Styler` of ``frame`` (a DataFrame or Series) for the book.

    Float cells get ``precision`` decimals, or the format of their column in ``formats``
    (a format string such as ``"{:.2g}"``, or a function); missing cells print ``na``;
    float index and column labels print with ``label_digits`` significant figures
    (:func:`sig`).  ``caption`` is printed above the table, outside its scroll box
    (:class:`BookStyler`).
    """
    import pandas as pd

    if isinstance(frame, pd.Series):
        frame = frame.to_frame()
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"show() takes a pandas DataFrame or Series, got {type(frame).__name__}")
    if precision < 0:
        raise ValueError(f"precision must be >= 0, got {precision}")
    formats = dict(formats or {})
    unknown = [c for c in formats if c not in frame.columns]
    if unknown:
        raise KeyError(f"formats names column(s) {unknown} that the table does not have; it has {list(frame.columns)}")
    styler = BookStyler(frame).format(precision=precision, na_rep=na)
    for column, fmt in formats.items():
        styler = styler.format(fmt, subset=[column], na_rep=na)
    label = _label_formatter(label_digits)
    for axis, index in ((0, frame.index), (1, frame.columns)):
        for level in range(index.nlevels):
            values = index.get_level_values(level)
            if pd.api.types.is_float_dtype(values.dtype) or any(isinstance(v, float) for v in values):
                styler = styler.format_index(label, axis=axis, level=level)
    if caption:
        styler = styler.set_caption(caption)
    if hide_index:
        styler = styler.hide(axis="index")
    return styler


def use_book_tables() -> None:
    """pandas' Styler defaults for the book: missing cells print :data:`MISSING`."""
    import pandas as pd

    pd.set_option("styler.format.na_rep", MISSING)
