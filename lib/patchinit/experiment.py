"""A run is data: a config in, a results record out.

:func:`run` is the function handed to :meth:`patchinit.results.ResultsStore.run_or_load`;
the config is everything that determines the result (the device is not: it is
recorded as provenance).  It is checked and read as a typed :class:`patchinit.spec.RunSpec`;
its plain, JSON-able form, which the store keys, looks like::

    {"experiment": "A1", "profile": "quick",
     "dataset": "mnist", "train_subset": 10000,          # first n training images; None = all
     "test_subset": None,                                # or n: a fixed random n test images (quick profiles)
     "model": "lenet", "num_classes": 10,
     "normalize": {"mean": [0.1307], "std": [0.3081]},   # or "data": the dataset's own statistics
     "init": {"baseline": "kaiming_uniform",             # a scheme of patchinit.init.baselines,
                                                         # or "model" for the model's own (Fixup)
              "patch": {"method": "A", "layers": ["conv1"], "seed": 0,
                        "deep_mapping": "activations", "options": {...MethodAOptions fields},
                        "deep_options": {...}}},          # optional: overrides for activation patches
     "train": {"epochs": 20, "lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4,
               "schedule": "inv", "batch_size": 64, "augment": False},
     "supermask": None,                                  # or {"prune": 0.5}: edge-popup training
     "seed": 0,
     "data_fingerprint": "arrays-sha256:..."}            # added by identify(): the data copy's arrays

Method B runs set ``init.patch = {"method": "B", "options": {"P": ..., "C": ..., "D": ...,
"simple": ...}}``; their patches are drawn with the run's seed, as in the thesis.

``seed`` fixes the random layers and the data order.  The patch filters come
from ``init.patch.seed`` (UMAP, k-means), fixed by default, so that the seeds of a
comparison vary the *random* layers and the data order while the patch filters stay
the same, as in method A's protocol; they are computed once per process and reused.
"""
from __future__ import annotations

import copy
import functools
import hashlib
import logging
import os
import time
from typing import Callable, Mapping, Sequence

import numpy as np
import torch

from patchinit.data import DeviceBatches, load_dataset
from patchinit.init.baselines import baseline_init_
from patchinit.models import build_model
from patchinit.spec import RunSpec, variant  # noqa: F401  (variant: re-exported, its home is the spec)
from patchinit.train import train

log = logging.getLogger(__name__)

__all__ = ["run", "run_many", "run_all", "build_initialised_model", "resolve_device", "variant", "test_labels",
           "execution_settings", "groups_of", "identify", "data_fingerprint", "DataCopyMismatch"]


def resolve_device(device: str | None = "auto") -> str:
    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(device)


@functools.lru_cache(maxsize=8)
def _dataset(name: str, split: str):
    return load_dataset(name, split, download=False)


class DataCopyMismatch(ValueError):
    """A config names a data copy (its ``data_fingerprint``) other than the one found on this machine."""


@functools.lru_cache(maxsize=8)
def data_fingerprint(name: str) -> str:
    """The fingerprint of the local copy of dataset ``name`` (its decoded train and test arrays;
    see :func:`patchinit.data.fingerprint.arrays_fingerprint`)."""
    from patchinit.data.fingerprint import arrays_fingerprint

    return arrays_fingerprint({"train": _dataset(name, "train"), "test": _dataset(name, "test")})


def identify(config: Mapping) -> dict:
    """``config`` with the fingerprint of the local copy of its dataset, which makes it part of the
    run's identity: a reader with another copy (the official CIFAR-10 instead of our JPEG one, say)
    gets other keys, and so trains rather than being served our records.  A config that already
    names a copy is returned as it is.  The config is checked first (:class:`patchinit.spec.RunSpec`):
    an unknown key or a bad value is an error here, before any run of a grid starts."""
    RunSpec.from_config(config)
    if config.get("data_fingerprint"):
        return dict(config)
    return dict(config, data_fingerprint=data_fingerprint(config["dataset"]))


