"""What a training run is: its :class:`TrainConfig`, which of its fields make its numbers, and how
the config's arithmetic settings reach torch (autocast, TF32)."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

__all__ = ["TrainConfig", "EXECUTION_FIELDS", "SCHEDULES", "PRECISIONS", "numerics", "same_numerics",
           "autocast", "set_tf32", "last_epoch"]

SCHEDULES = ("constant", "inv", "cosine")
PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class TrainConfig:
    """Optimiser and schedule.  Defaults are Caffe LeNet's solver (method A, MNIST).

    * ``epochs``: length of the schedule (``stop_after`` of :func:`~patchinit.train.train` may stop
      earlier without changing it).
    * ``lr``, ``momentum``, ``weight_decay``, ``nesterov``: ``torch.optim.SGD``'s (dampening 0; weight
      decay is added to the gradient).
    * ``schedule``: ``"constant"``; Caffe's ``"inv"``, ``lr·(1 + inv_gamma·iter)^(−inv_power)`` set every
      iteration; ``"cosine"``, ``lr·½(1 + cos(π·epoch/epochs))`` set at the start of each epoch.
    * ``scalar_lr_factor``: lr multiplier for biases and scales (:func:`patchinit.train.optim.reduced_lr_param`,
      or the model's own ``reduced_lr_param`` where it has one).
    * ``precision``: "fp32", or "bf16", which autocasts the forward passes (training and evaluation) to
      bfloat16 and computes the loss in float32.  bf16 changes the numbers, so it is part of a run's
      config like any other setting.

    The :data:`EXECUTION_FIELDS` change only the order (TF32: the rounding) of float operations, so
    they are not part of a run's identity: ``channels_last`` stores the model and the batches NHWC;
    ``fused`` uses torch's fused SGD kernel; ``compile`` runs the model through ``torch.compile``
    (TorchInductor; worth it for runs of many steps, since compiling takes tens of seconds); ``tf32``
    lets CUDA use TF32 tensor cores for float32 matmuls and convolutions.
    """

    epochs: int = 20
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    schedule: str = "inv"
    inv_gamma: float = 1e-4
    inv_power: float = 0.75
    scalar_lr_factor: float = 1.0
    precision: str = "fp32"
    channels_last: bool = False
    fused: bool = False
    compile: bool = False
    tf32: bool = False

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


def same_numerics(saved: dict | None, cfg: TrainConfig) -> bool:
    """Whether a checkpoint's saved ``asdict(TrainConfig)`` describes the same run as ``cfg``
    (the run settings of :data:`EXECUTION_FIELDS` may differ)."""
    return saved is not None and {k: v for k, v in saved.items() if k not in EXECUTION_FIELDS} == numerics(cfg)


def autocast(device: torch.device | str, precision: str):
    """The autocast context for ``precision`` on ``device`` (a no-op for "fp32")."""
    device_type = torch.device(device).type
    return torch.autocast(device_type=device_type, dtype=torch.bfloat16, enabled=precision == "bf16")


def set_tf32(cfg: TrainConfig, device: torch.device | str) -> None:
    """On CUDA, allow TF32 for float32 matmuls and convolutions exactly when ``cfg.tf32``."""
    if torch.device(device).type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = bool(cfg.tf32)


def last_epoch(cfg: TrainConfig, stop_after: int | None) -> int:
    """The number of epochs to train: all of the schedule's, or the first ``stop_after``."""
    if stop_after is None:
        return cfg.epochs
    if int(stop_after) < 1:
        raise ValueError(f"stop_after must be >= 1 epoch (or None for the whole schedule), got {stop_after}")
    return min(int(stop_after), cfg.epochs)
