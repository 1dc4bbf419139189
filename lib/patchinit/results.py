"""The content-addressed results store.

One JSON record per training run, stored as ``<root>/runs/<key>.json`` where
``key`` is a stable hash of the run's full configuration.  The store is committed
to the repository, so the book can be rebuilt without retraining, and every number
in it can be traced to its configuration, seed, device, time and commit.

A record holds::

    key, config, profile           what was run (the config carries the data copy's fingerprint)
    tier, epochs_run               the evidence tier (:func:`tier_of`) and how many of the
                                   config's epochs were trained (an exact prefix stops early)
    metrics                        one dict per epoch (test accuracy, loss, ...)
    result                         the summary the book reports (e.g. last-epoch top-1)
    predictions                    final test predictions (compact), for paired tests
    prefix_predictions             {epoch: predictions} of the shorter records this one extended
    extra                          anything else the run returns (init records, timings)
    wall_time_s, device, torch_version, python_version, git_commit, created
    git_diff_sha256                only when the tree had uncommitted changes

A run's key is the hash of its config, and a prefix of a run (the same config
stopped after epoch E of its T) has the same key: a longer record of a config
supersedes a shorter one, and a shorter one never replaces a longer one.  Reads
ask for at least ``min_epochs`` epochs (default: all of the config's).  When a longer
record extends a shorter one (its first E epochs' metrics are the shorter one's), the
shorter one's test predictions are kept as ``prefix_predictions[E]``, so a paired test
at epoch E still has them (:func:`carry_prefix_predictions`).

Writes go to a temporary file in the same folder and are moved into place with
``os.replace``, which is atomic: a crash never leaves a torn record, an earlier
record is never lost, and concurrent writers of the same run simply race to put
the same complete content in place.
"""
from __future__ import annotations

import base64
import copy
import hashlib
import json
import logging
import math
import os
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from patchinit.provenance import git_state, provenance  # noqa: F401  (re-exported: records' provenance)

log = logging.getLogger(__name__)

__all__ = [
    "ResultsStore", "MissingRunsError", "config_key", "canonical_json", "encode_predictions",
    "decode_predictions", "provenance", "epochs_run", "tier_of", "TIERS", "carry_prefix_predictions",
]

KEY_LENGTH = 20  # hex digits of sha256 kept in file names (80 bits)


# -- hashing ---------------------------------------------------------------------------
def _plain(obj: Any) -> Any:
    """Convert a config to plain JSON types, refusing anything that would hash unstably."""
    if isinstance(obj, Mapping):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, str):
                raise TypeError(f"config keys must be strings, got {k!r}")
            out[k] = _plain(v)
        return out
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (bool, type(None), str)):
        return obj
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        if not math.isfinite(f):
            raise ValueError(f"config values must be finite, got {f}")
        return int(f) if f.is_integer() and abs(f) < 2**53 else f
    raise TypeError(f"config value {obj!r} of type {type(obj).__name__} is not JSON-representable")


def canonical_json(config: Mapping) -> str:
    """The configuration as canonical JSON: sorted keys, no spaces, tuples as lists.

    Floats with integral values are written as ints, so ``lr=1.0`` and ``lr=1`` are
    the same run.
    """
    return json.dumps(_plain(config), sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def config_key(config: Mapping) -> str:
    """Stable hash of a configuration (independent of key order and of tuple vs list)."""
    return hashlib.sha256(canonical_json(config).encode()).hexdigest()[:KEY_LENGTH]


# -- predictions -----------------------------------------------------------------------
def encode_predictions(pred) -> dict:
    """Class predictions as zlib-compressed base64 (about 1 byte per test image)."""
    a = np.asarray(pred)
    if a.ndim != 1 or not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"predictions must be a 1-d integer array, got {a.dtype} {a.shape}")
    dtype = "uint8" if a.size == 0 or (a.min() >= 0 and a.max() < 256) else "int32"
    data = base64.b64encode(zlib.compress(a.astype(dtype).tobytes(), 9)).decode("ascii")
    return {"encoding": "zlib+base64", "dtype": dtype, "n": int(a.size), "data": data}


