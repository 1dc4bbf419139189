"""Where the project's files are, independent of the working directory.

A chapter run by jupyter-book starts in ``notebooks/``; the same chapter run with
papermill from the repository root, or from anywhere else, starts there.  Paths
such as ``../results`` would then point elsewhere, and every run would look
missing.  Everything here is located from the repository instead:

1. ``$PATCHINIT_ROOT``, when set;
2. else the checkout this package is imported from (``lib/patchinit`` two levels
   below it, as ``pip install -e .`` leaves it);
3. else the first folder at or above the working directory that holds a
   ``results/`` store and ``book/paper/`` (a non-editable install run inside a checkout).

``$PATCHINIT_RESULTS`` still overrides the results store alone.
"""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["repo_root", "results_dir", "paper_dir", "paper_csv"]

_MARKERS = ("results", "book/paper")


def _looks_like_root(path: Path) -> bool:
    return all((path / m).is_dir() for m in _MARKERS)


def repo_root() -> Path:
    """The repository root (see the module docstring for how it is found)."""
    env = os.environ.get("PATCHINIT_ROOT")
    if env:
        root = Path(env).expanduser().resolve()
        if not root.is_dir():
            raise FileNotFoundError(f"PATCHINIT_ROOT={env!r} is not a folder; point it at the patchinit checkout")
        return root
    here = Path(__file__).resolve().parent.parent.parent  # lib/patchinit/paths.py -> the checkout
    if _looks_like_root(here):
        return here
    cwd = Path.cwd().resolve()
    for candidate in (cwd, *cwd.parents):
        if _looks_like_root(candidate):
            return candidate
    raise FileNotFoundError(
        f"cannot find the patchinit checkout: {here} (where the package is installed) and the folders above "
        f"{cwd} hold no results/ and book/paper/; set PATCHINIT_ROOT to the checkout")


def results_dir(path: str | os.PathLike | None = None) -> Path:
    """The results store: ``path`` when given (a relative one is taken from the working directory,
    as on a command line), else ``$PATCHINIT_RESULTS``, else ``<repository>/results``."""
    if path is not None:
        return Path(path).expanduser().resolve()
    env = os.environ.get("PATCHINIT_RESULTS")
    if env:
        return Path(env).expanduser().resolve()
    return repo_root() / "results"


def paper_dir() -> Path:
    """``<repository>/book/paper``: the papers' own numbers, transcribed."""
    return repo_root() / "book" / "paper"


def paper_csv(name: str) -> Path:
    """One of the papers' tables in ``book/paper`` (``name`` with or without ``.csv``)."""
    path = paper_dir() / (name if name.endswith(".csv") else f"{name}.csv")
    if not path.is_file():
        known = sorted(p.name for p in paper_dir().glob("*.csv"))
        raise FileNotFoundError(f"no paper table {path.name} in {paper_dir()}; known: {known}")
    return path
