"""Train several models of one architecture at once, each exactly as :func:`train` would.

The claims compare initialisations over many seeds, so most experiments train
M small networks that differ only in their initial weights and data order.
:func:`train_many` stacks their parameters along a new leading axis and runs one
``torch.func.vmap``-ed forward/backward per batch for all M (PyTorch lowers a
vmapped convolution to one grouped convolution and a vmapped linear layer to one
batched matmul), then one SGD update on the stacked tensors.  Per model nothing
changes:

* its init is the one the caller gave it, its data order and augmentation are
  ``seeds[m]``'s (:meth:`DeviceBatches.epoch_multi` gives model m exactly the batches
  ``epoch(seeds[m], e)`` gives), and its loss is its own batch mean, so its gradient
  is the one :func:`train` computes;
* the update is ``torch.optim.SGD``'s (weight decay added to the gradient, momentum
  buffer, optional Nesterov, ``cfg.scalar_lr_factor`` for biases and scales), written
  with ``torch._foreach_*`` ops on the stacked tensors; only parameters with
  ``requires_grad`` train (supermask scores do, their frozen weights do not);
* each model gets its own :class:`TrainResult` with the rows :func:`train` writes.
  A model whose epoch loss is non-finite is marked diverged and dropped from the
  stack at the end of that epoch, so it cannot disturb the others and, as in
  :func:`train`, its remaining rows repeat its last evaluation.

The one difference: a row's ``seconds`` is the wall time of the shared epoch (all
models together), and :attr:`TrainResult.seconds` the whole call's.

Where it pays: the stacked step saves per-model overhead (Python, kernel launches),
which dominates on a GPU.  On the CPU the convolutions are compute-bound and the
stacked step was measured slower (``benchmarks/bench_multi.py``), so by default
:func:`train_many` stacks on CUDA only and on the CPU calls :func:`train` per model;
``vmap=True`` forces the stacked step anywhere (the tests use it).

The run settings of :class:`TrainConfig` apply as in :func:`train`: ``precision="bf16"``
autocasts the stacked forward, ``compile`` runs the vmapped step through
``torch.compile``; ``channels_last`` has no meaning for the stacked 5-d batches and
``fused`` none for the stacked update (already one multi-tensor op per group), so
the stacked step ignores them.  With ``checkpoint`` the whole stack (every model's
weights, the momentum buffers, the records so far) is written atomically after
each epoch, and a restarted call resumes from it.

Restrictions, checked up front: all models have the same architecture (same
module tree, parameter and buffer names, shapes, dtypes and ``requires_grad``).
Models with BatchNorm, whose running statistics are updated in the forward pass,
cannot be stacked; ``vmap=None`` then trains them one after another.  Other
buffers are passed through unchanged, so they must not be written in ``forward``.
Random layers (dropout) are refused by ``vmap``.
"""
from __future__ import annotations

import copy
import logging
import math
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call
from tqdm import tqdm

from patchinit import bars
from patchinit.data.pipeline import DeviceBatches
from patchinit.train import (TrainConfig, TrainResult, autocast, last_epoch, learning_rate, reduced_lr_param, same_numerics,
                             save_atomic, train)

log = logging.getLogger(__name__)

__all__ = ["train_many", "check_same_architecture", "stacking_problem"]


def _signature(model: nn.Module) -> list[tuple]:
    tensors = [("param", n, tuple(p.shape), p.dtype, p.requires_grad) for n, p in model.named_parameters()]
    tensors += [("buffer", n, tuple(b.shape), b.dtype) for n, b in model.named_buffers()]
    return [("modules", repr(model))] + tensors


def check_same_architecture(models: Sequence[nn.Module]) -> None:
    """Raise ``ValueError`` unless the models are one architecture: same module tree
    (``repr``, which includes hyper-parameters such as a supermask's prune rate),
    same parameters and buffers, at least one trainable parameter, and no model
    object given twice."""
    if len(models) == 0:
        raise ValueError("models is empty; pass at least one model")
    if len({id(m) for m in models}) != len(models):
        raise ValueError("the same model object appears more than once in models; "
                         "pass independent copies (copy.deepcopy) so each can hold its own weights")
    if not any(p.requires_grad for p in models[0].parameters()):
        raise ValueError("the model has no trainable parameters")
    ref = _signature(models[0])
    for i, model in enumerate(models[1:], start=1):
        sig = _signature(model)
        if sig != ref:
            diff = next((a, b) for a, b in zip(ref + [None], sig + [None]) if a != b)
            what = "the module trees differ" if diff[0] and diff[0][0] == "modules" else f"{diff[0]} vs {diff[1]}"
            raise ValueError(f"models[{i}] has a different architecture from models[0] ({what}); "
                             f"train_many needs models of one architecture")


