"""The SGD training loop: schedules, metrics on the device, checkpoint and resume.

One function, :func:`train`, serves every chapter: dense LeNet and ResNets
(method A) and edge-popup supermasks (method B; only parameters with
``requires_grad`` are optimised, so frozen weights stay frozen).

* Schedules: ``constant``; Caffe's ``inv``, ``lr = base·(1 + γ·iter)^(−power)``
  applied every iteration; ``cosine``, ``lr = base·½(1 + cos(π·e/E))`` set at the
  start of each epoch as in the edge-popup reference.
* Metrics are accumulated as device tensors and read once per epoch, so an epoch
  has no host synchronisation on a GPU.
* The data order is the batch pipeline's ``(seed, epoch)`` permutation; a resumed
  run therefore sees exactly the batches an uninterrupted run would.
* A checkpoint (model, optimiser, metrics) is written atomically after each epoch
  when ``checkpoint`` is given, and training resumes from it.
* A run whose loss becomes non-finite is marked ``diverged``; its weights are then
  NaN and further SGD steps cannot change them, so the remaining epochs are filled
  with that same evaluation instead of being computed.
"""
from __future__ import annotations

import logging
import math
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from patchinit import bars
from patchinit.data.pipeline import DeviceBatches

log = logging.getLogger(__name__)

__all__ = ["TrainConfig", "TrainResult", "train", "evaluate", "learning_rate", "numerics", "same_numerics",
           "EXECUTION_FIELDS"]

SCHEDULES = ("constant", "inv", "cosine")
PRECISIONS = ("fp32", "bf16")


def autocast(device: torch.device | str, precision: str):
    """The autocast context for ``precision`` on ``device`` (a no-op for "fp32")."""
    device_type = torch.device(device).type
    return torch.autocast(device_type=device_type, dtype=torch.bfloat16, enabled=precision == "bf16")


@dataclass(frozen=True)
class TrainConfig:
    """Optimiser and schedule.  Defaults are Caffe LeNet's solver (method A, MNIST)."""

    epochs: int = 20
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    schedule: str = "inv"
    inv_gamma: float = 1e-4
    inv_power: float = 0.75
    scalar_lr_factor: float = 1.0  # lr multiplier for biases and scales (see reduced_lr_param)
    # How the arithmetic runs (for GPUs).  precision "bf16" autocasts the forward passes (training and
    # evaluation) to bfloat16 and computes the loss in float32.  bf16 changes the numbers, so it is part
    # of a run's config like any other setting.  The EXECUTION_FIELDS change only the order of float
    # operations, so they are not part of a run's identity: channels_last stores the model and the
    # batches NHWC; fused uses torch's fused SGD kernel; compile runs the model through torch.compile
    # (TorchInductor; worth it for runs of many steps, since compiling takes tens of seconds).
    precision: str = "fp32"
    channels_last: bool = False
    fused: bool = False
    compile: bool = False
    tf32: bool = False  # CUDA: TF32 tensor cores for float32 matmuls and convolutions (an execution setting)

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive finite number, got {self.lr}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")


EXECUTION_FIELDS = ("channels_last", "fused", "compile", "tf32")


def numerics(cfg: TrainConfig) -> dict:
    """The fields of ``cfg`` that determine a run's numbers (all but :data:`EXECUTION_FIELDS`)."""
    return {k: v for k, v in asdict(cfg).items() if k not in EXECUTION_FIELDS}


def learning_rate(cfg: TrainConfig, epoch: int, iteration: int) -> float:
    """The learning rate at ``epoch`` (0-based) and global ``iteration``."""
    if cfg.schedule == "constant":
        return cfg.lr
    if cfg.schedule == "inv":
        return cfg.lr * (1.0 + cfg.inv_gamma * iteration) ** (-cfg.inv_power)
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * epoch / cfg.epochs))


