"""Checkpoints of the training loop: written atomically after each epoch, read to resume.

Two layouts, one per execution, both as they were before the two trainers became one loop (so
that checkpoints written then still resume):

* one module (:class:`~patchinit.train.eager.ModuleRun`, what ``train`` writes): ``model``,
  ``optimizer`` (``torch.optim.SGD``'s state dict), ``epoch``, ``iteration``, ``metrics``,
  ``diverged_at``, ``predictions``, ``train_config`` and ``seed``;
* a stack (:class:`~patchinit.train.stack.StackRun`, ``kind: "train_many"``): every model's state
  dict (including those that left the stack when they diverged), the stacked ``momentum`` buffers,
  the models still ``active``, each model's ``results``, ``train_config`` and ``seeds``.

A checkpoint resumes only the run that wrote it: the same :func:`~patchinit.train.config.numerics`
of the config (execution settings may differ) and the same data seeds.
"""
from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import asdict
from pathlib import Path

import torch

from patchinit.train.config import TrainConfig, same_numerics

log = logging.getLogger(__name__)

__all__ = ["save_atomic", "save", "load"]


def save_atomic(obj, path: Path) -> None:
    """``torch.save(obj, path)`` through a temporary file in the same folder and a rename, so that
    ``path`` holds either the old or the new checkpoint, never part of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".ckpt.", dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save(path: Path, run, results: list, cfg: TrainConfig, epoch: int, iteration: int) -> None:
    """Write the state of ``run`` (an execution of the loop) after ``epoch`` epochs and ``iteration`` steps."""
    state = run.state()
    if run.kind == "module":
        (res,) = results
        obj = {"model": state["model"], "optimizer": state["optimizer"], "epoch": epoch, "iteration": iteration,
               "metrics": res.metrics, "diverged_at": res.diverged_at, "train_config": asdict(cfg),
               "seed": run.seeds[0], "predictions": res.predictions}
    else:
        obj = {"kind": "train_many", "train_config": asdict(cfg), "seeds": run.seeds, "epoch": epoch,
               "iteration": iteration, "active": state["active"], "models": state["models"],
               "momentum": state["momentum"],
               "results": [{"metrics": r.metrics, "predictions": r.predictions, "diverged_at": r.diverged_at}
                           for r in results]}
    save_atomic(obj, path)


def load(path: Path, run, results: list, cfg: TrainConfig) -> tuple[int, int]:
    """Load the checkpoint at ``path`` into ``run`` (weights, optimiser state, models still training)
    and ``results`` (rows so far, predictions, divergence); return ``(epoch, iteration)`` to go on from.
    Raises ``ValueError`` for a checkpoint of another run."""
    state = torch.load(path, map_location=run.device, weights_only=False)
    if run.kind == "module":
        if not same_numerics(state.get("train_config"), cfg) or state.get("seed") != run.seeds[0]:
            raise ValueError(f"checkpoint {path} was written by a different run "
                             f"(config or seed differ); delete it or choose another path")
        (res,) = results
        res.metrics, res.diverged_at = state["metrics"], state["diverged_at"]
        res.predictions = state.get("predictions")
        run.load(state, active=[0] if res.diverged_at is None else [])
        log.info("resumed %s at epoch %d", path, state["epoch"])
    else:
        if (state.get("kind") != "train_many" or not same_numerics(state.get("train_config"), cfg)
                or state.get("seeds") != run.seeds):
            raise ValueError(f"checkpoint {path} was written by a different run (config, seeds or number of "
                             f"models differ); delete it or choose another path")
        for res, saved in zip(results, state["results"]):
            res.metrics, res.predictions, res.diverged_at = saved["metrics"], saved["predictions"], saved["diverged_at"]
        run.load(state, active=list(state["active"]))
        log.info("resumed %s at epoch %d (%d of %d models still training)", path, state["epoch"],
                 len(state["active"]), len(results))
    return state["epoch"], state["iteration"]