def decode_predictions(enc: Mapping) -> np.ndarray:
    if enc.get("encoding") != "zlib+base64":
        raise ValueError(f"unknown predictions encoding {enc.get('encoding')!r}")
    a = np.frombuffer(zlib.decompress(base64.b64decode(enc["data"])), dtype=enc["dtype"])
    if a.size != enc["n"]:
        raise ValueError(f"predictions record says n={enc['n']} but holds {a.size}")
    return a.astype(np.int64)


# -- evidence tiers ---------------------------------------------------------------------
#: From strongest to weakest (see the book's claims page): the paper's full protocol; its exact
#: schedule stopped after epoch E; a complete shorter schedule; the CI smoke profile.
TIERS = ("exact", "exact-prefix", "scaled", "quick")
_PROFILE_TIER = {"paper": "exact", "scaled": "scaled", "quick": "quick"}


def planned_epochs(config: Mapping) -> int:
    """The epochs of a config's schedule (``train.epochs``)."""
    return int(config.get("train", {}).get("epochs", 0))


def epochs_run(record: Mapping) -> int:
    """How many epochs a record trained: its ``epochs_run``, else (older records) its metric rows."""
    if record.get("epochs_run") is not None:
        return int(record["epochs_run"])
    return len(record.get("metrics") or [])


def extends(longer: Mapping, shorter: Mapping) -> bool:
    """Whether ``longer`` is ``shorter`` trained on: the same config, more epochs, and the same metrics
    (every value of every epoch) for the epochs they share, as a run resumed from its checkpoint has."""
    if canonical_json(longer["config"]) != canonical_json(shorter["config"]):
        return False
    e = epochs_run(shorter)
    if epochs_run(longer) <= e:
        return False
    same = lambda m: json.dumps(m, sort_keys=True, allow_nan=True, default=float)  # noqa: E731
    return same(list(longer.get("metrics") or [])[:e]) == same(list(shorter.get("metrics") or []))


def carry_prefix_predictions(longer: Mapping, shorter: Mapping) -> dict:
    """``longer`` with the test predictions of ``shorter``, a prefix of the same run, kept under
    ``prefix_predictions[str(E)]`` (and those ``shorter`` carried); unchanged (a copy) when it does not
    :func:`extend <extends>` ``shorter``: predictions of another trajectory would pair the wrong runs."""
    out = dict(longer)
    if not extends(longer, shorter):
        return out
    kept = dict(shorter.get("prefix_predictions") or {})
    if shorter.get("predictions"):
        kept[str(epochs_run(shorter))] = shorter["predictions"]
    kept.update(longer.get("prefix_predictions") or {})
    if kept:
        out["prefix_predictions"] = dict(sorted(kept.items(), key=lambda kv: int(kv[0])))
    return out


def tier_of(record: Mapping) -> str | None:
    """The evidence tier of a record, from its config's profile and how far it trained."""
    config = record.get("config", {})
    profile = config.get("profile", record.get("profile"))
    if profile is None:
        return None  # a user's own run, outside the book's profiles
    tier = _PROFILE_TIER.get(profile)
    if tier is None:
        raise ValueError(f"record {record.get('key')} has profile {profile!r}; expected one of {sorted(_PROFILE_TIER)}")
    if tier == "exact" and (config.get("train_subset") is not None or config.get("test_subset") is not None):
        return "scaled"  # the paper's schedule on fewer images (a chapter's test_subset, say) is not its protocol
    if tier == "exact" and epochs_run(record) < planned_epochs(config):
        return "exact-prefix"
    return tier


# -- the store -------------------------------------------------------------------------
def describe_run(config: Mapping) -> str:
    """One short line naming a run: dataset, model, init, prune rate, lr, seed and epochs."""
    init = config.get("init") or {}
    patch = init.get("patch")
    name = init.get("baseline", "?") if not patch else f"patch {patch.get('method', 'A')}"
    if patch and (patch.get("options") or {}).get("pixel_space") == "normalized":
        name += " (normalised units)"
    parts = [str(config.get("dataset")), str(config.get("model")), name]
    if config.get("supermask"):
        parts.append(f"prune {config['supermask'].get('prune')}")
    train = config.get("train", {})
    parts += [f"lr {train.get('lr')}", f"seed {config.get('seed')}", f"{train.get('epochs')} epochs"]
    return ", ".join(parts)