@dataclass
class TrainResult:
    metrics: list[dict] = field(default_factory=list)  # one dict per epoch
    predictions: np.ndarray | None = None  # final test predictions
    diverged_at: int | None = None  # first epoch (1-based) with a non-finite loss
    seconds: float = 0.0

    @property
    def final(self) -> dict:
        return self.metrics[-1] if self.metrics else {}


@torch.no_grad()
def evaluate(model: nn.Module, batches: DeviceBatches, topk: int = 5, precision: str = "fp32",
             channels_last: bool = False) -> dict:
    """Loss, top-1 and top-``k`` accuracy (in %) and the predictions, over a whole split."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=batches.device)
    correct1 = torch.zeros((), device=batches.device, dtype=torch.long)
    correctk = torch.zeros((), device=batches.device, dtype=torch.long)
    preds = []
    for x, y in batches.eval_batches():
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(batches.device, precision):
            logits = model(x)
        logits = logits.float()
        loss_sum += F.cross_entropy(logits, y, reduction="sum")
        k = min(topk, logits.shape[1])
        top = logits.topk(k, dim=1).indices
        correct1 += (top[:, 0] == y).sum()
        correctk += (top == y[:, None]).any(1).sum()
        preds.append(top[:, 0])
    model.train(was_training)
    n = batches.num_examples
    out = {"test_loss": loss_sum.item() / n, "test_acc": 100.0 * correct1.item() / n,
           f"test_top{topk}": 100.0 * correctk.item() / n}
    out["predictions"] = torch.cat(preds).cpu().numpy()
    return out


def last_epoch(cfg: TrainConfig, stop_after: int | None) -> int:
    """The number of epochs to train: all of the schedule's, or the first ``stop_after``."""
    if stop_after is None:
        return cfg.epochs
    if int(stop_after) < 1:
        raise ValueError(f"stop_after must be >= 1 epoch (or None for the whole schedule), got {stop_after}")
    return min(int(stop_after), cfg.epochs)


def reduced_lr_param(name: str) -> bool:
    """Whether ``TrainConfig.scalar_lr_factor`` applies to the parameter called ``name``.

    The Fixup reference's rule (``cifar_train.py``): every parameter whose name
    contains "bias" or "scale", i.e. Fixup's scalar biases and multipliers and the
    classifier's bias.  :func:`patchinit.models.fixup.param_groups` uses the same rule.
    """
    return "bias" in name or "scale" in name


def _param_groups(model: nn.Module, cfg: TrainConfig) -> list[dict]:
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not trainable:
        raise ValueError("the model has no trainable parameters")
    if cfg.scalar_lr_factor == 1.0:
        return [{"params": [p for _, p in trainable], "lr_factor": 1.0}]
    reduced = [p for n, p in trainable if reduced_lr_param(n)]
    others = [p for n, p in trainable if not reduced_lr_param(n)]
    return [g for g in ({"params": others, "lr_factor": 1.0},
                        {"params": reduced, "lr_factor": cfg.scalar_lr_factor}) if g["params"]]


def same_numerics(saved: dict | None, cfg: TrainConfig) -> bool:
    """Whether a checkpoint's saved ``asdict(TrainConfig)`` describes the same run as ``cfg``
    (the run settings of :data:`EXECUTION_FIELDS` may differ)."""
    return saved is not None and {k: v for k, v in saved.items() if k not in EXECUTION_FIELDS} == numerics(cfg)


