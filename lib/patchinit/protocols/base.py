"""What every protocol shares: the profiles, :class:`Protocol`, the quick overlay, and :func:`describe`.

A protocol is the paper's run (a base config, checked as a :class:`patchinit.spec.RunSpec`) plus its
seeds; the quick profile is the paper's protocol with an overlay (:class:`Overlay`) applied, and the
sentences that say how it differs from the paper are written from that overlay, so no page can
silently claim the full protocol.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Sequence

from patchinit.spec import RunSpec

PROFILES = ("quick", "paper")
# Every paper profile trains in float32, as the papers did, so that a CPU run can fill a paper cell.
# bfloat16 autocast (what makes the whole paper profile fit an H100 budget, #6) is a labelled variant:
# ``with_precision(config, "bf16")`` gives the config another key, so its records never stand in for fp32 ones.
PRECISIONS = ("fp32", "bf16")


def with_precision(config: dict, precision: str) -> dict:
    """``config`` trained at ``precision``: "fp32" (the paper profiles) or "bf16" autocast (a GPU variant)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    out = copy.deepcopy(config)
    out["train"].pop("precision", None)
    if precision != "fp32":
        out["train"]["precision"] = precision
    return out


def check_profile(profile: str) -> None:
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")


@dataclass(frozen=True)
class Protocol:
    """A chapter's protocol: ``base`` (a run config without seed and profile), its ``seeds``, and
    ``differences``, the sentences that say how it differs from the paper's protocol.  The base is
    validated as a :class:`~patchinit.spec.RunSpec` when the protocol is made, so a bad value (a
    prune rate of 1.5, an unknown key) fails when a grid is built, before any run starts."""

    name: str
    profile: str
    base: dict
    seeds: tuple[int, ...]
    differences: tuple[str, ...] = field(default_factory=tuple)  # how it differs from the paper

    def __post_init__(self):
        check_profile(self.profile)
        self.spec(self.seeds[0] if self.seeds else 0)

    def spec(self, seed: int, **changes) -> RunSpec:
        """The typed, validated run of ``seed``, with dotted-path ``changes``."""
        return RunSpec.from_config(self.config(seed, **changes))

    def config(self, seed: int, **changes) -> dict:
        """The run config of ``seed`` (the store's plain form of :meth:`spec`)."""
        from patchinit.spec import variant

        return variant(dict(self.base, seed=int(seed), profile=self.profile), **changes)

    def configs(self, **changes) -> list[dict]:
        return [self.config(s, **changes) for s in self.seeds]


@dataclass(frozen=True)
class Overlay:
    """The quick profile's changes to a paper protocol: a seeded random ``train_subset`` of the
    training images (or the first n, with ``random_subset=False``), ``test_subset`` test images
    (None: all), ``epochs`` epochs with the schedule compressed to them, and ``seeds``."""

    train_subset: int
    epochs: int
    seeds: tuple[int, ...]
    test_subset: int | None = None
    random_subset: bool = True  # our CIFAR and TinyImageNet copies are stored class by class

    def apply(self, base: dict) -> dict:
        out = copy.deepcopy(base)
        out["train_subset"] = self.train_subset
        if self.random_subset:
            out["train_subset_seed"] = 0
        if self.test_subset is not None:
            out["test_subset"] = self.test_subset
        out["train"]["epochs"] = self.epochs
        return out

    def differences(self, paper: dict, paper_seeds: Sequence[int], n_train: int, n_test: int, *,
                    train_images: str | None = None, test_images: str = "test images") -> list[str]:
        """The sentences saying how this overlay on ``paper`` (a base config) differs from it:
        written from the two, so they cannot drift from the numbers."""
        batch = paper["train"]["batch_size"]
        steps, paper_steps = -(-self.train_subset // batch), -(-n_train // batch)
        of = train_images or f"the {n_train:,} training images"
        which = f"a seeded random {self.train_subset:,}" if self.random_subset else f"the first {self.train_subset:,}"
        out = [f"{which} of {of}, so an epoch is {steps} SGD steps instead of {paper_steps}"]
        schedule = paper["train"]["schedule"]
        squeeze = (f", with the {schedule} schedule compressed to those {self.epochs} epochs"
                   if schedule == "cosine" else "")
        out.append(f"{self.epochs} epochs instead of {paper['train']['epochs']} ({self.epochs * steps:,} SGD steps "
                   f"instead of {paper['train']['epochs'] * paper_steps:,}){squeeze}")
        if self.test_subset is not None:
            se = 100 * math.sqrt(0.25 / self.test_subset)  # of an accuracy near 50%, the widest case
            out.append(f"scored on a fixed random {self.test_subset:,} of the {n_test:,} {test_images} (a standard "
                       f"error of about {se:.1f} points on an accuracy near 50%)")
        else:
            out.append(f"scored on all {n_test:,} {test_images}, as in the paper")
        seeds = f"{len(self.seeds)} seed{'s' if len(self.seeds) != 1 else ''}"
        out.append(f"{seeds} instead of {len(paper_seeds)}" if len(self.seeds) != len(paper_seeds)
                   else f"{seeds}, as in the paper")
        return out


def describe(p: Protocol) -> str:
    """One paragraph for the chapter: which profile, and how it differs from the paper."""
    items = "; ".join(p.differences)
    seeds = f"{len(p.seeds)} seed{'s' if len(p.seeds) != 1 else ''}"
    if p.profile == "paper":
        precision = (" Training runs under bfloat16 autocast (weights, optimiser state and loss in float32), a "
                     "variant for GPU sessions; the papers trained in float32." if p.base["train"].get("precision") == "bf16"
                     else "")
        if not p.differences:
            return f"**Profile: paper.** This is the paper's full protocol ({seeds}).{precision}"
        return f"**Profile: paper.** This is the paper's protocol ({seeds}) except: {items}.{precision}"
    return (f"**Profile: {p.profile}.** This is a scaled-down protocol that runs on a CPU in minutes: {items}. "
            "Numbers from it are not the paper's numbers; the verdicts below are about the direction and rough "
            "size of each effect. Rerun this chapter with `profile=\"paper\"` for the full protocol.")


def paper_command(notebook: str, device: str = "cuda") -> str:
    """The command that runs ``notebooks/<notebook>.md`` in the paper profile and trains what is missing."""
    nb = f"notebooks/{notebook}"
    return (f"make paper NB={nb}.md DEVICE={device}\n  which runs: jupytext --to ipynb --output {nb}.paper.ipynb "
            f"{nb}.md && cd notebooks && papermill {notebook}.paper.ipynb {notebook}.paper.ipynb "
            f"-p profile paper -p allow_training True -p device {device}")
