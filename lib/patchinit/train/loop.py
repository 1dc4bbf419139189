"""The training loop, one for every run: epochs of SGD steps over a stack of M >= 1 models.

:func:`train` is the loop over one model (:class:`~patchinit.train.eager.ModuleRun`),
:func:`train_many` the loop over M models stacked (:class:`~patchinit.train.stack.StackRun`), or
the loop once per model where stacking does not pay or cannot be done.  The loop owns everything
the two share:

* the schedule (:func:`~patchinit.train.optim.learning_rate`, per iteration);
* the data order: model m sees the batch pipeline's ``(seeds[m], epoch)`` permutation, so a
  resumed run sees exactly the batches an uninterrupted run would;
* the metric rows, accumulated on the device and read once per epoch (an epoch has no host
  synchronisation on a GPU): ``epoch``, ``lr``, ``train_loss``, ``train_acc``, ``test_loss``,
  ``test_acc``, ``test_top{topk}``, ``seconds``;
* the divergence rule: a model whose epoch loss is non-finite is marked ``diverged`` and stops
  training (its weights are NaN, further steps could not change them); its remaining rows repeat
  that last evaluation with ``seconds`` 0;
* ``stop_after=E``, an exact prefix of the schedule, and the checkpoint after every epoch.

An execution (the ``run`` the loop drives) has ``models`` (all M), ``seeds``, ``device``,
``active`` (the models still training, in stack order) and ``kind``, and the methods
``batches(train_batches, epoch)``, ``step(x, y, lr) -> (losses, hits)`` (one entry per active model,
on the device), ``evaluate(test_batches, topk) -> (sums (3, A) float64, predictions (A, N))``,
``drop(rows)``, ``write_back()``, and ``state()`` / ``load(state, active)`` for checkpoints.
"""
from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm

from patchinit import bars
from patchinit.data.pipeline import DeviceBatches
from patchinit.train import checkpoint as checkpoints
from patchinit.train.config import TrainConfig, last_epoch
from patchinit.train.eager import ModuleRun, evaluate
from patchinit.train.optim import learning_rate
from patchinit.train.stack import StackRun, check_same_architecture, stacking_problem

log = logging.getLogger(__name__)

__all__ = ["TrainResult", "run", "train", "train_many"]


@dataclass
class TrainResult:
    metrics: list[dict] = field(default_factory=list)  # one dict per epoch
    predictions: np.ndarray | None = None  # final test predictions
    diverged_at: int | None = None  # first epoch (1-based) with a non-finite loss
    seconds: float = 0.0  # wall time of the whole call (of all models, for a stack)

    @property
    def final(self) -> dict:
        return self.metrics[-1] if self.metrics else {}


def _row(epoch: int, lr: float, sums: list[float], n_train: int, n_test: int, topk: int, seconds: float) -> dict:
    """One model's metrics row from its epoch sums (train loss, train hits, test loss, top-1, top-k)."""
    tr_loss, tr_correct, te_loss, te_top1, te_topk = sums
    return {"epoch": epoch + 1, "lr": lr, "train_loss": tr_loss / n_train, "train_acc": 100.0 * tr_correct / n_train,
            "test_loss": te_loss / n_test, "test_acc": 100.0 * te_top1 / n_test,
            f"test_top{topk}": 100.0 * te_topk / n_test, "seconds": seconds}