def save_atomic(obj, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".ckpt.", dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def train(model: nn.Module, train_batches: DeviceBatches, test_batches: DeviceBatches, cfg: TrainConfig,
          *, seed: int = 0, checkpoint: str | os.PathLike | None = None, progress: bool | None = None,
          topk: int = 5, on_epoch: Callable[[dict], None] | None = None,
          stop_after: int | None = None) -> TrainResult:
    """Train ``model`` in place with SGD and return per-epoch test metrics.

    ``stop_after=E`` stops after epoch E of the ``cfg.epochs``-epoch schedule (an
    *exact prefix*: every epoch until then is the one the full run trains, learning
    rate included); with a checkpoint, a later call without it trains on to the end.

    ``seed`` fixes the data order and augmentation (the model's init is the
    caller's business).  Metrics per epoch: ``epoch``, ``lr``, ``train_loss``,
    ``train_acc``, ``test_loss``, ``test_acc``, ``test_top{topk}``, ``seconds``.
    """
    device = train_batches.device
    model.to(device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = bool(cfg.tf32)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    groups = _param_groups(model, cfg)
    opt = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                          nesterov=cfg.nesterov, **({"fused": True} if cfg.fused else {}))
    forward = torch.compile(model) if cfg.compile else model  # shares model's parameters
    result = TrainResult()
    start_epoch, iteration = 0, 0
    ckpt_path = Path(checkpoint) if checkpoint else None
    if ckpt_path and ckpt_path.exists():
        state = torch.load(ckpt_path, map_location=device, weights_only=False)
        if not same_numerics(state.get("train_config"), cfg) or state.get("seed") != seed:
            raise ValueError(f"checkpoint {ckpt_path} was written by a different run "
                             f"(config or seed differ); delete it or choose another path")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start_epoch, iteration = state["epoch"], state["iteration"]
        result.metrics, result.diverged_at = state["metrics"], state["diverged_at"]
        log.info("resumed %s at epoch %d", ckpt_path, start_epoch)

    bar = tqdm(range(start_epoch, last_epoch(cfg, stop_after)), desc="train", leave=False,
               disable=bars.disable(progress))
    t_start = time.perf_counter()
    last_eval = None
    for epoch in bar:
        t0 = time.perf_counter()
        if result.diverged_at is not None:
            row = dict(result.metrics[-1], epoch=epoch + 1, seconds=0.0)
            result.metrics.append(row)
            continue
        model.train()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        lr = learning_rate(cfg, epoch, iteration)
        for x, y in train_batches.epoch(seed, epoch):
            lr = learning_rate(cfg, epoch, iteration)
            for g in opt.param_groups:
                g["lr"] = lr * g["lr_factor"]
            if cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(device, cfg.precision):
                logits = forward(x)
            loss = F.cross_entropy(logits.float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.detach() * len(y)
            correct += (logits.detach().argmax(1) == y).sum()
            iteration += 1
        n = train_batches.num_examples if not train_batches.drop_last else len(train_batches) * train_batches.batch_size
        train_loss = loss_sum.item() / n
        last_eval = evaluate(forward, test_batches, topk, cfg.precision, cfg.channels_last)
        preds = last_eval.pop("predictions")
        row = {"epoch": epoch + 1, "lr": lr, "train_loss": train_loss, "train_acc": 100.0 * correct.item() / n,
               **last_eval, "seconds": time.perf_counter() - t0}
        if not math.isfinite(train_loss):
            result.diverged_at = epoch + 1
            row["diverged"] = True
            log.warning("loss became non-finite in epoch %d (lr=%g); the run diverged", epoch + 1, lr)
        result.metrics.append(row)
        result.predictions = preds
        bar.set_postfix(loss=f"{train_loss:.3f}", acc=f"{row['test_acc']:.2f}")
        if on_epoch:
            on_epoch(row)
        if ckpt_path:
            save_atomic({"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch + 1,
                          "iteration": iteration, "metrics": result.metrics, "diverged_at": result.diverged_at,
                          "train_config": asdict(cfg), "seed": seed, "predictions": result.predictions},
                         ckpt_path)
    if result.predictions is None:  # resumed from a finished checkpoint
        if ckpt_path and ckpt_path.exists():
            result.predictions = torch.load(ckpt_path, map_location="cpu", weights_only=False).get("predictions")
        if result.predictions is None:
            result.predictions = evaluate(model, test_batches, topk, cfg.precision, cfg.channels_last)["predictions"]
    result.seconds = time.perf_counter() - t_start
    return result