def stacking_problem(model: nn.Module) -> str | None:
    """Why ``model`` cannot be trained in the stacked step, or ``None`` if it can."""
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            return (f"layer {name!r} is {type(module).__name__}, whose running statistics change in forward; "
                    f"the stacked step supports models without BatchNorm only")
    return None


def _stack(models: Sequence[nn.Module], device) -> tuple[dict, dict]:
    """Parameters and buffers of all models, stacked along a new dim 0 (copies)."""
    named = [dict(m.named_parameters()) for m in models]
    params = {name: torch.stack([n[name].detach() for n in named]).to(device).requires_grad_(p.requires_grad)
              for name, p in named[0].items()}
    named = [dict(m.named_buffers()) for m in models]
    buffers = {name: torch.stack([n[name] for n in named]).to(device) for name in named[0]}
    return params, buffers


class _Stack:
    """M models as stacked tensors, their SGD state, and the vmapped forward."""

    def __init__(self, models: Sequence[nn.Module], cfg: TrainConfig, device):
        self.base = copy.deepcopy(models[0]).to("meta")  # the module tree; tensors come from the stack
        self.params, self.buffers = _stack(models, device)
        self.trainable = [n for n, p in self.params.items() if p.requires_grad]
        self.lr_factor = {n: cfg.scalar_lr_factor if reduced_lr_param(n) else 1.0 for n in self.trainable}
        self.momentum = {n: torch.zeros_like(self.params[n]) for n in self.trainable} if cfg.momentum else {}
        self.cfg = cfg
        device_type = torch.device(device).type

        def loss_and_logits(params, buffers, x, y):
            with autocast(device_type, cfg.precision):
                logits = functional_call(self.base, (params, buffers), (x,))
            logits = logits.float()
            return F.cross_entropy(logits, y), logits

        def logits_of(params, buffers, x):
            with autocast(device_type, cfg.precision):
                return functional_call(self.base, (params, buffers), (x,)).float()

        self._train_fn = torch.func.vmap(loss_and_logits)
        self._eval_fn = torch.func.vmap(logits_of, in_dims=(0, 0, None))
        if cfg.compile:
            self._train_fn, self._eval_fn = torch.compile(self._train_fn), torch.compile(self._eval_fn)

    def __len__(self) -> int:
        return next(iter(self.params.values())).shape[0]

    def step(self, x: torch.Tensor, y: torch.Tensor, lr: float) -> tuple[torch.Tensor, torch.Tensor]:
        """One SGD step of every model on its batch ``x[m]``, ``y[m]``; returns the
        per-model losses (M,) and logits (M, B, K), detached."""
        self.base.train()
        for n in self.trainable:
            self.params[n].grad = None
        losses, logits = self._train_fn(self.params, self.buffers, x, y)
        losses.sum().backward()  # models are independent: d(sum)/d(params[m]) = d(loss[m])/d(params[m])
        self._sgd(lr)
        return losses.detach(), logits.detach()

    @torch.no_grad()
    def _sgd(self, lr: float) -> None:
        """``torch.optim.SGD``'s update (dampening 0), on stacked tensors.

        A zero momentum buffer gives ``buf = grad`` on the first step, which is what
        SGD's ``buf = grad.clone()`` does.  Parameters without a gradient are skipped.
        """
        cfg = self.cfg
        for factor in sorted(set(self.lr_factor.values())):
            names = [n for n in self.trainable if self.lr_factor[n] == factor and self.params[n].grad is not None]
            if not names:
                continue
            params = [self.params[n] for n in names]
            grads = [self.params[n].grad for n in names]
            if cfg.weight_decay:
                grads = torch._foreach_add(grads, params, alpha=cfg.weight_decay)
            if cfg.momentum:
                bufs = [self.momentum[n] for n in names]
                torch._foreach_mul_(bufs, cfg.momentum)
                torch._foreach_add_(bufs, grads)
                grads = torch._foreach_add(grads, bufs, alpha=cfg.momentum) if cfg.nesterov else bufs
            torch._foreach_add_(params, grads, alpha=-lr * factor)

    @torch.no_grad()
    def evaluate(self, batches: DeviceBatches, topk: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Per model: ``(loss_sum, top1 correct, topk correct)`` as a (3, M) float64
        tensor, and the predictions (M, N); all on the device, summed as :func:`evaluate` does."""
        self.base.eval()
        m, dev = len(self), batches.device
        loss_sum = torch.zeros(m, device=dev)
        correct = torch.zeros(2, m, dtype=torch.long, device=dev)
        preds = []
        for x, y in batches.eval_batches():
            logits = self._eval_fn(self.params, self.buffers, x)  # (M, B, K), float32
            loss_sum += torch.func.vmap(lambda l: F.cross_entropy(l, y, reduction="sum"))(logits)
            top = logits.topk(min(topk, logits.shape[-1]), dim=-1).indices  # (M, B, k)
            correct[0] += (top[..., 0] == y).sum(1)
            correct[1] += (top == y[:, None]).any(-1).sum(1)
            preds.append(top[..., 0])
        return torch.cat([loss_sum[None].double(), correct.double()]), torch.cat(preds, dim=1)

    def keep(self, rows: torch.Tensor) -> None:
        """Keep only the models at ``rows`` (indices into the current stack)."""
        for n, p in self.params.items():
            self.params[n] = p.detach()[rows].requires_grad_(p.requires_grad)
        self.buffers = {n: b[rows] for n, b in self.buffers.items()}
        self.momentum = {n: b[rows] for n, b in self.momentum.items()}

    @torch.no_grad()
    def write_back(self, models: Sequence[nn.Module], rows: Sequence[int]) -> None:
        """Copy the trained parameters of stack rows ``rows`` into ``models``."""
        for model, r in zip(models, rows):
            named = dict(model.named_parameters())
            for n in self.trainable:
                named[n].copy_(self.params[n][r])


def train_many(models: Sequence[nn.Module], train_batches: DeviceBatches, test_batches: DeviceBatches,
               cfg: TrainConfig, seeds: Sequence[int], *, progress: bool | None = None,
               topk: int = 5, vmap: bool | None = None,
               checkpoint: str | os.PathLike | None = None,
               on_epoch: Callable[[list[dict]], None] | None = None,
               stop_after: int | None = None) -> list[TrainResult]:
    """Train ``models`` (one architecture, already initialised) together, in place.

    Model ``m`` is trained with data seed ``seeds[m]`` and ends with the parameters
    and the :class:`TrainResult` that ``train(models[m], ..., seed=seeds[m])`` gives
    (up to float rounding: batched kernels sum in another order).  Trained
    parameters are written back into ``models``, which are moved to the batches'
    device, as :func:`train` does.

    ``vmap=None`` stacks the models on CUDA when they can be stacked
    (:func:`stacking_problem`) and otherwise calls :func:`train` for each in turn:
    on the CPU the stacked step was measured slower (oneDNN's grouped convolutions
    and vmap's layout copies cost more than the per-model overhead they save;
    ``benchmarks/bench_multi.py``).  ``vmap=True`` forces the stacked step, ``False`` the loop.

    ``checkpoint`` is a file path: the stacked step checkpoints the whole stack there
    after each epoch; the loop gives model ``m`` its own file, ``<stem>.m<m><suffix>``.
    ``on_epoch`` is called after each epoch with the new row of every model (the
    stacked step only; the loop passes it to :func:`train` for each model's rows).
    ``stop_after=E`` stops after epoch E of the schedule, as in :func:`train`.
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
    for model in models:
        model.to(device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = bool(cfg.tf32)
    results = [TrainResult() for _ in models]
    active = list(range(len(models)))  # model index of each stack row
    start_epoch, iteration, momentum = 0, 0, None
    if ckpt and ckpt.exists():
        start_epoch, iteration, active, momentum = _resume(ckpt, models, results, cfg, seeds, device)
    stack = _Stack([models[i] for i in active] or models[:1], cfg, device)
    if not active:
        stack.keep(torch.zeros(0, dtype=torch.long, device=device))
    if momentum is not None:
        stack.momentum = momentum
    n_train = len(train_batches) * train_batches.batch_size if train_batches.drop_last else train_batches.num_examples
    n_test = test_batches.num_examples
    t_start = time.perf_counter()
    bar = tqdm(range(start_epoch, last_epoch(cfg, stop_after)), desc=f"train x{len(models)}", leave=False,
               disable=bars.disable(progress))
    for epoch in bar:
        t0 = time.perf_counter()
        for i, res in enumerate(results):
            if i not in active:
                res.metrics.append(dict(res.metrics[-1], epoch=epoch + 1, seconds=0.0))
        if active:
            loss_sum = torch.zeros(len(active), device=device)
            correct = torch.zeros(len(active), dtype=torch.long, device=device)
            lr = learning_rate(cfg, epoch, iteration)
            for x, y in train_batches.epoch_multi([seeds[i] for i in active], epoch):
                lr = learning_rate(cfg, epoch, iteration)
                losses, logits = stack.step(x, y, lr)
                loss_sum += losses * y.shape[1]
                correct += (logits.argmax(-1) == y).sum(1)
                iteration += 1
            test_sums, preds = stack.evaluate(test_batches, topk)
            numbers = torch.cat([loss_sum[None].double(), correct[None].double(), test_sums]).cpu().numpy()  # one sync
            preds = preds.cpu().numpy()
            seconds = time.perf_counter() - t0
            for row_index, i in enumerate(active):
                row = _row(epoch, lr, numbers[:, row_index].tolist(), n_train, n_test, topk, seconds)
                if not math.isfinite(row["train_loss"]):
                    results[i].diverged_at = epoch + 1
                    row["diverged"] = True
                    log.warning("model %d (seed %d): loss became non-finite in epoch %d (lr=%g); it diverged",
                                i, seeds[i], epoch + 1, lr)
                results[i].metrics.append(row)
                results[i].predictions = preds[row_index].copy()
            _drop_diverged(stack, active, results, models)
            accs = [results[i].final["test_acc"] for i in active]
            if accs:
                bar.set_postfix(acc=f"{min(accs):.2f}..{max(accs):.2f}", alive=len(active))
        if on_epoch:
            on_epoch([r.metrics[-1] for r in results])
        if ckpt:
            stack.write_back([models[i] for i in active], range(len(active)))
            save_atomic({"kind": "train_many", "train_config": asdict(cfg), "seeds": seeds, "epoch": epoch + 1,
                         "iteration": iteration, "active": list(active),
                         "models": [m.state_dict() for m in models], "momentum": stack.momentum,
                         "results": [{"metrics": r.metrics, "predictions": r.predictions,
                                      "diverged_at": r.diverged_at} for r in results]}, ckpt)
    stack.write_back([models[i] for i in active], range(len(active)))
    total = time.perf_counter() - t_start
    for res in results:
        res.seconds = total
    return results


def _resume(path: Path, models, results: list[TrainResult], cfg: TrainConfig, seeds: list[int], device):
    """Load a :func:`train_many` checkpoint into ``models`` and ``results``; return
    ``(epoch, iteration, active rows, momentum buffers)``."""
    state = torch.load(path, map_location=device, weights_only=False)
    if (state.get("kind") != "train_many" or not same_numerics(state.get("train_config"), cfg)
            or state.get("seeds") != seeds):
        raise ValueError(f"checkpoint {path} was written by a different run (config, seeds or number of "
                         f"models differ); delete it or choose another path")
    for model, sd in zip(models, state["models"]):
        model.load_state_dict(sd)
    for res, saved_res in zip(results, state["results"]):
        res.metrics, res.predictions, res.diverged_at = (saved_res["metrics"], saved_res["predictions"],
                                                         saved_res["diverged_at"])
    log.info("resumed %s at epoch %d (%d of %d models still training)", path, state["epoch"],
             len(state["active"]), len(models))
    return state["epoch"], state["iteration"], list(state["active"]), state["momentum"]


def _row(epoch: int, lr: float, sums: list[float], n_train: int, n_test: int, topk: int, seconds: float) -> dict:
    """One model's metrics row, with :func:`train`'s keys, from its epoch sums."""
    tr_loss, tr_correct, te_loss, te_top1, te_topk = sums
    return {"epoch": epoch + 1, "lr": lr, "train_loss": tr_loss / n_train, "train_acc": 100.0 * tr_correct / n_train,
            "test_loss": te_loss / n_test, "test_acc": 100.0 * te_top1 / n_test,
            f"test_top{topk}": 100.0 * te_topk / n_test, "seconds": seconds}


def _drop_diverged(stack: _Stack, active: list[int], results: list[TrainResult], models) -> None:
    """Write back and remove (from ``stack`` and ``active``) the models that just diverged.

    :func:`train` stops stepping a model once it diverged, so its final parameters
    are those at the end of that epoch; removing it also spares the others its cost.
    """
    gone = [r for r, i in enumerate(active) if results[i].diverged_at is not None]
    if not gone:
        return
    stack.write_back([models[active[r]] for r in gone], gone)
    rows = [r for r in range(len(active)) if r not in gone]
    stack.keep(torch.tensor(rows, dtype=torch.long, device=next(iter(stack.params.values())).device))
    active[:] = [active[r] for r in rows]