def _check_data_copy(config: Mapping) -> None:
    want = config.get("data_fingerprint")
    if want and want != data_fingerprint(config["dataset"]):
        raise DataCopyMismatch(
            f"this run was specified for the {config['dataset']} copy {want}, but the copy found here is "
            f"{data_fingerprint(config['dataset'])}; its record would not describe this data. Build the config "
            "without 'data_fingerprint' (experiment.identify adds the local one), or point PATCHINIT_DATA at "
            "that copy")


def _train_images(config: Mapping) -> tuple[np.ndarray, np.ndarray]:
    """The training images of a run: all, the first ``train_subset``, or, with
    ``train_subset_seed``, a seeded random subset of that size.

    The first n are a fair sample only where the source order is shuffled (the
    official MNIST and CIFAR files); image-folder trees are stored class by class,
    so their subsets must be drawn at random.
    """
    ds = _dataset(config["dataset"], "train")
    n = config.get("train_subset")
    if n is None:
        return ds.images, ds.labels
    if config.get("train_subset_seed") is None:
        return ds.images[:n], ds.labels[:n]
    idx = np.sort(np.random.default_rng(int(config["train_subset_seed"])).permutation(len(ds.labels))[:n])
    return ds.images[idx], ds.labels[idx]


def _test_images(config: Mapping) -> tuple[np.ndarray, np.ndarray]:
    """The test images of a run: all, or with ``test_subset = n`` a fixed random n of them
    (drawn with seed 0, so every run of a chapter is scored on the same images)."""
    ds = _dataset(config["dataset"], "test")
    n = config.get("test_subset")
    if n is None:
        return ds.images, ds.labels
    if not 0 < int(n) <= len(ds.labels):
        raise ValueError(f"test_subset must be in [1, {len(ds.labels)}] for {config['dataset']}, got {n}")
    idx = np.sort(np.random.default_rng(0).permutation(len(ds.labels))[:int(n)])
    return ds.images[idx], ds.labels[idx]


def test_labels(config: Mapping) -> np.ndarray:
    """The labels of the test images a run of ``config`` is scored on, in the order of its
    stored predictions (for McNemar and other per-image comparisons)."""
    return _test_images(config)[1]


def _normalization(config: Mapping) -> tuple[list[float], list[float]]:
    norm = config.get("normalize", "data")
    if norm == "data":
        ds = _dataset(config["dataset"], "train")
        return list(ds.mean), list(ds.std)
    return list(norm["mean"]), list(norm["std"])


def _apply_method_b(model: torch.nn.Module, spec: RunSpec, config: Mapping) -> dict:
    """PatchesInit / SimpleInit (method B) on every conv (or ``options.layers``); the run seed drives
    the patch sampling, as in the thesis's seeded runs.  The baseline is already in place
    (:func:`build_initialised_model`)."""
    from patchinit.init.method_b import MethodBConfig, patches_init_

    images, labels = _train_images(config)
    mean, std = _normalization(config)
    opts = dict(spec.init.patch.options)
    records = patches_init_(model, images, labels, layers=opts.pop("layers", None), seed=spec.seed,
                            P=int(opts.pop("P", 50_000)), C=int(opts.pop("C", 500)), D=opts.pop("D", None),
                            simple=bool(opts.pop("simple", False)), mean=mean, std=std,
                            config=MethodBConfig(**opts), progress=False)
    return {r.layer: {k: v for k, v in r.as_dict().items() if k != "entropy_selected"} for r in records}


