"""The typed run spec: what a run is, checked when it is built.

A :class:`RunSpec` holds everything that determines a run's numbers (the device does not: it is
provenance).  It is built from, and written back to, the plain config dict that the results store
keys (:func:`RunSpec.from_config`, :meth:`RunSpec.to_config`); the round trip is exact, so every
stored record keeps its key.  Bad values fail here, when a grid is built, with the message that
names the field and the fix, not minutes into a run::

    spec = RunSpec.from_config(config)        # raises on a prune rate of 1.5 or a typo in a key
    spec.supermask.prune, spec.train.lr, spec.data.dataset
    spec.key()                                # the store's key (results.config_key of the config)
    spec.replace(**{"train.lr": 1e-3})        # a validated variant

Optional keys that a config leaves out stay out (:data:`UNSET`), because the canonical JSON, and so
the key, of a config without ``test_subset`` differs from one with ``test_subset: null``.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

__all__ = ["UNSET", "DataSpec", "PatchSpec", "InitSpec", "SupermaskSpec", "TrainSpec", "RunSpec", "SpecError", "variant"]


def variant(config: Mapping, **changes) -> dict:
    """A deep copy of the config dict ``config`` with dotted-path changes: ``variant(c, **{"train.lr": 1e-3})``.
    A path through a section the config does not have is an error (a typo would otherwise add a key)."""
    out = copy.deepcopy(dict(config))
    for path, value in changes.items():
        node = out
        *parents, leaf = path.split(".")
        for p in parents:
            if not isinstance(node.get(p), dict):
                raise KeyError(f"config has no section {p!r} on the way to {path!r}")
            node = node[p]
        node[leaf] = value
    return out


class SpecError(ValueError):
    """A run spec with a value or key that cannot describe a run; the message names it and the fix."""


class _Unset:
    """The value of an optional key that the config leaves out (it is not written back)."""

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False

    def __deepcopy__(self, memo):
        return self


UNSET: Any = _Unset()
PATCH_METHODS = ("A", "B")


def _set(value) -> bool:
    return value is not UNSET


def _from_mapping(cls, section: str, raw: Mapping, **parsed):
    """``cls`` built from ``raw``'s keys (plus already parsed fields); an unknown key is a SpecError."""
    if not isinstance(raw, Mapping):
        raise SpecError(f"{section} must be a mapping, got {type(raw).__name__} {raw!r}")
    names = [f.name for f in fields(cls)]
    unknown = sorted(set(raw) - set(names))
    if unknown:
        raise SpecError(f"unknown key{'s' if len(unknown) > 1 else ''} {unknown} in {section}; "
                        f"the keys it takes are {names}")
    missing = [f.name for f in fields(cls) if f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING and f.name not in raw and f.name not in parsed]
    if missing:
        raise SpecError(f"{section} needs {missing}")
    return cls(**{**{k: copy.deepcopy(v) for k, v in raw.items()}, **parsed})


def _to_mapping(obj) -> dict:
    """The dataclass's fields as a dict, without the UNSET ones (nested specs are written by their owners)."""
    return {f.name: copy.deepcopy(getattr(obj, f.name)) for f in fields(obj) if _set(getattr(obj, f.name))}


def _positive_int(name: str, value, allow_none: bool = True) -> None:
    if value is None and allow_none or value is UNSET:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SpecError(f"{name} must be a positive int{' or None' if allow_none else ''}, got {value!r}")


