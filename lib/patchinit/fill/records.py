"""Training one group (in this process or in a Ray worker) and checking each record before it is written."""
from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import dataclass, field
from typing import Mapping, Sequence

log = logging.getLogger(__name__)

# -- training one group (in this process or in a Ray worker) ----------------------------------------
def train_group(members: Sequence[Mapping], *, device: str | None = "auto", stop_after: int | None = None,
                checkpoint_dir: str | None = None, progress: bool | None = None) -> list[dict]:
    """Build and train the models of one group and return their complete records, the same fields
    :meth:`patchinit.results.ResultsStore.run_or_load` would store (provenance included: it is
    taken here, on the machine that trained).  Nothing is written to the caller's store: the records are
    assembled in a scratch store in a temporary folder, which is removed.  ``stop_after=E`` trains
    epochs 1..E of each run's schedule; ``checkpoint_dir`` (default ``$PATCHINIT_CHECKPOINTS``) makes the
    group checkpoint after every epoch and resume from there."""
    from patchinit.experiment import run, run_many
    from patchinit.results import ResultsStore

    members = [dict(c) for c in members]
    if not members:
        return []
    t0 = time.perf_counter()
    if len(members) > 1:
        outs = run_many(members, device=device, progress=progress, checkpoint_dir=checkpoint_dir,
                        stop_after=stop_after)
    else:
        outs = [run(members[0], device=device, progress=progress, checkpoint_dir=checkpoint_dir,
                    stop_after=stop_after)]
    wall = time.perf_counter() - t0
    records = []
    with tempfile.TemporaryDirectory(prefix="patchinit-group-") as scratch_dir:
        scratch = ResultsStore(scratch_dir)
        for c, out in zip(members, outs):
            out = dict(out, wall_time_s=round(wall, 3))
            out["extra"] = dict(out.get("extra", {}), trained_together=len(members))
            records.append(scratch.run_or_load(c, lambda _c, out=out: out, profile=c.get("profile"),
                                               min_epochs=stop_after))
    return records


# -- checking a record before it is written ----------------------------------------------------------
class MalformedRecord(ValueError):
    """A record that came back from training but cannot be stored as the run's result."""


def _is_number(v) -> bool:
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))


def validate_record(config: Mapping, record, *, min_epochs: int | None = None) -> dict:
    """``record`` if it is a sound record of ``config``, else :class:`MalformedRecord` saying what is wrong.

    Checked: its config is ``config`` (same canonical JSON, so the same key); ``metrics`` is a list of one
    mapping per epoch, numbered 1..E, with numeric (or null) values; E, its ``epochs_run``, is at least
    ``min_epochs`` (default: all of the schedule's) and at most the schedule's; ``result`` is a mapping of
    numbers; ``predictions`` decode, hold one class in [0, num_classes) per test image (``test_subset`` of
    them when the config says); and the whole record is JSON.
    """
    from patchinit.results import canonical_json, config_key, decode_predictions, epochs_run, planned_epochs

    key = config_key(config)

    def bad(why):
        return MalformedRecord(f"record for run {key}: {why}; it was not written")

    if not isinstance(record, Mapping):
        raise bad(f"expected a mapping, got {type(record).__name__}")
    try:
        same = canonical_json(record.get("config") or {}) == canonical_json(config)
    except (TypeError, ValueError) as e:
        raise bad(f"its config is not plain JSON ({e})") from None
    if not same:
        got = config_key(record["config"]) if isinstance(record.get("config"), Mapping) else None
        raise bad(f"it holds the config of another run (key {got})")
    if record.get("key") not in (None, key):
        raise bad(f"its key {record.get('key')!r} is not the config's")
    metrics = record.get("metrics")
    if not isinstance(metrics, list) or not metrics:
        raise bad(f"metrics must be a non-empty list of per-epoch rows, got {type(metrics).__name__} "
                  f"{metrics!r:.60}")
    for i, row in enumerate(metrics, 1):
        if not isinstance(row, Mapping):
            raise bad(f"metrics row {i} is a {type(row).__name__}, not a mapping")
        if row.get("epoch") != i:
            raise bad(f"metrics row {i} says epoch {row.get('epoch')!r}")
        wrong = [k for k, v in row.items() if not (_is_number(v) or isinstance(v, bool))]
        if wrong:
            raise bad(f"metrics row {i} has non-numeric {wrong}")
    planned = planned_epochs(config)
    ran = epochs_run(record)
    need = planned if min_epochs is None else min(int(min_epochs), planned)
    if ran != len(metrics):
        raise bad(f"epochs_run is {ran} but it has {len(metrics)} metric rows")
    if not need <= ran <= planned:
        raise bad(f"it trained {ran} epochs; expected {need}..{planned}")
    result = record.get("result")
    if not isinstance(result, Mapping) or not all(_is_number(v) for v in result.values()):
        raise bad(f"result must be a mapping of numbers, got {result!r:.80}")
    enc = record.get("predictions")
    if not isinstance(enc, Mapping):
        raise bad("it has no encoded predictions")
    try:
        preds = decode_predictions(enc)
    except Exception as e:  # zlib, base64, dtype or size errors all mean the same: unusable
        raise bad(f"its predictions do not decode ({type(e).__name__}: {e})") from None
    n_test = config.get("test_subset")
    if preds.size == 0 or (n_test is not None and preds.size != int(n_test)):
        raise bad(f"it has {preds.size} predictions; the run is scored on {n_test or 'at least 1'} test images")
    classes = config.get("num_classes")
    if classes is not None and (preds.min() < 0 or preds.max() >= int(classes)):
        raise bad(f"its predictions range over {preds.min()}..{preds.max()}, outside the {classes} classes")
    try:
        json.dumps(record, allow_nan=True)
    except (TypeError, ValueError) as e:
        raise bad(f"it is not JSON ({e})") from None
    return dict(record)


# -- the report --------------------------------------------------------------------------------------
@dataclass
class Failure:
    """A group (or one run of it) that did not reach the store, and why."""

    label: str
    keys: list[str]
    error: str

    def line(self) -> str:
        return f"failed: {self.label} ({len(self.keys)} runs: {', '.join(self.keys)}): {self.error}"


@dataclass
class FillReport:
    """What a fill did: runs trained and stored, runs skipped (already stored), runs left to another driver
    (``elsewhere``: in flight there), failures, runs not started (``stop_after_s`` had passed), and the
    store's path."""

    store: str
    trained: int = 0
    skipped: int = 0
    failures: list[Failure] = field(default_factory=list)
    not_started: int = 0
    retried: int = 0
    elsewhere: int = 0

    @property
    def failed(self) -> int:
        """The runs that failed (a failure of a whole group counts each of its runs)."""
        return sum(len(f.keys) for f in self.failures)

    def summary(self) -> str:
        tail = f", not started {self.not_started} (time limit)" if self.not_started else ""
        retried = f", {self.retried} group(s) resubmitted" if self.retried else ""
        elsewhere = f", {self.elsewhere} in flight in another driver" if self.elsewhere else ""
        return (f"trained {self.trained}, skipped {self.skipped}{elsewhere}, failed {self.failed}{tail}{retried}; "
                f"store {self.store}")