def _apply_method_a(model: torch.nn.Module, spec: RunSpec, config: Mapping) -> dict:
    """Method A's patch filters in ``init.patch.layers`` (bottom-up); a summary per layer."""
    from patchinit.init.method_a import method_a_init_

    patch = spec.init.patch
    images, _ = _train_images(config)
    mean, std = _normalization(config)
    records = method_a_init_(model, images, patch.layers, seed=patch.seed,
                             deep_mapping=patch.deep_mapping or "activations", deep_options=patch.deep_options or None,
                             scale=patch.scale or 1.0, **patch.options, mean=tuple(mean), std=tuple(std),
                             progress=False)
    return {r.layer: r.summary(model.get_submodule(r.layer).weight.detach().std()) for r in records}


# Patch-initialised weights, reused within a process: a chapter's grid trains the same init at several
# prune rates, learning rates or epochs, and PatchesInit on a ResNet-18 takes minutes.
_PATCHED: dict[str, tuple[dict, dict]] = {}
_PATCHED_MAX = 2


def _remember(key: str, model: torch.nn.Module, patch_record: dict) -> None:
    if len(_PATCHED) >= _PATCHED_MAX:
        _PATCHED.pop(next(iter(_PATCHED)))
    _PATCHED[key] = ({k: v.detach().clone() for k, v in model.state_dict().items()}, copy.deepcopy(patch_record))


def build_initialised_model(config: Mapping, device: str = "cpu") -> tuple[torch.nn.Module, dict]:
    """The model of ``config`` with its baseline and patch initialisation applied.

    Patch-initialised weights are kept for the last two inits computed in this process and reused
    for a config that differs only in what does not touch them (:meth:`RunSpec.init_key`); the record then
    says ``patch_reused``.
    """
    spec = RunSpec.from_config(config)
    seed, init = spec.seed, spec.init
    # the one owner of the baseline: the patch recipes leave every layer they do not write as it is here
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # only for builders that draw from the global RNG; restored afterwards
        kwargs = {"seed": seed} if init.baseline == "model" else {}
        model = build_model(spec.model, spec.num_classes, **kwargs)
    if init.baseline != "model":
        baseline_init_(model, init.baseline, seed=seed)
    record = {}
    if init.patch is not None:
        key = spec.init_key()
        if key in _PATCHED:
            state, patch_record = _PATCHED[key]
            model.load_state_dict(state)
            record["patch"] = copy.deepcopy(patch_record)
            record["patch_reused"] = True  # the same init computed earlier in this process (see RunSpec.init_key)
        else:
            apply = _apply_method_b if init.patch.method == "B" else _apply_method_a
            record["patch"] = apply(model, spec, config)
            _remember(key, model, record["patch"])
    if spec.supermask:
        from patchinit.supermask import to_supermask_

        probe = probe_batch(config)
        record["output_std_dense"] = _output_stds(model, probe)
        # weights are final now: the supermask freezes them and only learns the scores
        to_supermask_(model, spec.supermask.prune, seed=seed)
        record["output_std"] = _output_stds(model, probe)  # the network that trains, at its initial mask
    return model.to(device), record


PROBE_IMAGES = 256


def probe_batch(config: Mapping) -> torch.Tensor:
    """The first PROBE_IMAGES training images of a run, normalised: the batch its init's scale is read on."""
    images, _ = _train_images(config)
    mean, std = _normalization(config)
    x = torch.from_numpy(np.ascontiguousarray(images[:PROBE_IMAGES])).permute(0, 3, 1, 2).float() / 255
    return (x - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]


