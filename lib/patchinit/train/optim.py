"""SGD for the trainer: the learning-rate schedules, which parameters train at which lr, and the
``torch.optim.SGD`` both executions (one module, or a vmapped stack) step with."""
from __future__ import annotations

import math
from typing import Callable, Iterable, Sequence

import torch
import torch.nn as nn

from patchinit.train.config import TrainConfig

__all__ = ["learning_rate", "reduced_lr_param", "lr_rule", "factor_groups", "param_groups", "sgd", "set_lr"]


def learning_rate(cfg: TrainConfig, epoch: int, iteration: int) -> float:
    """The learning rate at ``epoch`` (0-based) and global ``iteration`` (0-based, over all epochs)."""
    if cfg.schedule == "constant":
        return cfg.lr
    if cfg.schedule == "inv":
        return cfg.lr * (1.0 + cfg.inv_gamma * iteration) ** (-cfg.inv_power)
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * epoch / cfg.epochs))


def reduced_lr_param(name: str) -> bool:
    """Whether ``TrainConfig.scalar_lr_factor`` applies to the parameter called ``name``, for a model
    that has no rule of its own (see :func:`lr_rule`).

    The Fixup reference's rule (``cifar_train.py``): every parameter whose name contains "bias" or
    "scale", i.e. Fixup's scalar biases and multipliers and the classifier's bias.
    """
    return "bias" in name or "scale" in name


def lr_rule(model: nn.Module) -> Callable[[str], bool]:
    """The model's own ``reduced_lr_param(name)`` where it defines one (the model knows which of its
    parameters are scalars: :class:`patchinit.models.fixup.FixupResNet` does), else :func:`reduced_lr_param`."""
    return getattr(model, "reduced_lr_param", reduced_lr_param)


def factor_groups(names: Sequence[str], cfg: TrainConfig, rule: Callable[[str], bool]) -> list[tuple[float, list[str]]]:
    """The trainable parameters ``names`` as ``(lr_factor, names)`` groups: one group at factor 1 when
    ``cfg.scalar_lr_factor == 1``, else the others at 1 and the ``rule``'s at ``scalar_lr_factor``
    (empty groups dropped).  This order is the optimiser state's in checkpoints: keep it."""
    if not names:
        raise ValueError("the model has no trainable parameters")
    if cfg.scalar_lr_factor == 1.0:
        return [(1.0, list(names))]
    others = [n for n in names if not rule(n)]
    reduced = [n for n in names if rule(n)]
    return [(f, g) for f, g in ((1.0, others), (cfg.scalar_lr_factor, reduced)) if g]


def param_groups(model: nn.Module, cfg: TrainConfig) -> list[dict]:
    """``torch.optim`` parameter groups of ``model``'s trainable parameters (those with
    ``requires_grad``: a supermask's scores, not its frozen weights), each with its ``"lr_factor"``."""
    named = {n: p for n, p in model.named_parameters() if p.requires_grad}
    return [{"params": [named[n] for n in names], "lr_factor": f}
            for f, names in factor_groups(list(named), cfg, lr_rule(model))]


def sgd(groups: Iterable[dict], cfg: TrainConfig, **options) -> torch.optim.SGD:
    """``torch.optim.SGD`` with ``cfg``'s momentum, weight decay and Nesterov over ``groups``;
    ``options`` (``fused``, ``foreach``) choose torch's implementation."""
    return torch.optim.SGD(list(groups), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                           nesterov=cfg.nesterov, **options)


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    """Set each group's lr to ``lr`` times its ``"lr_factor"`` (a host float: no device read)."""
    for g in opt.param_groups:
        g["lr"] = lr * g["lr_factor"]