@dataclass(frozen=True)
class DataSpec:
    """Which images a run trains and is scored on.

    ``train_subset``: the first n training images (None: all), or with ``train_subset_seed`` a seeded
    random n; ``test_subset``: a fixed random n test images (None or unset: all); ``normalize``:
    ``"data"`` (the training set's own per-channel statistics) or ``{"mean": [...], "std": [...]}`` in
    [0, 1] units; ``data_fingerprint``: the data copy the run is for (added when a run is identified).
    """

    dataset: str
    train_subset: int | None = None
    train_subset_seed: Any = UNSET
    test_subset: Any = UNSET
    normalize: Any = "data"
    data_fingerprint: Any = UNSET

    def __post_init__(self):
        from patchinit.data.sources import DATASETS

        if self.dataset not in DATASETS:
            raise SpecError(f"unknown dataset {self.dataset!r}; choose one of {sorted(DATASETS)}")
        _positive_int("train_subset", self.train_subset)
        _positive_int("test_subset", self.test_subset)
        if _set(self.train_subset_seed) and self.train_subset_seed is not None:
            if isinstance(self.train_subset_seed, bool) or not isinstance(self.train_subset_seed, int):
                raise SpecError(f"train_subset_seed must be an int or None, got {self.train_subset_seed!r}")
        norm = self.normalize
        if norm != "data":
            if not (isinstance(norm, Mapping) and set(norm) == {"mean", "std"}
                    and len(norm["mean"]) == len(norm["std"]) > 0):
                raise SpecError(f"normalize must be 'data' or {{'mean': [...], 'std': [...]}} of equal lengths, "
                                f"got {norm!r}")
            if any(not (s > 0) for s in norm["std"]):
                raise SpecError(f"normalize std must be positive, got {list(norm['std'])}")
        if _set(self.data_fingerprint) and not (isinstance(self.data_fingerprint, str) and self.data_fingerprint):
            raise SpecError(f"data_fingerprint must be a non-empty string, got {self.data_fingerprint!r}")


def _option_names(method: str) -> set[str]:
    from patchinit.init.options import MethodAOptions, MethodBConfig

    if method == "A":
        return {f.name for f in fields(MethodAOptions)}

    return {f.name for f in fields(MethodBConfig)} | {"P", "C", "D", "simple", "layers"}


@dataclass(frozen=True)
class PatchSpec:
    """The patch part of an init.

    ``method``: "A" (Lehmann & Ebner) or "B" (PatchesInit); ``options``: the settings that differ
    from the method's defaults (method A: ``MethodAOptions`` fields; method B: ``P``, ``C``, ``D``,
    ``simple``, ``layers`` and ``MethodBConfig`` fields).  Method A only: ``layers`` (bottom-up),
    ``seed`` (of UMAP and k-means, fixed across a comparison's run seeds), ``deep_mapping`` of the
    layers above the first ("activations" or "volume"), ``deep_options`` (overrides for them) and
    ``scale`` (a factor on the filters).
    """

    method: str = "A"
    options: Mapping = field(default_factory=dict)
    layers: Any = UNSET
    seed: Any = UNSET
    deep_mapping: Any = UNSET
    deep_options: Any = UNSET
    scale: Any = UNSET

    def __post_init__(self):
        if self.method not in PATCH_METHODS:
            raise SpecError(f"unknown patch method {self.method!r}; choose 'A' or 'B'")
        for name in ("options", "deep_options"):
            opts = getattr(self, name)
            if not _set(opts):
                continue
            if not isinstance(opts, Mapping):
                raise SpecError(f"init.patch.{name} must be a mapping, got {opts!r}")
            unknown = sorted(set(opts) - _option_names(self.method))
            if unknown:
                raise SpecError(f"unknown method-{self.method} option{'s' if len(unknown) > 1 else ''} {unknown} "
                                f"in init.patch.{name}; the options are {sorted(_option_names(self.method))}")
        if self.method == "B":
            extra = [n for n in ("layers", "seed", "deep_mapping", "deep_options", "scale") if _set(getattr(self, n))]
            if extra:
                raise SpecError(f"init.patch.{extra[0]} is a method-A setting; method B takes its layers as "
                                "options.layers and draws its patches with the run's seed")
            return
        if _set(self.layers) and (not isinstance(self.layers, (list, tuple)) or not self.layers
                                  or not all(isinstance(x, str) for x in self.layers)):
            raise SpecError(f"init.patch.layers must be a non-empty list of layer names, got {self.layers!r}")
        from patchinit.init.options import DEEP_MAPPINGS

        if _set(self.deep_mapping) and self.deep_mapping not in DEEP_MAPPINGS:
            raise SpecError(f"init.patch.deep_mapping must be one of {DEEP_MAPPINGS}, got {self.deep_mapping!r}")
        if _set(self.scale) and not (isinstance(self.scale, (int, float)) and self.scale > 0):
            raise SpecError(f"init.patch.scale must be a positive number, got {self.scale!r}")