class MissingRunsError(RuntimeError):
    """Raised when a notebook may not train and some runs are not in the store."""

    def __init__(self, missing: list[Mapping], command: str | None = None):
        self.missing = missing
        lines = [f"{len(missing)} run(s) are not in the results store:"]
        lines += [f"  - {config_key(c)}  {describe_run(c)}" for c in missing[:50]]
        if len(missing) > 50:
            lines.append(f"  ... and {len(missing) - 50} more")
        if command:
            lines.append(f"Produce them with:\n  {command}")
        super().__init__("\n".join(lines))


class ResultsStore:
    """A folder of run records.  ``root`` defaults to ``$PATCHINIT_RESULTS`` or ``./results``."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root or os.environ.get("PATCHINIT_RESULTS") or "results")

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    def path(self, config: Mapping) -> Path:
        return self.runs_dir / f"{config_key(config)}.json"

    # reading
    def _read(self, config: Mapping) -> dict | None:
        p = self.path(config)
        if not p.exists():
            return None
        try:
            with open(p) as f:
                rec = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"results record {p} is not valid JSON ({e}); delete it to rerun the run") from e
        if canonical_json(rec.get("config", {})) != canonical_json(config):
            raise ValueError(f"results record {p} holds a different config than its key says; "
                             "the store is corrupt or was edited by hand")
        return rec

    def get(self, config: Mapping, min_epochs: int | None = None) -> dict | None:
        """The record of ``config`` if it trained at least ``min_epochs`` epochs (default: all of them)."""
        rec = self._read(config)
        need = planned_epochs(config) if min_epochs is None else int(min_epochs)
        if rec is None or epochs_run(rec) < need:
            return None
        return rec

    def has(self, config: Mapping, min_epochs: int | None = None) -> bool:
        return self.get(config, min_epochs) is not None

    def __contains__(self, config: Mapping) -> bool:
        return self.has(config)

    def records(self) -> Iterable[dict]:
        """Every record in the store (order by file name)."""
        for p in sorted(self.runs_dir.glob("*.json")):
            with open(p) as f:
                yield json.load(f)

    def missing(self, configs: Iterable[Mapping], min_epochs: int | None = None) -> list[Mapping]:
        """The configs without a record of at least ``min_epochs`` epochs (default: all)."""
        return [c for c in configs if not self.has(c, min_epochs)]

    def check_writable(self) -> None:
        """Fail now, before any training, if records cannot be written here."""
        d = self.runs_dir
        try:
            d.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".write-check.", dir=d)
            os.close(fd)
            os.unlink(tmp)
        except OSError as e:
            raise PermissionError(f"the results store {d.resolve()} is not writable ({e.strerror}); no run was "
                                  "trained. Make it writable, or point PATCHINIT_RESULTS (or results_dir) at a "
                                  "folder you can write") from e

    # writing
    def put(self, record: Mapping) -> Path:
        """Write a record atomically; returns its path.  A record with fewer epochs than the
        stored one of the same config is not written (the longer run supersedes it)."""
        if "config" not in record:
            raise ValueError("a record needs a 'config'")
        key = config_key(record["config"])
        rec = dict(record, key=key, config=_plain(record["config"]))
        rec["epochs_run"] = epochs_run(rec)
        rec["tier"] = tier_of(rec)
        old = self._read(rec["config"])
        if old is not None and epochs_run(old) > rec["epochs_run"]:
            log.info("kept the stored %s: it has %d epochs, the new record %d", key, epochs_run(old),
                     rec["epochs_run"])
            return self.path(rec["config"])
        if old is not None:
            rec = carry_prefix_predictions(rec, old)
        text = json.dumps(rec, indent=1, sort_keys=True, allow_nan=True)
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        target = self.runs_dir / f"{key}.json"
        fd, tmp = tempfile.mkstemp(prefix=f".{key}.", suffix=".tmp", dir=self.runs_dir)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        return target

    def run_or_load(self, config: Mapping, fn: Callable[[dict], Mapping], *, allow_run: bool = True,
                    profile: str | None = None, command: str | None = None, min_epochs: int | None = None) -> dict:
        """Return the stored record of ``config`` (with at least ``min_epochs`` epochs, default all),
        or run ``fn(config)`` and store it.

        ``fn`` returns a mapping with any of ``metrics``, ``result``, ``predictions``
        (an integer array), ``device``, ``extra`` and ``wall_time_s`` (else measured).  With ``allow_run=False`` a
        missing run raises :class:`MissingRunsError` naming it and ``command``.
        """
        rec = self.get(config, min_epochs)
        if rec is not None:
            return rec
        if not allow_run:
            raise MissingRunsError([config], command)
        self.check_writable()
        t0 = time.perf_counter()
        out = dict(fn(dict(config)))
        wall = time.perf_counter() - t0
        device = out.pop("device", None)
        wall = out.pop("wall_time_s", wall)  # a run trained in a group reports its own time
        preds = out.pop("predictions", None)
        rec = {
            "config": dict(config),
            "profile": profile if profile is not None else config.get("profile"),
            "metrics": out.pop("metrics", []),
            "result": out.pop("result", {}),
            "predictions": None if preds is None else encode_predictions(preds),
            "extra": out.pop("extra", {}),
            "wall_time_s": round(wall, 3),
            **provenance(device),
        }
        if out:
            raise ValueError(f"run function returned unknown fields {sorted(out)}")
        self.put(rec)
        return self._read(config)

    def rekey(self, transform: Callable[[dict], dict], note: str) -> list[tuple[str, str]]:
        """Rewrite every record whose config ``transform`` changes under its new key, then remove
        the old file; the numbers are untouched and ``migrations`` notes the old key and ``note``.
        Returns (old key, new key) pairs.  A record whose new key is already taken is an error,
        raised before anything is written."""
        plan = []
        for p in sorted(self.runs_dir.glob("*.json")):
            with open(p) as f:
                rec = json.load(f)
            new_config = transform(copy.deepcopy(rec["config"]))
            if canonical_json(new_config) != canonical_json(rec["config"]):
                plan.append((p, rec, new_config))
        new_keys = [config_key(c) for _, _, c in plan]
        clash = [k for k in new_keys if (self.runs_dir / f"{k}.json").exists()] + \
                [k for k in set(new_keys) if new_keys.count(k) > 1]
        if clash:
            raise ValueError(f"re-keying would overwrite record(s) {sorted(set(clash))}; nothing was changed")
        done = []
        for (p, rec, new_config), key in zip(plan, new_keys):
            old = rec["key"] if rec.get("key") else p.stem
            migrated = dict(rec, config=new_config,
                            migrations=[*rec.get("migrations", []), {"from_key": old, "note": note}])
            self.put(migrated)
            p.unlink()
            done.append((old, key))
        return done

    def keep_prefix_predictions(self, shorter: Iterable[Mapping]) -> list[str]:
        """Give each stored record that extends one of ``shorter`` (its versions from before :meth:`put`
        kept them, ``tools/keep_prefix_predictions.py``) their predictions; returns the changed keys."""
        changed = []
        for old in shorter:
            rec = self._read(old["config"])
            if rec is None:
                continue
            merged = carry_prefix_predictions(rec, old)
            if merged != rec:
                self.put(merged)
                changed.append(merged["key"])
        return changed

    def run_all(self, configs: list[Mapping], fn: Callable[[dict], Mapping], *, allow_run: bool = True,
                command: str | None = None, profile: str | None = None) -> list[dict]:
        """``run_or_load`` for many configs; without ``allow_run``, list *every* missing run first."""
        if not allow_run:
            missing = self.missing(configs)
            if missing:
                raise MissingRunsError(missing, command)
        else:
            self.check_writable()
        return [self.run_or_load(c, fn, allow_run=allow_run, command=command, profile=profile) for c in configs]