def run(ex, train_batches: DeviceBatches, test_batches: DeviceBatches, cfg: TrainConfig, *,
        checkpoint: str | os.PathLike | None = None, progress: bool | None = None, topk: int = 5,
        on_epoch: Callable[[list[dict]], None] | None = None, stop_after: int | None = None,
        desc: str = "train") -> list[TrainResult]:
    """Train the models of the execution ``ex`` for the epochs of ``cfg`` (the first ``stop_after``),
    resuming from ``checkpoint`` when it exists and writing it after each epoch; call ``on_epoch``
    with every model's new row after each epoch.  Returns one :class:`TrainResult` per model."""
    results = [TrainResult() for _ in ex.models]
    single = len(ex.models) == 1
    start_epoch, iteration = 0, 0
    ckpt = Path(checkpoint) if checkpoint else None
    if ckpt and ckpt.exists():
        start_epoch, iteration = checkpoints.load(ckpt, ex, results, cfg)
    n_train = len(train_batches) * train_batches.batch_size if train_batches.drop_last else train_batches.num_examples
    n_test = test_batches.num_examples
    device = train_batches.device
    t_start = time.perf_counter()
    bar = tqdm(range(start_epoch, last_epoch(cfg, stop_after)), desc=desc, leave=False, disable=bars.disable(progress))
    for epoch in bar:
        t0 = time.perf_counter()
        for i, res in enumerate(results):
            if i not in ex.active:  # diverged: its last evaluation again
                res.metrics.append(dict(res.metrics[-1], epoch=epoch + 1, seconds=0.0))
        if ex.active:
            loss_sum = torch.zeros(len(ex.active), device=device)
            correct = torch.zeros(len(ex.active), dtype=torch.long, device=device)
            lr = learning_rate(cfg, epoch, iteration)
            for x, y in ex.batches(train_batches, epoch):
                lr = learning_rate(cfg, epoch, iteration)
                losses, hits = ex.step(x, y, lr)
                loss_sum += losses * y.shape[-1]
                correct += hits
                iteration += 1
            test_sums, preds = ex.evaluate(test_batches, topk)
            numbers = torch.cat([loss_sum[None].double(), correct[None].double(), test_sums]).cpu().numpy()  # one sync
            preds = preds.cpu().numpy()
            seconds = time.perf_counter() - t0
            gone = []
            for r, i in enumerate(ex.active):
                row = _row(epoch, lr, numbers[:, r].tolist(), n_train, n_test, topk, seconds)
                if not math.isfinite(row["train_loss"]):
                    results[i].diverged_at = epoch + 1
                    row["diverged"] = True
                    who = "" if single else f"model {i} (seed {ex.seeds[i]}): "
                    log.warning("%sloss became non-finite in epoch %d (lr=%g); the run diverged", who, epoch + 1, lr)
                    gone.append(r)
                results[i].metrics.append(row)
                results[i].predictions = preds[r].copy()
            accs = [results[i].final["test_acc"] for i in ex.active]
            bar.set_postfix(acc=f"{min(accs):.2f}..{max(accs):.2f}", alive=len(accs) - len(gone))
            if gone:
                ex.drop(gone)
        if on_epoch:
            on_epoch([r.metrics[-1] for r in results])
        if ckpt:
            checkpoints.save(ckpt, ex, results, cfg, epoch + 1, iteration)
    ex.write_back()
    for model, res in zip(ex.models, results):
        if res.predictions is None:  # resumed from a finished checkpoint that holds none
            res.predictions = evaluate(model, test_batches, topk, cfg.precision, cfg.channels_last)["predictions"]
    total = time.perf_counter() - t_start
    for res in results:
        res.seconds = total
    return results


