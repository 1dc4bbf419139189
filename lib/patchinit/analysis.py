"""From results-store records to the arrays and verdicts a chapter reports."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np

VERDICTS = ("confirmed", "not confirmed", "refuted")


def metric_matrix(records: Sequence[Mapping], key: str = "test_acc") -> np.ndarray:
    """``(runs, epochs)`` array of a per-epoch metric (NaN where a run has fewer epochs)."""
    n = max(len(r["metrics"]) for r in records)
    out = np.full((len(records), n), np.nan)
    for i, r in enumerate(records):
        vals = [m.get(key, np.nan) for m in r["metrics"]]
        out[i, : len(vals)] = vals
    return out


def finals(records: Iterable[Mapping], key: str = "test_acc") -> np.ndarray:
    """The last epoch's value of ``key`` for each run."""
    return np.array([r["metrics"][-1].get(key, np.nan) for r in records], dtype=float)


def diverged(records: Iterable[Mapping]) -> np.ndarray:
    return np.array([r["result"].get("diverged_at") is not None for r in records])


@dataclass(frozen=True)
class Verdict:
    """A claim's verdict with the evidence behind it; renders as a box in a notebook."""

    claim: str
    verdict: str
    evidence: str
    profile: str
    paper: str = ""

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")

    def _repr_markdown_(self) -> str:
        paper = f"\n\n*The paper:* {self.paper}" if self.paper else ""
        return (f"> **{self.claim}: {self.verdict.upper()}** (profile: {self.profile})"
                f"{paper.replace(chr(10), chr(10) + '> ')}\n>\n> *Ours:* {self.evidence}")

    def as_row(self) -> dict:
        return {"claim": self.claim, "verdict": self.verdict, "profile": self.profile, "evidence": self.evidence}


def layer_output_std(model, x, layers: Sequence[str]) -> dict[str, float]:
    """Std of each named layer's output for input batch ``x`` (a forward-scale diagnostic)."""
    import torch

    out: dict[str, float] = {}
    modules = dict(model.named_modules())
    hooks = [modules[name].register_forward_hook(lambda m, i, o, name=name: out.__setitem__(name, float(o.std())))
             for name in layers]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return out