@dataclass(frozen=True)
class InitSpec:
    """``baseline``: the random scheme every layer starts from (a name of ``patchinit.init.baselines.SCHEMES``,
    or "model" for the model's own init, as Fixup's); ``patch``: the patch init on top, or None."""

    baseline: str
    patch: PatchSpec | None = None

    def __post_init__(self):
        from patchinit.init.baselines import SCHEMES

        if self.baseline != "model" and self.baseline not in SCHEMES:
            raise SpecError(f"unknown init.baseline {self.baseline!r}; choose 'model' or one of {sorted(SCHEMES)}")

    @classmethod
    def from_config(cls, raw: Mapping) -> "InitSpec":
        patch = raw.get("patch") if isinstance(raw, Mapping) else None
        parsed = {"patch": None if patch is None else _from_mapping(PatchSpec, "init.patch", patch)}
        return _from_mapping(cls, "init", raw, **parsed)

    def to_config(self) -> dict:
        return {"baseline": self.baseline, "patch": None if self.patch is None else _to_mapping(self.patch)}


@dataclass(frozen=True)
class SupermaskSpec:
    """Edge-popup training: ``prune`` is the fraction of each layer's weights REMOVED, in (0, 1)."""

    prune: float

    def __post_init__(self):
        from patchinit.supermask import validate_prune

        try:
            validate_prune(self.prune)
        except ValueError as err:
            raise SpecError(f"supermask.{err}") from None


