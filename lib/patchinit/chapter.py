"""The set-up of an experiment chapter: its papermill parameters, in one object.

Every experiment notebook starts with the same ``parameters`` cell::

    profile = "quick"        # or "paper"
    allow_training = None    # None: train missing runs in the quick profile only
    device = "auto"
    results_dir = None       # None: the repository's results/ (or $PATCHINIT_RESULTS)
    seeds = None             # None: the profile's seeds; e.g. [0] or "0,1"
    test_subset = None       # None: the profile's test images; n: a fixed random n of them

and then builds a :class:`Chapter` from them::

    ch = Chapter("02-mnist-kaiming", profile, allow_training, device, results_dir, seeds, test_subset)
    proto = ch.protocol(method_a_mnist(profile))     # the profile, with the chapter's seeds and test subset
    grid = ch.grid(method_b_accuracy_grid(profile, "cifar10"))
    ch.require(grid, ...)                            # every run of the chapter, checked at once
    records = ch.run_all(ch.store, [c for _, c in grid], ...)

The store is found from the repository (:mod:`patchinit.paths`), so the chapter runs the
same from jupyter-book (in ``notebooks/``), from papermill in the repository root, or
from anywhere else.  :meth:`Chapter.require` lists *every* missing run of the chapter,
with the command that produces them, before any of them would be read; and
:meth:`Chapter.run_all` prints one line for each run it trains.
"""
from __future__ import annotations

import ast
import dataclasses
import sys
from typing import Any, Callable, Iterable, Mapping, Sequence

from patchinit import paths
from patchinit.results import ResultsStore, canonical_json, config_key

__all__ = ["Chapter", "parse_seeds", "book_style"]


def parse_seeds(seeds: Any) -> tuple[int, ...] | None:
    """``seeds`` as a tuple of ints: a list or tuple, one int, or a string such as ``"[0, 1]"``,
    ``"0,1"`` or ``"0 1"`` (papermill's ``-p seeds "[0]"`` passes a string).  ``None`` stays ``None``."""
    if seeds is None:
        return None
    value = seeds
    if isinstance(value, str):
        text = value.strip()
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = [part for part in text.replace(",", " ").split()]
    if isinstance(value, (int,)) and not isinstance(value, bool):
        value = [value]
    try:
        out = tuple(int(s) for s in value)
        bad = [s for s in value if isinstance(s, bool) or (isinstance(s, float) and not s.is_integer())]
    except (TypeError, ValueError):
        out, bad = (), [value]
    if bad or not out:
        raise ValueError(f"seeds must be a non-empty list of integers such as [0, 1] (or the string \"0,1\"), "
                         f"got {seeds!r}")
    if len(set(out)) != len(out):
        raise ValueError(f"seeds must not repeat, got {list(out)}")
    return out


def _shown(path) -> str:
    """``path`` relative to the repository when it lies inside it (what a reader of the book can use)."""
    from pathlib import Path

    try:
        return str(Path(path).resolve().relative_to(paths.repo_root())) + "/"
    except (ValueError, FileNotFoundError):
        return str(path)


def _without_seed(mapping: Mapping) -> str:
    return canonical_json({k: v for k, v in mapping.items() if k != "seed"})


