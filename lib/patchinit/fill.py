"""Fill the results store with grids of runs: ``python -m patchinit.fill GRID... [options]``.

GRID is one of the method-A MNIST claim grids (``mnist-A1``, ``mnist-A3``, ``mnist-A4``, ``mnist-A6``, or
``mnist`` for every MNIST run), ``b2`` and ``b4`` (Conv6 at 50%, Random and PatchesInit, 3 seeds: train them
with ``--prefix``), ``cifar10``, ``cifar100``, ``inits``, ``readings``, ``PC``, ``D``, ``tiny``, ``partial``
(method B) or ``a-fixup``, ``a-volume``, ``a-resnet18`` (method A on CIFAR).  The chapters build the same
configs with the same functions (:mod:`patchinit.protocols`), so what this trains is exactly what they load.

Runs that differ only in seed and init form a group, which trains as one stack of models on CUDA
(``patchinit.multi.train_many``; at most ``--max-group`` models per stack) and one after another on the
CPU; ``--one-by-one`` makes every run its own group.  A group is the unit of work of both engines:

* ``--engine local`` (the default) trains the groups one after another in this process;
* ``--engine ray`` submits one Ray task per group to the cluster at ``--address`` (or to a Ray instance
  started here), one GPU per task on a cluster with GPUs, ``--cpus-per-task`` CPUs otherwise.  Each task
  builds its models from the configs, trains them and *returns* its records; this process alone writes
  them to the store, atomically, as each task finishes, so a killed driver loses only the runs in flight.

Either way every returned record is checked before it is written (:func:`validate_record`): a malformed
one is refused and reported, never stored.  A group that raises is reported with its error and the other
groups go on; ``--retries N`` resubmits it up to N times.  A Ray worker process that dies mid-task is
retried by Ray itself; its group's records still reach the store once.  Runs already in the store are
skipped (checked again just before each group starts, so a second driver on the same store does not
repeat them).

``--prefix E`` trains the exact schedule only up to epoch E (an exact-prefix tier run); a record with at
least E epochs serves, and a later full run supersedes it.  ``--stop-after S`` starts no new group after
S seconds.  With ``PATCHINIT_CHECKPOINTS`` set, every group checkpoints after each epoch and a restarted
command resumes it (a prefix run is then extended, not redone); on a cluster that folder must be a path
every node sees (a shared file system).  ``--part i/n`` (deprecated: use ``--engine ray``) takes every
n-th group starting at i.

Records must come from committed code: the command refuses a tree with uncommitted changes to tracked
files (``--allow-dirty`` trains from it anyway), and pins ``PATCHINIT_GIT_COMMIT`` for this
process and every Ray worker to the commit it started from.
"""
from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import sys
import tempfile
import time
import traceback
import warnings
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Sequence

from patchinit import bars
from patchinit import protocols as P

log = logging.getLogger(__name__)

__all__ = ["GRIDS", "grid_rows", "plan_configs", "split_groups", "take_part", "pending", "Job", "train_group",
           "validate_record", "MalformedRecord", "Failure", "FillReport", "LocalEngine", "RayEngine", "fill",
           "main", "RAY_VERSION"]

#: The Ray release this project pins and tests (requirements.txt); other 2.x releases likely work.
RAY_VERSION = "2.60.0"
#: How often Ray reruns a task whose worker process died (a system failure, not an exception).
WORKER_RETRIES = 3
#: The driver's environment variables handed to every Ray worker (when set).
WORKER_ENV = ("PATCHINIT_GIT_COMMIT", "PATCHINIT_GIT_DIFF_SHA256", "PATCHINIT_DATA", "PATCHINIT_CACHE", "PATCHINIT_COMPILE",
              "PATCHINIT_CHECKPOINTS")


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
    "scaling": P.method_b_scaling_grid,
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
    """What a fill did: runs trained and stored, runs skipped (already stored), failures, runs not started
    (``stop_after_s`` had passed), and the store's path."""

    store: str
    trained: int = 0
    skipped: int = 0
    failures: list[Failure] = field(default_factory=list)
    not_started: int = 0
    retried: int = 0

    @property
    def failed(self) -> int:
        """The runs that failed (a failure of a whole group counts each of its runs)."""
        return sum(len(f.keys) for f in self.failures)

    def summary(self) -> str:
        tail = f", not started {self.not_started} (time limit)" if self.not_started else ""
        retried = f", {self.retried} group(s) resubmitted" if self.retried else ""
        return (f"trained {self.trained}, skipped {self.skipped}, failed {self.failed}{tail}{retried}; "
                f"store {self.store}")


