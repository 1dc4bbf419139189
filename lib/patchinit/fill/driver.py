"""The driver: every group to an engine, each returned record checked and stored as it arrives."""
from __future__ import annotations

import logging
import os
import time
from typing import Callable, Mapping

from patchinit import bars

from .engines import LocalEngine, _error_text
from .leases import Leases
from .plan import Job
from .records import Failure, FillReport, MalformedRecord, validate_record

log = logging.getLogger(__name__)

# -- the driver --------------------------------------------------------------------------------------
def _as_jobs(groups) -> list[Job]:
    jobs = []
    for k, g in enumerate(groups, 1):
        jobs.append(g if isinstance(g, Job) else Job(f"group {k}", list(g)))
    return jobs


def fill(store, groups, *, engine=None, device: str | None = "auto", prefix: int | None = None,
         checkpoint_dir: str | None = None, retries: int = 0, stop_after_s: float | None = None,
         started: float | None = None, progress: bool | None = None,
         announce: Callable[[str], None] | None = None, leases: Leases | None = None) -> FillReport:
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

    Just before a group starts, the driver takes a lease on each of its runs (:class:`Leases`, in
    ``<store>/leases`` unless ``leases`` is given) and gives it back once the run's record is stored or the
    run failed.  A run leased by another live driver is skipped (counted in the report's ``elsewhere``), so
    several drivers started on the same grid and store split it between them without repeating a run.
    """
    from tqdm import tqdm

    from patchinit.results import config_key

    own_engine = engine is None
    engine = engine or LocalEngine()
    started = time.monotonic() if started is None else started
    checkpoint_dir = checkpoint_dir or os.environ.get("PATCHINIT_CHECKPOINTS") or None
    say = announce or (lambda line: None)
    report = FillReport(store=str(store.runs_dir.resolve()))
    leases = leases if leases is not None else Leases(store.root / "leases")
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
                # lease first, then look in the store: a driver writes a record before it gives the lease back
                leased = [c for c in job.members if leases.take(config_key(c))]
                todo = store.missing(leased, prefix)  # another driver may have stored some meanwhile
                for key in {config_key(c) for c in leased} - {config_key(c) for c in todo}:
                    leases.give_back(key)
                if len(leased) < len(job.members):
                    report.elsewhere += len(job.members) - len(leased)
                    say(f"{job.label}: {len(job.members) - len(leased)} run(s) in flight in another driver; "
                        "left to it")
                report.skipped += len(leased) - len(todo)
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
            try:
                done = _store_outcome(store, job, keys, outcome, prefix, retries, queue, report, bar, fail, say)
            finally:
                for key in keys:
                    leases.give_back(key)
            if done:
                say(f"{job.label} ({len(job.members)} runs) done in {time.monotonic() - t_submit:.0f} s, "
                    f"{time.monotonic() - started:.0f} s after the start")
            show()
    finally:
        bar.close()
        leases.give_back_all()
        if own_engine:
            engine.close()
    return report


def _store_outcome(store, job: Job, keys: list[str], outcome, prefix: int | None, retries: int, queue: list,
                   report: FillReport, bar, fail: Callable, say: Callable[[str], None]) -> bool:
    """Check and store the records a group returned; or report its failure, and resubmit it (to the front of
    ``queue``) while it has ``retries`` left.  True when the group returned records."""
    from patchinit.results import config_key, describe_run

    if isinstance(outcome, BaseException):
        error = _error_text(outcome)
        if job.attempt < retries:
            report.retried += 1
            say(f"{job.label} failed ({error}); resubmitting, try {job.attempt + 2} of {retries + 1}")
            queue.insert(0, Job(job.label, job.members, job.attempt + 1))
        else:
            fail(job, keys, error)
        return False
    returned: dict = {}
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
    return True
