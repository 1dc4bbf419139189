"""The SGD trainer: one loop over a stack of M >= 1 models, for every chapter.

:func:`train` trains one model (dense LeNet and ResNets of method A, edge-popup supermasks of
method B: only parameters with ``requires_grad`` are optimised, so frozen weights stay frozen);
:func:`train_many` trains M models of one architecture that differ in init and data order, as one
vmapped stack on CUDA.  Both are :func:`patchinit.train.loop.run`.

Modules, one job each:

* :mod:`~patchinit.train.config`: :class:`TrainConfig`, which of its fields make a run's numbers
  (:func:`numerics`, :func:`same_numerics`), autocast and TF32;
* :mod:`~patchinit.train.optim`: the schedules, the parameter groups (``scalar_lr_factor``) and
  ``torch.optim.SGD``;
* :mod:`~patchinit.train.loop`: the loop (epochs, steps, metric rows, divergence, ``stop_after``,
  resume), :func:`train` and :func:`train_many`;
* :mod:`~patchinit.train.eager`: one module trained as itself, and :func:`evaluate`;
* :mod:`~patchinit.train.stack`: M models trained as one ``torch.func.vmap``-ed stack;
* :mod:`~patchinit.train.checkpoint`: checkpoint files, written atomically after each epoch.
"""
from patchinit.train.checkpoint import save_atomic
from patchinit.train.config import (EXECUTION_FIELDS, PRECISIONS, SCHEDULES, TrainConfig, autocast, last_epoch,
                                    numerics, same_numerics)
from patchinit.train.eager import evaluate
from patchinit.train.loop import TrainResult, train, train_many
from patchinit.train.optim import learning_rate, param_groups, reduced_lr_param
from patchinit.train.stack import check_same_architecture, stacking_problem

_param_groups = param_groups  # the name the tests and older callers use

__all__ = ["TrainConfig", "TrainResult", "train", "train_many", "evaluate", "learning_rate", "numerics",
           "same_numerics", "EXECUTION_FIELDS", "SCHEDULES", "PRECISIONS", "check_same_architecture",
           "stacking_problem", "autocast", "last_epoch", "param_groups", "reduced_lr_param", "save_atomic"]
