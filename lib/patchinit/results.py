"""The content-addressed results store.

One JSON record per training run, stored as ``<root>/runs/<key>.json`` where
``key`` is a stable hash of the run's full configuration.  The store is committed
to the repository, so the book can be rebuilt without retraining, and every number
in it can be traced to its configuration, seed, device, time and commit.

A record holds::

    key, config, profile           what was run
    metrics                        one dict per epoch (test accuracy, loss, ...)
    result                         the summary the book reports (e.g. last-epoch top-1)
    predictions                    final test predictions (compact), for paired tests
    extra                          anything else the run returns (init records, timings)
    wall_time_s, device, torch_version, python_version, git_commit, created

Writes go to a temporary file in the same folder and are moved into place with
``os.replace``, which is atomic: a crash never leaves a torn record, an earlier
record is never lost, and concurrent writers of the same run simply race to put
the same complete content in place.
"""
from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import json
import logging
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np

log = logging.getLogger(__name__)

__all__ = [
    "ResultsStore", "MissingRunsError", "config_key", "canonical_json", "encode_predictions",
    "decode_predictions", "provenance",
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


# -- provenance ------------------------------------------------------------------------
def _git_commit() -> str:
    env = os.environ.get("PATCHINIT_GIT_COMMIT")
    if env:
        return env
    try:
        here = Path(__file__).resolve().parent
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                             timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return (sha + ("-dirty" if dirty else "")) if sha else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _device_name(device: str | None) -> str:
    import torch

    if device and str(device).startswith("cuda") and torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name(torch.device(device))}"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"cpu: {cpu} ({os.cpu_count()} cores)"


def provenance(device: str | None = None) -> dict:
    """Where and with what a run was made."""
    import torch

    return {
        "device": _device_name(device),
        "torch_version": torch.__version__,
        "python_version": sys.version.split()[0],
        "git_commit": _git_commit(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


# -- the store -------------------------------------------------------------------------
class MissingRunsError(RuntimeError):
    """Raised when a notebook may not train and some runs are not in the store."""

    def __init__(self, missing: list[Mapping], command: str | None = None):
        self.missing = missing
        lines = [f"{len(missing)} run(s) are not in the results store:"]
        lines += [f"  - {config_key(c)}  {canonical_json(c)}" for c in missing[:20]]
        if len(missing) > 20:
            lines.append(f"  ... and {len(missing) - 20} more")
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
    def get(self, config: Mapping) -> dict | None:
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

    def __contains__(self, config: Mapping) -> bool:
        return self.path(config).exists()

    def records(self) -> Iterable[dict]:
        """Every record in the store (order by file name)."""
        for p in sorted(self.runs_dir.glob("*.json")):
            with open(p) as f:
                yield json.load(f)

    def missing(self, configs: Iterable[Mapping]) -> list[Mapping]:
        return [c for c in configs if c not in self]

    # writing
    def put(self, record: Mapping) -> Path:
        """Write a record atomically; returns its path."""
        if "config" not in record:
            raise ValueError("a record needs a 'config'")
        key = config_key(record["config"])
        rec = dict(record, key=key, config=_plain(record["config"]))
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
                    profile: str | None = None, command: str | None = None) -> dict:
        """Return the stored record of ``config``, or run ``fn(config)`` and store it.

        ``fn`` returns a mapping with any of ``metrics``, ``result``, ``predictions``
        (an integer array), ``device``, ``extra`` and ``wall_time_s`` (else measured).  With ``allow_run=False`` a
        missing run raises :class:`MissingRunsError` naming it and ``command``.
        """
        rec = self.get(config)
        if rec is not None:
            return rec
        if not allow_run:
            raise MissingRunsError([config], command)
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
        return rec

    def run_all(self, configs: list[Mapping], fn: Callable[[dict], Mapping], *, allow_run: bool = True,
                command: str | None = None, profile: str | None = None) -> list[dict]:
        """``run_or_load`` for many configs; without ``allow_run``, list *every* missing run first."""
        if not allow_run:
            missing = self.missing(configs)
            if missing:
                raise MissingRunsError(missing, command)
        return [self.run_or_load(c, fn, allow_run=allow_run, command=command, profile=profile) for c in configs]