@dataclass(frozen=True)
class TrainSpec:
    """The optimiser and schedule: SGD with ``lr``, ``momentum`` and ``weight_decay`` for ``epochs``
    epochs of ``batch_size`` images (``augment``: crop and flip); ``schedule`` "inv" (Caffe's
    lr·(1 + inv_gamma·iteration)^(−inv_power)), "cosine" (stepped once per epoch) or "constant";
    ``scalar_lr_factor`` multiplies the lr of biases and scales (Fixup); ``precision`` "bf16" is the
    labelled autocast variant (unset: float32, as the papers trained)."""

    epochs: int
    lr: float
    momentum: float
    weight_decay: float
    schedule: str
    batch_size: int
    augment: bool
    inv_gamma: Any = UNSET
    inv_power: Any = UNSET
    scalar_lr_factor: Any = UNSET
    precision: Any = UNSET

    def __post_init__(self):
        _positive_int("train.epochs", self.epochs, allow_none=False)
        _positive_int("train.batch_size", self.batch_size, allow_none=False)
        for name in ("lr", "momentum", "weight_decay"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise SpecError(f"train.{name} must be a number, got {value!r}")
        if not isinstance(self.augment, bool):
            raise SpecError(f"train.augment must be true or false, got {self.augment!r}")
        try:  # the trainer's own rules for the numbers (lr, momentum, schedule, precision...)
            self.trainer_config()
        except (TypeError, ValueError) as err:
            raise SpecError(f"train.{err}") from None

    def trainer_config(self, execution: Mapping | None = None):
        """The trainer's :class:`patchinit.train.TrainConfig`, with the run settings ``execution``."""
        from patchinit.train import TrainConfig

        numbers = {k: v for k, v in _to_mapping(self).items() if k not in ("batch_size", "augment")}
        return TrainConfig(**numbers, **(execution or {}))


_TOP = ("experiment", "profile", "model", "num_classes", "seed")
_DATA = tuple(f.name for f in fields(DataSpec))
# What a run's initial weights do not depend on (see RunSpec.init_key).
_NOT_INIT = ("supermask", "train", "test_subset", "experiment", "profile")


@dataclass(frozen=True)
class RunSpec:
    """One run: ``experiment`` and ``profile`` name the chapter's protocol it belongs to; ``model`` and
    ``num_classes`` the network; ``seed`` its random layers and data order; ``supermask`` edge-popup
    training (None or unset: ordinary training)."""

    experiment: str
    profile: str
    model: str
    num_classes: int
    seed: int
    data: DataSpec
    init: InitSpec
    train: TrainSpec
    supermask: Any = UNSET

    def __post_init__(self):
        from patchinit.models import available

        if self.model not in available():
            raise SpecError(f"unknown model {self.model!r}; available: {', '.join(available())}")
        _positive_int("num_classes", self.num_classes, allow_none=False)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise SpecError(f"seed must be an int, got {self.seed!r}")

    # -- the config dict, both ways ----------------------------------------------------------------
    @classmethod
    def from_config(cls, config: Mapping) -> "RunSpec":
        """The spec of a plain config dict; every key is checked, and an unknown one is an error."""
        if isinstance(config, RunSpec):
            return config
        if not isinstance(config, Mapping):
            raise SpecError(f"a run config must be a mapping, got {type(config).__name__}")
        known = (*_TOP, *_DATA, "init", "train", "supermask")
        unknown = sorted(set(config) - set(known))
        if unknown:
            raise SpecError(f"unknown key{'s' if len(unknown) > 1 else ''} {unknown} in the run config; "
                            f"the keys it takes are {list(known)}")
        missing = [k for k in (*_TOP, "dataset", "init", "train") if k not in config]
        if missing:
            raise SpecError(f"the run config needs {missing}")
        sm = config.get("supermask", UNSET)
        if sm is not None and _set(sm):
            sm = _from_mapping(SupermaskSpec, "supermask", sm)
        return cls(**{k: config[k] for k in _TOP},
                   data=_from_mapping(DataSpec, "the run config's data keys",
                                      {k: config[k] for k in _DATA if k in config}),
                   init=InitSpec.from_config(config["init"]),
                   train=_from_mapping(TrainSpec, "train", config["train"]),
                   supermask=sm)

    def to_config(self) -> dict:
        """The plain config dict: exactly the one this spec was built from."""
        out = {k: getattr(self, k) for k in _TOP}
        out.update(_to_mapping(self.data))
        out["init"] = self.init.to_config()
        out["train"] = _to_mapping(self.train)
        if _set(self.supermask):
            out["supermask"] = None if self.supermask is None else _to_mapping(self.supermask)
        return out

    def replace(self, **changes) -> "RunSpec":
        """A validated copy with dotted-path changes, e.g. ``spec.replace(**{"supermask.prune": 0.7})``."""
        return RunSpec.from_config(variant(self.to_config(), **changes))

    # -- identities: each is one method ------------------------------------------------------------
    def canonical(self) -> str:
        from patchinit.results import canonical_json

        return canonical_json(self.to_config())

    def key(self) -> str:
        """The results store's key of this run."""
        from patchinit.results import config_key

        return config_key(self.to_config())

    def init_key(self) -> str:
        """What the initial weights depend on: everything but the supermask, the optimiser, the test
        images and the labels.  Two specs with the same init key get bit-identical initial weights."""
        from patchinit.results import canonical_json

        return canonical_json({k: v for k, v in self.to_config().items() if k not in _NOT_INIT})

    def group_key(self) -> str:
        """Specs with the same group key differ only in seed, init and experiment, so they can train
        together as one stack of models."""
        from patchinit.results import canonical_json

        return canonical_json({k: v for k, v in self.to_config().items() if k not in ("seed", "init", "experiment")})

    @property
    def prune(self) -> float | None:
        """The supermask's prune rate, or None for ordinary training."""
        return self.supermask.prune if self.supermask else None