class Chapter:
    """What an experiment chapter's parameters cell sets, checked once (see the module docstring)."""

    def __init__(self, name: str, profile: str = "quick", allow_training: bool | None = None,
                 device: str = "auto", results_dir: str | None = None, seeds: Any = None,
                 test_subset: int | None = None, *, announce: Callable[[str], None] | None = print):
        from patchinit.protocols import PROFILES, paper_command

        if profile not in PROFILES:
            raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
        if allow_training is not None and not isinstance(allow_training, bool):
            raise ValueError(f"allow_training must be True, False or None, got {allow_training!r}")
        if test_subset is not None and (isinstance(test_subset, bool) or not isinstance(test_subset, int)
                                        or test_subset < 1):
            raise ValueError(f"test_subset must be a positive number of test images or None, got {test_subset!r}")
        self.name = name
        self.profile = profile
        self.device = device
        self.seeds = parse_seeds(seeds)
        self.test_subset = test_subset
        self.allow = (profile == "quick") if allow_training is None else allow_training
        self.announce = announce
        self.store = ResultsStore(paths.results_dir(results_dir))
        self.command = paper_command(name)

    # -- the chapter's runs ----------------------------------------------------------------
    def overrides(self) -> dict:
        """The chapter parameters that change the profile's runs (empty when none do)."""
        out = {}
        if self.seeds is not None:
            out["seeds"] = list(self.seeds)
        if self.test_subset is not None:
            out["test_subset"] = self.test_subset
        return out

    def _config(self, config: Mapping, seed: int | None = None) -> dict:
        from patchinit.spec import variant

        changes: dict[str, Any] = {}
        if seed is not None:
            changes["seed"] = int(seed)
        if self.test_subset is not None:
            changes["test_subset"] = int(self.test_subset)
        return variant(config, **changes)

    def protocol(self, proto):
        """``proto`` (a :class:`patchinit.protocols.Protocol`) with the chapter's seeds and test subset."""
        if not self.overrides():
            return proto
        base = dict(proto.base) if self.test_subset is None else self._config(proto.base)
        return dataclasses.replace(proto, base=base, seeds=self.seeds if self.seeds is not None else proto.seeds)

    def grid(self, pairs: Sequence[tuple[Mapping, Mapping]]) -> list[tuple[dict, dict]]:
        """A chapter grid of ``(row, config)`` pairs with the chapter's seeds and test subset.

        With ``seeds``, the runs that differ only in their seed become one run per chapter
        seed (in the order of their first appearance); each row's ``seed`` says which.
        """
        pairs = [(dict(row), dict(cfg)) for row, cfg in pairs]
        if self.seeds is None:
            return [(row, self._config(cfg)) for row, cfg in pairs]
        groups: dict[str, tuple[dict, dict]] = {}
        for row, cfg in pairs:
            groups.setdefault(_without_seed(cfg) + _without_seed(row), (row, cfg))
        out = []
        for row, cfg in groups.values():
            for s in self.seeds:
                out.append(({**row, "seed": s} if ("seed" in row or len(self.seeds) > 1) else row,
                            self._config(cfg, s)))
        return out

    def describe(self, proto) -> str:
        """:func:`patchinit.protocols.describe` of ``proto`` under the chapter's parameters, saying
        what they change."""
        from patchinit.protocols import describe

        text = describe(self.protocol(proto))
        changed = []
        if self.seeds is not None:
            changed.append(f"seed{'s' if len(self.seeds) > 1 else ''} {', '.join(map(str, self.seeds))} "
                           f"(the profile has {', '.join(map(str, proto.seeds))})")
        if self.test_subset is not None:
            changed.append(f"scored on a fixed random {self.test_subset:,} test images "
                           f"(the profile: {proto.base.get('test_subset') or 'all'})")
        if changed:
            text += (" **This run changes the profile:** " + "; ".join(changed)
                     + ". Its runs are other runs than the profile's, and its verdicts are about them.")
        return text

    # -- the store ---------------------------------------------------------------------------
    @staticmethod
    def _configs(groups: Iterable) -> list[dict]:
        out = []
        for group in groups:
            for item in group:
                out.append(item[1] if isinstance(item, tuple) else item)
        return out

    def missing(self, *groups) -> tuple[list[dict], int]:
        """The missing runs among ``groups`` (lists of configs or of ``(row, config)`` pairs), each
        with its data fingerprint and listed once, and how many distinct runs the groups hold."""
        from patchinit.experiment import identify

        seen, configs = set(), []
        for cfg in self._configs(groups):
            cfg = identify(cfg)
            if config_key(cfg) not in seen:
                seen.add(config_key(cfg))
                configs.append(cfg)
        return self.store.missing(configs), len(configs)

    def require(self, *groups) -> None:
        """Check every run of the chapter against the store at once.

        ``groups`` are lists of configs or of ``(row, config)`` pairs.  When the chapter may
        not train (the paper profile without ``allow_training=True``), a missing run raises
        :class:`patchinit.results.MissingRunsError` naming *all* of the chapter's missing
        runs and the command that produces them; otherwise the missing runs are counted
        and announced (they are trained, one line each, where the chapter reads them).
        """
        from patchinit.experiment import resolve_device
        from patchinit.results import MissingRunsError

        missing, total = self.missing(*groups)
        if missing and not self.allow:
            raise MissingRunsError(missing, self.command)
        if self.announce:
            if missing:
                self.announce(f"{len(missing)} of the chapter's {total} runs are not in the results store "
                              f"{_shown(self.store.root)}; each is trained (on {resolve_device(self.device)}) and announced "
                              "below")
            else:
                self.announce(f"all {total} runs of the chapter are in the results store {_shown(self.store.root)}")

    def run_all(self, store: ResultsStore | None, configs: Sequence[Mapping], **kwargs) -> list[dict]:
        """:func:`patchinit.experiment.run_all` with the chapter's defaults (``allow_run``,
        ``device``, ``command``), announcing every run it trains."""
        from patchinit.experiment import run_all

        kwargs.setdefault("allow_run", self.allow)
        kwargs.setdefault("device", self.device)
        kwargs.setdefault("command", self.command)
        kwargs.setdefault("announce", self._announce_flushed if self.announce else None)
        return run_all(store if store is not None else self.store, configs, **kwargs)

    def _announce_flushed(self, line: str) -> None:
        self.announce(line)
        try:
            sys.stdout.flush()
        except (AttributeError, ValueError):
            pass

    def __repr__(self) -> str:
        return (f"Chapter({self.name!r}, profile={self.profile!r}, allow={self.allow}, device={self.device!r}, "
                f"store={str(self.store.root)!r}, overrides={self.overrides()})")


def book_style() -> None:
    """The book's figure and table style, for any chapter's set-up cell:
    :func:`patchinit.plots.use_book_style` and :func:`patchinit.tables.use_book_tables`."""
    from patchinit.plots import use_book_style
    from patchinit.tables import use_book_tables

    use_book_style()
    use_book_tables()
