"""What to train: the grids by name, their rows filtered and cut into groups, and what the store lacks."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Sequence

from patchinit import protocols as P

# -- what to train ---------------------------------------------------------------------------------
def _mnist(claims):
    return lambda p: [(row, cfg) for row, cfg in P.method_a_mnist_grid(p) if P.mnist_claims_of(row) & set(claims)]


#: Each grid's name and the function of the profile that lists its (row, config) pairs.
GRIDS: dict[str, Callable[[str], list[tuple[dict, dict]]]] = {
    "mnist": P.method_a_mnist_grid,
    "mnist-A1": _mnist(["A1"]), "mnist-A3": _mnist(["A3"]), "mnist-A4": _mnist(["A4"]),
    "mnist-A6": _mnist(["A6"]),
    "b2": lambda p: P.method_b_early_grid(p, "cifar10"),
    "b4": lambda p: P.method_b_early_grid(p, "cifar100"),
    "b7": P.method_b_entropy_grid,
    "scaling": P.method_b_scaling_grid,
    "scaling-curve": P.method_b_scaling_curve_grid,
    "cifar10": lambda p: P.method_b_accuracy_grid(p, "cifar10"),
    "cifar100": lambda p: P.method_b_accuracy_grid(p, "cifar100"),
    "inits": P.method_b_init_grid,
    "readings": P.method_b_reading_grid,
    "PC": lambda p: P.method_b_ablation_grid(p, "PC"),
    "D": lambda p: P.method_b_ablation_grid(p, "D"),
    "a-fixup": P.method_a_cifar_grid,
    "a-volume": P.method_a_volume_grid,
    "a-resnet18": P.method_a_resnet18_grid,
    "tiny": P.method_b_tinyimagenet_grid,
    "partial": P.method_b_partial_grid,
}


def _same(a, b) -> bool:
    """A row value equals a value typed on the command line: as numbers when both read as numbers."""
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return str(a) == str(b)


def split_names(text: str) -> list[str]:
    """A comma-separated list of names, where a comma inside parentheses belongs to the name:
    ``"patch,patch (conv1 + conv2, activations)"`` is two inits, not three."""
    names, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            names.append(text[start:i].strip())
            start = i + 1
    names.append(text[start:].strip())
    return [n for n in names if n]


def parse_where(items: Iterable[str]) -> dict[str, list[str]]:
    """``["train.lr=0.001,0.0001"]`` as ``{"train.lr": ["0.001", "0.0001"]}``; a clear error otherwise."""
    where: dict[str, list[str]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not key or not values:
            raise ValueError(f"--where {item!r}: write KEY=VALUE[,VALUE...], e.g. --where train.lr=0.001,0.0001")
        where[key] = split_names(values)
    return where


def grid_rows(name: str, profile: str, *, inits: Iterable[str] | None = None,
              seeds: Iterable[int] | None = None,
              where: Mapping[str, Sequence[str]] | None = None) -> list[tuple[dict, dict]]:
    """The (row, config) pairs of grid ``name`` in ``profile``, only those with an init in ``inits``,
    a seed in ``seeds`` and, for each key of ``where``, a row value among its values (None: all).
    A ``where`` key that no row of the grid has is an error, not an empty grid."""
    if name not in GRIDS:
        raise KeyError(f"unknown grid {name!r}; choose one of {sorted(GRIDS)}")
    inits = None if inits is None else set(inits)
    seeds = None if seeds is None else {int(s) for s in seeds}
    rows = GRIDS[name](profile)
    for key in where or {}:
        if not any(key in r for r, _ in rows):
            known = sorted({k for r, _ in rows for k in r})
            raise KeyError(f"--where {key}: no row of grid {name!r} has that key; its rows have {known}")
    return [(r, c) for r, c in rows
            if (inits is None or r.get("init") in inits) and (seeds is None or r.get("seed", c.get("seed")) in seeds)
            and all(key in r and any(_same(r[key], v) for v in vals) for key, vals in (where or {}).items())]


def plan_configs(name: str, profile: str, *, inits=None, seeds=None, where=None,
                 precision: str = "fp32") -> list[dict]:
    """The configs of grid ``name``, at ``precision``, each with the local data copy's fingerprint
    (:func:`patchinit.experiment.identify`): the runs' identities in the store."""
    from patchinit.experiment import identify

    return [identify(P.with_precision(c, precision))
            for _, c in grid_rows(name, profile, inits=inits, seeds=seeds, where=where)]


def split_groups(configs: Sequence[Mapping], *, one_by_one: bool = False,
                 max_group: int | None = None) -> list[list[Mapping]]:
    """``configs`` cut into the groups that train together (:func:`patchinit.experiment.groups_of`),
    or one group per run with ``one_by_one``."""
    from patchinit.experiment import groups_of

    return [[c] for c in configs] if one_by_one else groups_of(configs, max_group)


def parse_part(part: str) -> tuple[int, int]:
    """``"i/n"`` as ``(i, n)``, checked: 0 <= i < n."""
    try:
        i, n = map(int, part.split("/"))
    except ValueError:
        raise ValueError(f"--part must look like i/n (for example 0/2), got {part!r}") from None
    if not 0 <= i < n:
        raise ValueError(f"--part i/n needs 0 <= i < n, got {part!r}")
    return i, n


def take_part(groups: Sequence, part: tuple[int, int]) -> list:
    """Every n-th group starting at i: the deprecated hand-made split (``--part i/n``).  It cuts the
    grid, not the missing list, so the parts never overlap."""
    i, n = part
    return list(groups[i::n])


def pending(store, groups: Iterable[Sequence[Mapping]], min_epochs: int | None = None) -> list[list[Mapping]]:
    """Each group less the runs ``store`` already has (with at least ``min_epochs`` epochs, default all);
    groups left empty are dropped."""
    todo = [store.missing(g, min_epochs) for g in groups]
    return [g for g in todo if g]


@dataclass
class Job:
    """One group of runs to train together, and what to call it in messages."""

    label: str
    members: list
    attempt: int = 0
