"""A claim's verdict, with the evidence behind it and the tier of the runs it rests on."""
from __future__ import annotations

from dataclasses import dataclass, field

from patchinit.results import TIERS

#: What a rule can return.  ``inconclusive``: the runs cannot tell (both arms at chance, or too
#: few informative cells); ``not reproducible``: no run here can test the claim (A11).
VERDICTS = ("confirmed", "not confirmed", "refuted", "inconclusive", "not reproducible")


@dataclass(frozen=True)
class Evidence:
    """Where a verdict's runs come from: the weakest tier among them, and its size."""

    tier: str | None          # one of results.TIERS, or None where no run is needed (words only)
    seeds: int = 0            # most seeds behind one arm
    epochs_run: int = 0       # epochs each run trained (the fewest)
    epochs: int = 0           # epochs of the schedule
    n_test: int = 0           # test images each run is scored on
    runs: int = 0
    seeds_of: int | None = None  # the protocol's seeds, where the runs are only its first ``seeds``

    def describe(self) -> str:
        if self.tier is None:
            return "no training runs"
        tier = self.tier if self.tier != "exact-prefix" else f"exact prefix, epoch {self.epochs_run} of {self.epochs}"
        seeds = f"{self.seeds} seed{'s' * (self.seeds != 1)}"
        if self.seeds_of:
            seeds = f"the first {self.seeds} of {self.seeds_of} seeds"
        return (f"{tier}: {self.runs} run{'s' * (self.runs != 1)}, {seeds} per arm, "
                f"{self.epochs_run} of {self.epochs} epochs, {self.n_test:,} test images")


@dataclass(frozen=True)
class Verdict:
    """A claim's verdict: ``paper`` (its numbers or words), ``ours``, the ``test`` used and its
    ``p`` value or ``ci`` (in points), the :class:`Evidence` tier, and the ``parts`` of a claim
    with several (True: holds, False: fails, None: not tested by these runs)."""

    claim: str
    verdict: str
    paper: str
    ours: str
    evidence: Evidence
    test: str = ""
    p: float | None = None
    ci: tuple[float, float] | None = None
    parts: dict = field(default_factory=dict)
    note: str = ""

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")
        if self.evidence.tier is not None and self.evidence.tier not in TIERS:
            raise ValueError(f"tier must be one of {TIERS} or None, got {self.evidence.tier!r}")

    @property
    def tier(self) -> str | None:
        return self.evidence.tier

    def stated(self) -> bool:
        """Whether the verdict may be stated as evidence: never on the quick tier."""
        return self.tier not in (None, "quick") or self.verdict == "not reproducible"

    def _stat(self) -> str:
        bits = []
        if self.test:
            bits.append(self.test)
        if self.ci is not None:
            bits.append(f"95% CI {self.ci[0]:+.2f} to {self.ci[1]:+.2f} points")
        if self.p is not None:
            bits.append(f"p = {self.p:.2g}")
        return "; ".join(bits)

    def _repr_markdown_(self) -> str:
        scope = ""
        if self.parts and any(v is None for v in self.parts.values()):
            scope = f", {sum(v is not None for v in self.parts.values())} of {len(self.parts)} parts tested"
        lines = [f"**{self.claim}: {self.verdict.upper()}** (tier: {self.evidence.describe()}{scope})"]
        if self.tier == "quick":
            lines.append("*Quick profile: a smoke test, not evidence; the claims page does not state it.*")
        lines.append(f"*The paper:* {self.paper}")
        lines.append(f"*Ours:* {self.ours}")
        if self.parts:
            lines.append("*Parts:* " + "; ".join(f"{k}: {_part(v)}" for k, v in self.parts.items()))
        if self._stat():
            lines.append(f"*Test:* {self._stat()}")
        if self.note:
            lines.append(f"*Note:* {self.note}")
        return "\n>\n".join("> " + line for line in lines)

    def as_row(self) -> dict:
        return {"claim": self.claim, "verdict": self.verdict, "tier": self.evidence.describe(),
                "paper": self.paper, "ours": self.ours, "test": self._stat()}


def combine(parts: dict, refuted: bool) -> str:
    """A claim's verdict from its parts (True, False, or None when the runs cannot test it): refuted when
    the rule found the opposite, confirmed when every tested part holds, else not confirmed."""
    tested = [v for v in parts.values() if v is not None]
    if refuted:
        return "refuted"
    if tested and all(tested):
        return "confirmed"
    return "not confirmed"


def _part(v) -> str:
    return {True: "holds", False: "fails", None: "not tested"}.get(v, str(v))