# -- engines -----------------------------------------------------------------------------------------
def _error_text(e: BaseException) -> str:
    cause = getattr(e, "cause", None)  # a RayTaskError wraps the task's own exception
    if isinstance(cause, BaseException):
        e = cause
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"


class LocalEngine:
    """Trains each group in this process, one after another (the default engine)."""

    name = "local"
    slots = 1
    inner_progress = None  # per-epoch bars on a terminal, as a plain run shows

    def __init__(self, train_fn: Callable[..., list] | None = None):
        self.train_fn = train_fn or train_group
        self._jobs: dict[int, dict] = {}
        self._ids = itertools.count()

    def submit(self, kwargs: dict) -> int:
        handle = next(self._ids)
        self._jobs[handle] = kwargs
        return handle

    def next_done(self, handles: Sequence[int]):
        """Run the first of ``handles``; return it with its records or the exception it raised."""
        handle = handles[0]
        kwargs = self._jobs.pop(handle)
        try:
            return handle, self.train_fn(**kwargs)
        except Exception as e:  # reported with the group; the other groups go on
            log.debug("group failed:\n%s", traceback.format_exc())
            return handle, e

    def close(self) -> None:
        pass


class RayEngine:
    """Submits each group as a Ray task and hands back each task's records as it finishes.

    ``address`` is the cluster's (``"auto"`` for the one this node belongs to); None starts a Ray instance
    in this process unless one is already initialised (``init_kwargs`` go to ``ray.init`` then).  On a
    cluster with GPUs each task takes ``gpus_per_task`` GPUs (default 1), else ``cpus_per_task`` CPUs.
    At most ``max_in_flight`` tasks are submitted at once (default: twice the tasks the cluster can run),
    so that ``stop_after_s`` and the store check just before submission take effect.  ``worker_env`` are
    environment variables for the workers (default: the driver's :data:`WORKER_ENV` that are set);
    ``ship_code`` uploads this process's ``patchinit`` to the workers (default: when ``address`` is given),
    so they train with the code the records name.
    """

    name = "ray"
    inner_progress = False

    def __init__(self, address: str | None = None, *, device: str | None = "auto", cpus_per_task: float = 1,
                 gpus_per_task: float | None = None, max_in_flight: int | None = None,
                 worker_env: Mapping[str, str] | None = None, ship_code: bool | None = None,
                 train_fn: Callable[..., list] | None = None, init_kwargs: Mapping | None = None):
        try:
            import ray
        except ImportError:
            raise ImportError(f"--engine ray needs Ray: pip install ray=={RAY_VERSION} (or use --engine local)") \
                from None
        self._ray = ray
        self._owns = False
        env = {k: os.environ[k] for k in WORKER_ENV if os.environ.get(k)} if worker_env is None else dict(worker_env)
        ship = ship_code if ship_code is not None else address is not None
        task_env: dict = {"env_vars": env} if env else {}
        if not ray.is_initialized():
            # the job's runtime environment: the variables, and (uploaded once) this process's patchinit
            job_env = dict(task_env)
            if ship:
                import patchinit

                job_env["py_modules"] = [patchinit]
            init_kwargs = dict(init_kwargs or {})
            if job_env:
                init_kwargs["runtime_env"] = {**job_env, **init_kwargs.get("runtime_env", {})}
            ray.init(address=address, **init_kwargs)
            self._owns = True
            task_env = {}  # the tasks inherit the job's
        elif ship_code:
            raise RuntimeError("ship_code needs the engine to start Ray (ray.init with the code as a job-level "
                               "py_module); Ray is already initialised in this process")
        resources = ray.cluster_resources()
        gpus = float(resources.get("GPU", 0))
        cpus = float(resources.get("CPU", 0))
        wants_cpu = device is not None and str(device).startswith("cpu")
        if device is not None and str(device).startswith("cuda") and gpus == 0:
            raise RuntimeError(f"--device {device} but the Ray cluster has no GPUs (resources: {resources}); "
                               "start its nodes on GPU machines or pass --device cpu")
        self.gpus_per_task = 0.0 if wants_cpu or gpus == 0 else float(gpus_per_task or 1)
        self.cpus_per_task = float(cpus_per_task)
        if self.gpus_per_task:
            capacity = int(gpus // self.gpus_per_task)
        else:
            capacity = int(cpus // self.cpus_per_task) if self.cpus_per_task else int(cpus)
        self.slots = int(max_in_flight) if max_in_flight else max(1, 2 * capacity)
        options = {"num_cpus": self.cpus_per_task, "max_retries": WORKER_RETRIES, "retry_exceptions": False}
        if self.gpus_per_task:
            options["num_gpus"] = self.gpus_per_task
        if task_env:
            options["runtime_env"] = task_env
        self._remote = ray.remote(train_fn or train_group).options(**options)
        log.info("Ray engine: %s; %s per task; up to %d tasks in flight",
                 {k: v for k, v in resources.items() if k in ("CPU", "GPU")},
                 f"{self.gpus_per_task:g} GPU" if self.gpus_per_task else f"{self.cpus_per_task:g} CPU", self.slots)

    def submit(self, kwargs: dict):
        return self._remote.remote(**kwargs)

    def next_done(self, handles: Sequence):
        """Wait for the first of ``handles`` to finish; return it with its records or its exception."""
        ready, _ = self._ray.wait(list(handles), num_returns=1)
        ref = ready[0]
        try:
            return ref, self._ray.get(ref)
        except Exception as e:  # a task's exception (RayTaskError), or its worker died past WORKER_RETRIES
            log.debug("task failed: %s", e)
            return ref, e

    def close(self) -> None:
        if self._owns:
            self._ray.shutdown()


# -- the driver --------------------------------------------------------------------------------------
def _as_jobs(groups) -> list[Job]:
    jobs = []
    for k, g in enumerate(groups, 1):
        jobs.append(g if isinstance(g, Job) else Job(f"group {k}", list(g)))
    return jobs


def fill(store, groups, *, engine=None, device: str | None = "auto", prefix: int | None = None,
         checkpoint_dir: str | None = None, retries: int = 0, stop_after_s: float | None = None,
         started: float | None = None, progress: bool | None = None,
         announce: Callable[[str], None] | None = None) -> FillReport:
    """Train every run of ``groups`` (lists of identified configs, or :class:`Job`) that ``store`` lacks,
    on ``engine`` (default :class:`LocalEngine`), and write each returned record, once checked by
    :func:`validate_record`, to ``store`` as its group finishes.  Returns a :class:`FillReport`.

    ``prefix=E`` trains epochs 1..E of each schedule (a record with at least E epochs serves).  A group
    that raises is reported in the report's ``failures`` and resubmitted up to ``retries`` times; a
    malformed record is refused (reported, not written, not retried).  No group starts once
    ``stop_after_s`` seconds have passed since ``started`` (default: now).  ``progress`` shows a bar over
    runs, done, running and failed (None: :func:`patchinit.bars.disable` decides: on a terminal);
    ``announce`` is told of each stored run and each finished group.  An engine passed in stays open (close
    it with its ``close()``).
    """
    from tqdm import tqdm

    from patchinit.results import config_key, describe_run

    own_engine = engine is None
    engine = engine or LocalEngine()
    started = time.monotonic() if started is None else started
    checkpoint_dir = checkpoint_dir or os.environ.get("PATCHINIT_CHECKPOINTS") or None
    say = announce or (lambda line: None)
    report = FillReport(store=str(store.runs_dir.resolve()))
    queue: list[Job] = []
    for job in _as_jobs(groups):
        todo = store.missing(job.members, prefix)
        report.skipped += len(job.members) - len(todo)
        if todo:
            queue.append(Job(job.label, todo, job.attempt))
    total = sum(len(j.members) for j in queue)
    if total:
        store.check_writable()  # before any training, not after it
    in_flight: dict = {}
    bar = tqdm(total=total, desc="runs", unit="run", disable=bars.disable(progress))

    def show():
        bar.set_postfix({"done": report.trained, "running": sum(len(j.members) for j, _ in in_flight.values()),
                         "failed": report.failed}, refresh=True)

    def fail(job: Job, keys: list[str], error: str):
        report.failures.append(Failure(job.label, keys, error))
        bar.update(len(keys))
        log.warning("%s", report.failures[-1].line())

    try:
        while queue or in_flight:
            while queue and len(in_flight) < engine.slots:
                if stop_after_s is not None and time.monotonic() - started > stop_after_s:
                    report.not_started += sum(len(j.members) for j in queue)
                    say(f"stopping: {stop_after_s:.0f} s have passed; {len(queue)} group(s) not started; "
                        "rerun the command to go on")
                    bar.total -= sum(len(j.members) for j in queue)
                    queue.clear()
                    break
                job = queue.pop(0)
                todo = store.missing(job.members, prefix)  # another driver may have stored some meanwhile
                if len(todo) < len(job.members):
                    report.skipped += len(job.members) - len(todo)
                    bar.total -= len(job.members) - len(todo)
                if not todo:
                    continue
                job = Job(job.label, todo, job.attempt)
                handle = engine.submit(dict(members=todo, device=device, stop_after=prefix,
                                            checkpoint_dir=checkpoint_dir,
                                            progress=getattr(engine, "inner_progress", False)))
                in_flight[handle] = (job, time.monotonic())
                show()
            if not in_flight:
                continue
            handle, outcome = engine.next_done(list(in_flight))
            job, t_submit = in_flight.pop(handle)
            keys = [config_key(c) for c in job.members]
            if isinstance(outcome, BaseException):
                error = _error_text(outcome)
                if job.attempt < retries:
                    report.retried += 1
                    say(f"{job.label} failed ({error}); resubmitting, try {job.attempt + 2} of {retries + 1}")
                    queue.insert(0, Job(job.label, job.members, job.attempt + 1))
                else:
                    fail(job, keys, error)
                show()
                continue
            returned = {}
            if isinstance(outcome, (list, tuple)):
                for rec in outcome:
                    cfg = rec.get("config") if isinstance(rec, Mapping) else None
                    try:
                        returned.setdefault(config_key(cfg) if isinstance(cfg, Mapping) else None, []).append(rec)
                    except (TypeError, ValueError):
                        returned.setdefault(None, []).append(rec)
            others = sorted(str(k) for k in set(returned) - set(keys))
            for c, key in zip(job.members, keys):
                recs = returned.pop(key, [])
                if len(recs) != 1:
                    also = f" (and records of runs it was not given: {', '.join(others)})" if others else ""
                    fail(job, [key], f"MalformedRecord: the group returned {len(recs)} records for run {key}{also}; "
                                     "none was written")
                    continue
                try:
                    rec = validate_record(c, recs[0], min_epochs=prefix)
                except MalformedRecord as e:
                    fail(job, [key], f"MalformedRecord: {e}")
                    continue
                try:
                    path = store.put(rec)
                except (OSError, ValueError) as e:  # the store refused it (disk, permissions, a corrupt old record)
                    fail(job, [key], f"{type(e).__name__}: {e} (the record was not written)")
                    continue
                report.trained += 1
                bar.update(1)
                say(f"trained {key} ({describe_run(c)}) in {float(rec.get('wall_time_s') or 0):.0f} s -> {path}")
            if returned:
                log.warning("%s returned records of runs it was not given; they were ignored", job.label)
            say(f"{job.label} ({len(job.members)} runs) done in {time.monotonic() - t_submit:.0f} s, "
                f"{time.monotonic() - started:.0f} s after the start")
            show()
    finally:
        bar.close()
        if own_engine:
            engine.close()
    return report


# -- the command -------------------------------------------------------------------------------------
def _worker_env(pairs: Sequence[str]) -> dict | None:
    if not pairs:
        return None
    env = {k: os.environ[k] for k in WORKER_ENV if os.environ.get(k)}
    for item in pairs:
        name, eq, value = item.partition("=")
        if not eq:
            if name not in os.environ:
                raise SystemExit(f"--worker-env {name}: not set in this environment; pass {name}=VALUE")
            value = os.environ[name]
        env[name] = value
    return env


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0],
                                 epilog="On a cluster: see the README's 'Running the paper profile on a cluster' and "
                                        "the book's page book/cluster.md.")
    ap.add_argument("grids", nargs="+", choices=sorted(GRIDS))
    ap.add_argument("--profile", default="quick", choices=P.PROFILES)
    ap.add_argument("--part", default=None, metavar="i/n",
                    help="deprecated: train every n-th group from the i-th (use --engine ray to spread a grid)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--results", default="results")
    ap.add_argument("--max-group", type=int, default=None, help="most models trained in one stack")
    ap.add_argument("--one-by-one", action="store_true", help="train every run alone")
    ap.add_argument("--dry-run", action="store_true", help="say what would be trained, train nothing")
    ap.add_argument("--prefix", type=int, default=None, metavar="E",
                    help="train only epochs 1..E of each run's exact schedule (an exact-prefix run)")
    ap.add_argument("--precision", default="fp32", choices=P.PRECISIONS,
                    help="bf16: the labelled bfloat16-autocast variant for GPU sessions (other keys)")
    ap.add_argument("--inits", default=None, help="comma-separated: only the rows with these inits")
    ap.add_argument("--seeds", default=None, help="comma-separated: only these seeds")
    ap.add_argument("--where", action="append", default=[], metavar="KEY=V1,V2",
                    help="only the rows whose KEY (a column of the grid's rows, e.g. train.lr) is one of these "
                         "values (repeatable)")
    ap.add_argument("--allow-dirty", action="store_true",
                    help="train from a tree with uncommitted changes (records carry the diff's hash)")
    ap.add_argument("--stop-after", type=float, default=None,
                    help="start no new group after this many seconds (a device lease's or session's time limit)")
    ap.add_argument("--engine", default="local", choices=("local", "ray"),
                    help="local: train here (default); ray: one Ray task per group on a cluster")
    ap.add_argument("--address", default=None,
                    help="with --engine ray: the cluster to join (host:port, or 'auto' for this node's); "
                         "default: start Ray here")
    ap.add_argument("--retries", type=int, default=0, metavar="N", help="resubmit a group that raised up to N times")
    ap.add_argument("--cpus-per-task", type=float, default=1, help="with --engine ray on CPUs: CPUs per group")
    ap.add_argument("--gpus-per-task", type=float, default=None,
                    help="with --engine ray on GPUs: GPUs per group (default 1; 0.5 puts two groups on a GPU)")
    ap.add_argument("--max-in-flight", type=int, default=None,
                    help="with --engine ray: most groups submitted at once (default: twice the cluster's slots)")
    ap.add_argument("--worker-env", action="append", default=[], metavar="NAME[=VALUE]",
                    help="with --engine ray: an environment variable for the workers (repeatable; besides "
                         f"{', '.join(WORKER_ENV)})")
    ap.add_argument("--ship-code", action=argparse.BooleanOptionalAction, default=None,
                    help="with --engine ray: upload this checkout's patchinit to the workers "
                         "(default: when --address is given)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    return ap


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """The command line; returns the exit status (1 when some run failed)."""
    from patchinit.results import ResultsStore, config_key, git_state

    ap = build_parser(prog)
    args = ap.parse_args(argv)
    name = ap.prog
    part = None
    if args.part is not None:
        try:
            part = parse_part(args.part)
        except ValueError as e:
            ap.error(str(e))
        msg = (f"{name}: --part is deprecated and will be removed; spread a grid over processes, GPUs or "
               "machines with --engine ray (see the README)")
        warnings.warn(msg, DeprecationWarning, stacklevel=1)  # for callers; the line below for people
        print(msg, file=sys.stderr, flush=True)
    if args.retries < 0:
        ap.error(f"--retries must be >= 0, got {args.retries}")
    if args.address and args.engine != "ray":
        ap.error("--address needs --engine ray")
    if not args.dry_run:
        state = git_state()
        if "git_diff_sha256" in state and not args.allow_dirty:
            sys.exit(f"{name}: the checkout has uncommitted changes to tracked files, so the records would not "
                     "name the code that made them. Commit first (or run from a clean worktree: git worktree add "
                     "/tmp/fill HEAD), or pass --allow-dirty to record the diff's hash instead.")
        os.environ.setdefault("PATCHINIT_GIT_COMMIT", state["git_commit"])  # the code as it was at the start
        if "git_diff_sha256" in state:
            os.environ.setdefault("PATCHINIT_GIT_DIFF_SHA256", state["git_diff_sha256"])
    t_start = time.monotonic()
    store = ResultsStore(args.results)
    if not args.dry_run:
        store.check_writable()
    inits = split_names(args.inits) if args.inits else None
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
    where = parse_where(args.where)
    if inits:
        known = {r.get("init") for g in args.grids for r, _ in GRIDS[g](args.profile)}
        unknown = [i for i in inits if i not in known]
        if unknown:
            raise SystemExit(f"--inits: no row of {', '.join(args.grids)} has init {unknown}; "
                             f"the inits there are {sorted(k for k in known if k)}")
    jobs: list[Job] = []
    what = f"epochs 1-{args.prefix} of " if args.prefix else ""
    seen: set[str] = set()
    n_todo = 0
    for grid in args.grids:
        planned = plan_configs(grid, args.profile, inits=inits, seeds=seeds, where=where, precision=args.precision)
        configs = [c for c in planned if config_key(c) not in seen]  # a run two grids share trains once
        seen.update(config_key(c) for c in configs)
        shared = f" ({len(planned) - len(configs)} more in an earlier grid)" if len(configs) < len(planned) else ""
        groups = split_groups(configs, one_by_one=args.one_by_one, max_group=args.max_group)
        mine = take_part(groups, part) if part else groups
        todo = pending(store, mine, args.prefix)
        who = "this part trains" if part else "to train:"
        print(f"{grid}: {len(configs)} runs{shared} in {len(groups)} groups; {who} {what}{sum(map(len, todo))} "
              f"runs in {len(todo)} groups", flush=True)
        if args.dry_run:
            print("  group sizes:", [len(g) for g in todo], flush=True)
            continue
        n_todo += sum(map(len, todo))
        # every group goes to fill(), which skips the stored runs again (and counts them) just before it starts
        jobs += [Job(f"{grid} group {k}/{len(mine)}", list(g)) for k, g in enumerate(mine, 1)]
    if args.dry_run:
        return 0
    if args.engine == "ray" and n_todo:  # no cluster to join when everything is stored
        engine = RayEngine(args.address, device=args.device, cpus_per_task=args.cpus_per_task,
                           gpus_per_task=args.gpus_per_task, max_in_flight=args.max_in_flight,
                           worker_env=_worker_env(args.worker_env), ship_code=args.ship_code)
    else:
        engine = LocalEngine()
    from tqdm import tqdm

    try:
        report = fill(store, jobs, engine=engine, device=args.device, prefix=args.prefix, retries=args.retries,
                      stop_after_s=args.stop_after, started=t_start, progress=False if args.no_progress else None,
                      announce=lambda line: tqdm.write("  " + line, file=sys.stdout))
    finally:
        engine.close()
    for f in report.failures:
        print(f.line(), flush=True)
    print(report.summary(), flush=True)
    return 1 if report.failures else 0


if __name__ == "__main__":
    from patchinit.fill import main as _main  # the importable module, so Ray pickles its functions by name

    sys.exit(_main(prog="python -m patchinit.fill"))