def train(model: nn.Module, train_batches: DeviceBatches, test_batches: DeviceBatches, cfg: TrainConfig,
          *, seed: int = 0, checkpoint: str | os.PathLike | None = None, progress: bool | None = None,
          topk: int = 5, on_epoch: Callable[[dict], None] | None = None,
          stop_after: int | None = None) -> TrainResult:
    """Train ``model`` in place with SGD and return its per-epoch test metrics: the loop over one model.

    * ``seed`` fixes the data order and augmentation (the model's init is the caller's business).
    * ``checkpoint``: a file written atomically after each epoch (model, optimiser, rows); a later
      call with the same path, config and seed resumes from it.
    * ``progress``: show a progress bar (``None``: :func:`patchinit.bars.disable` decides).
    * ``topk``: the k of the ``test_top{k}`` accuracy.
    * ``on_epoch(row)`` is called with the new metrics row after every epoch.
    * ``stop_after=E`` stops after epoch E of the ``cfg.epochs``-epoch schedule (an *exact prefix*:
      every epoch until then is the one the full run trains, learning rate included); with a
      checkpoint, a later call without it trains on to the end.

    Only parameters with ``requires_grad`` are optimised, so frozen weights (a supermask's) stay frozen.
    """
    ex = ModuleRun(model, cfg, train_batches.device, seed)
    [result] = run(ex, train_batches, test_batches, cfg, checkpoint=checkpoint, progress=progress, topk=topk,
                   on_epoch=(lambda rows: on_epoch(rows[0])) if on_epoch else None, stop_after=stop_after)
    return result


def train_many(models: Sequence[nn.Module], train_batches: DeviceBatches, test_batches: DeviceBatches,
               cfg: TrainConfig, seeds: Sequence[int], *, progress: bool | None = None,
               topk: int = 5, vmap: bool | None = None,
               checkpoint: str | os.PathLike | None = None,
               on_epoch: Callable[[list[dict]], None] | None = None,
               stop_after: int | None = None) -> list[TrainResult]:
    """Train ``models`` (one architecture, already initialised) together, in place.

    Model ``m`` is trained with data seed ``seeds[m]`` and ends with the parameters and the
    :class:`TrainResult` that ``train(models[m], ..., seed=seeds[m])`` gives (stacked: up to float
    rounding, since batched kernels sum in another order; a row's ``seconds`` is then the shared
    epoch's and :attr:`TrainResult.seconds` the whole call's).  Trained parameters are written back
    into ``models``, which are moved to the batches' device.

    * ``vmap``: ``True`` trains the models as one stack (:mod:`patchinit.train.stack`), ``False`` runs
      the loop once per model (exactly :func:`train`), ``None`` stacks on CUDA when the models can be
      stacked (:func:`stacking_problem`): on the CPU the stacked step was measured slower (oneDNN's
      grouped convolutions and vmap's layout copies cost more than the per-model overhead they save;
      ``benchmarks/bench_multi.py``).
    * ``checkpoint``: a file path; the stack checkpoints there after each epoch (every model, the
      momentum buffers, the records so far); the per-model loop gives model ``m`` its own file,
      ``<stem>.m<m><suffix>``.
    * ``on_epoch(rows)`` is called after each epoch with the new row of every model (the per-model
      loop calls it with ``[row]`` for each model's rows in turn).
    * ``progress``, ``topk``, ``stop_after``: as in :func:`train`.
    """
    models, seeds = list(models), [int(s) for s in seeds]
    if len(seeds) != len(models):
        raise ValueError(f"seeds has {len(seeds)} entries for {len(models)} models; pass one data seed per model")
    check_same_architecture(models)
    problem = stacking_problem(models[0])
    if vmap and problem:
        raise ValueError(f"{problem}; pass vmap=None or False to train the models one after another")
    device = train_batches.device
    if vmap is None:
        vmap = device.type == "cuda" and problem is None
    ckpt = Path(checkpoint) if checkpoint else None
    if not vmap:
        return [train(m, train_batches, test_batches, cfg, seed=s, progress=progress, topk=topk,
                      checkpoint=ckpt.with_name(f"{ckpt.stem}.m{i}{ckpt.suffix}") if ckpt else None,
                      on_epoch=(lambda row: on_epoch([row])) if on_epoch else None, stop_after=stop_after)
                for i, (m, s) in enumerate(zip(models, seeds))]
    ex = StackRun(models, cfg, device, seeds)
    return run(ex, train_batches, test_batches, cfg, checkpoint=ckpt, progress=progress, topk=topk,
               on_epoch=on_epoch, stop_after=stop_after, desc=f"train x{len(models)}")