def _output_stds(model: torch.nn.Module, x: torch.Tensor) -> dict:
    """Std of every conv's and linear layer's output on ``x`` (a forward-scale record of the init), read on
    a copy of the model in training mode, so that batch norm normalises with the batch's statistics and
    the model's own running statistics are untouched."""
    from patchinit.init.scale import layer_output_std

    probe = copy.deepcopy(model).train()
    names = [n for n, m in probe.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    with torch.random.fork_rng(devices=[]):
        return {k: round(v, 6) for k, v in layer_output_std(probe, x, names).items()}


def _batches(config: Mapping, device: str):
    mean, std = _normalization(config)
    t = config["train"]
    images, labels = _train_images(config)
    tr = DeviceBatches.from_arrays(images, labels, mean, std, device=device, batch_size=t.get("batch_size", 128),
                                   augment=t.get("augment", False))
    test_images, test_labels = _test_images(config)
    te = DeviceBatches.from_arrays(test_images, test_labels, mean, std, device=device, batch_size=1024)
    return tr, te


def execution_settings(device: str) -> dict:
    """How a run executes on ``device``, beyond its config: :data:`patchinit.train.EXECUTION_FIELDS`.

    They change only the order (or, for TF32, the rounding) of float operations, so they are provenance,
    recorded in each record's ``extra.execution``, not part of a run's identity.  On CUDA: NHWC layout,
    fused SGD and TF32 (``PATCHINIT_TF32=0`` turns it off); ``torch.compile`` when
    ``PATCHINIT_COMPILE=1`` (it costs tens of seconds per model up front, so it pays
    for long runs only; ``benchmarks/bench_epoch.py --compile`` measures it).  On the
    CPU all three are off: there they were measured slower, or no faster.
    """
    if torch.device(device).type != "cuda":
        return {"channels_last": False, "fused": False, "compile": False, "tf32": False}
    return {"channels_last": True, "fused": True, "compile": os.environ.get("PATCHINIT_COMPILE", "0") == "1",
            "tf32": os.environ.get("PATCHINIT_TF32", "1") == "1"}


def _record(result, init_record: dict, execution: Mapping) -> dict:
    final = result.final
    return {"metrics": result.metrics, "predictions": result.predictions,
            "result": {"test_acc": final.get("test_acc"), "test_top5": final.get("test_top5"),
                       "test_loss": final.get("test_loss"), "diverged_at": result.diverged_at},
            "extra": {"init": init_record, "train_seconds": round(result.seconds, 3), "execution": dict(execution)}}


def _checkpoint_dir(checkpoint_dir: str | None) -> str | None:
    return checkpoint_dir or os.environ.get("PATCHINIT_CHECKPOINTS")


def run(config: Mapping, *, device: str | None = "auto", progress: bool | None = None,
        checkpoint_dir: str | None = None, stop_after: int | None = None) -> dict:
    """Initialise and train the model of ``config``; return the fields of a results record.

    With ``checkpoint_dir`` (default ``$PATCHINIT_CHECKPOINTS``) the run checkpoints after
    every epoch to ``<dir>/<config key>.pt`` and resumes from it when restarted.
    ``stop_after=E`` trains only the first E epochs of the schedule (an exact prefix).
    """
    from patchinit.results import config_key

    spec = RunSpec.from_config(config)  # every key and value checked before any work
    _check_data_copy(config)
    device = resolve_device(device)
    checkpoint_dir = _checkpoint_dir(checkpoint_dir)
    model, init_record = build_initialised_model(config, device)
    tr, te = _batches(config, device)
    ckpt = f"{checkpoint_dir}/{config_key(config)}.pt" if checkpoint_dir else None
    execution = execution_settings(device)
    result = train(model, tr, te, spec.train.trainer_config(execution), seed=spec.seed, checkpoint=ckpt,
                   progress=progress, stop_after=stop_after)
    return {**_record(result, init_record, execution), "device": device}


def _group_key(config: Mapping) -> str:
    """Configs with the same key differ only in seed and init, so they can train together
    (:meth:`patchinit.spec.RunSpec.group_key`)."""
    return RunSpec.from_config(config).group_key()


def run_many(configs: Sequence[Mapping], *, device: str | None = "auto", progress: bool | None = None,
             checkpoint_dir: str | None = None, stop_after: int | None = None) -> list[dict]:
    """Train configs that differ only in ``seed`` and ``init`` together.

    :func:`patchinit.train.train_many` takes one vmapped step per batch on CUDA and
    trains the models one after another on the CPU, where stacking is slower (and
    for models with BatchNorm, which cannot be stacked).  With ``checkpoint_dir``
    (default ``$PATCHINIT_CHECKPOINTS``) the group checkpoints after every epoch to
    ``<dir>/group-<hash of its members' keys>.pt`` and resumes from it.
    """
    from patchinit.train import train_many
    from patchinit.results import config_key

    device = resolve_device(device)
    shared = {_group_key(c) for c in configs}
    if len(shared) != 1:
        raise ValueError("run_many needs configs that differ only in seed, init and experiment")
    for c in configs:
        _check_data_copy(c)
    checkpoint_dir = _checkpoint_dir(checkpoint_dir)
    ckpt = None
    if checkpoint_dir:
        members = hashlib.sha256(" ".join(config_key(c) for c in configs).encode()).hexdigest()[:16]
        ckpt = f"{checkpoint_dir}/group-{members}.pt"
    built = [build_initialised_model(c, device) for c in configs]
    tr, te = _batches(configs[0], device)
    execution = execution_settings(device)
    results = train_many([m for m, _ in built], tr, te, RunSpec.from_config(configs[0]).train.trainer_config(execution),
                         seeds=[int(c["seed"]) for c in configs], progress=progress, checkpoint=ckpt,
                         stop_after=stop_after)
    return [{**_record(r, rec, execution), "device": device} for r, (_, rec) in zip(results, built)]


def groups_of(configs: Sequence[Mapping], max_size: int | None = None) -> list[list[Mapping]]:
    """``configs`` cut into groups that can train together (same config up to ``seed``,
    ``init`` and ``experiment``), in order of first appearance, each at most ``max_size`` long."""
    if max_size is not None and max_size < 1:
        raise ValueError(f"max_size must be >= 1 or None, got {max_size}")
    by_key: dict[str, list[Mapping]] = {}
    for c in configs:
        by_key.setdefault(_group_key(c), []).append(c)
    size = max_size or max((len(g) for g in by_key.values()), default=1)
    return [g[i:i + size] for g in by_key.values() for i in range(0, len(g), size)]


def run_all(store, configs: Sequence[Mapping], *, allow_run: bool = True, device: str | None = "auto",
            command: str | None = None, group: bool = True, max_group: int | None = None,
            progress: bool | None = None, stop_after: int | None = None,
            announce: Callable[[str], None] | None = None) -> list[dict]:
    """Load every config from ``store``; train the missing ones, grouped for :func:`run_many`
    (``group=False`` trains them one by one) in groups of at most ``max_group``.

    Each config is first given the local data copy's fingerprint (:func:`identify`), so the
    records are those of this copy.  ``stop_after=E`` asks for exact prefixes: a record with
    at least E epochs of the config's schedule serves, and missing runs train E epochs.
    ``announce`` (for example ``print``) is told of each run as it is trained and stored.
    """
    from patchinit.results import MissingRunsError, config_key, describe_run

    configs = [identify(c) for c in configs]
    missing = store.missing(configs, stop_after)
    if missing and not allow_run:
        raise MissingRunsError(missing, command)
    if missing:
        store.check_writable()  # before any training, not after it
    for members in groups_of(missing, max_group) if group else [[c] for c in missing]:
        t0 = time.perf_counter()
        outs = (run_many(members, device=device, progress=progress, stop_after=stop_after) if len(members) > 1
                else [run(members[0], device=device, progress=progress, stop_after=stop_after)])
        wall = time.perf_counter() - t0
        for c, out in zip(members, outs):
            out = dict(out, wall_time_s=round(wall, 3))
            out["extra"] = dict(out.get("extra", {}), trained_together=len(members))
            store.run_or_load(c, lambda _c, out=out: out, profile=c.get("profile"), min_epochs=stop_after)
            if announce:
                announce(f"trained {config_key(c)} ({describe_run(c)}) in {wall:.0f} s -> {store.path(c)}")
    return [store.get(c, stop_after) for c in configs]
