"""Fill the results store ahead of the chapters: ``python tools/fill_results.py GRID... [options]``.

A thin wrapper around ``python -m patchinit.fill`` (see :mod:`patchinit.fill` for the grids and every
option): ``--engine local`` (the default) trains here, ``--engine ray [--address HOST:PORT]`` spreads the
groups over a Ray cluster.  ``--part i/n`` still works but is deprecated in favour of ``--engine ray``.
"""
import sys

from patchinit.fill import GRIDS, main  # noqa: F401  (GRIDS: the grid names, for scripts that import them)

if __name__ == "__main__":
    sys.exit(main(prog="fill_results"))
