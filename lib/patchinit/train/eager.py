"""One model trained as itself: its own forward and backward, ``torch.optim.SGD`` on its parameters.

:class:`ModuleRun` is the execution :func:`patchinit.train.train` hands to the loop (a stack of
M = 1); :func:`evaluate` scores any model on a whole split.
"""
from __future__ import annotations

from typing import Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

from patchinit.data.pipeline import DeviceBatches
from patchinit.train.config import TrainConfig, autocast, set_tf32
from patchinit.train.optim import param_groups, set_lr, sgd

__all__ = ["ModuleRun", "evaluate", "eval_sums"]


@torch.no_grad()
def eval_sums(model: nn.Module, batches: DeviceBatches, topk: int = 5, precision: str = "fp32",
              channels_last: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Over a whole split, on the device: the summed cross-entropy (float32), the top-1 and top-``k``
    hit counts, and the top-1 predictions in the split's order.  The model's mode is restored."""
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
        top = logits.topk(min(topk, logits.shape[1]), dim=1).indices
        correct1 += (top[:, 0] == y).sum()
        correctk += (top == y[:, None]).any(1).sum()
        preds.append(top[:, 0])
    model.train(was_training)
    return loss_sum, correct1, correctk, torch.cat(preds)


def evaluate(model: nn.Module, batches: DeviceBatches, topk: int = 5, precision: str = "fp32",
             channels_last: bool = False) -> dict:
    """Loss, top-1 and top-``k`` accuracy (in %) and the predictions (numpy), over a whole split.

    ``precision`` autocasts the forward pass as in training; ``channels_last`` feeds NHWC batches."""
    loss_sum, correct1, correctk, preds = eval_sums(model, batches, topk, precision, channels_last)
    n = batches.num_examples
    return {"test_loss": loss_sum.item() / n, "test_acc": 100.0 * correct1.item() / n,
            f"test_top{topk}": 100.0 * correctk.item() / n, "predictions": preds.cpu().numpy()}


class ModuleRun:
    """The loop's execution for one model (see :mod:`patchinit.train.loop` for the interface).

    The model is moved to ``device`` (and to NHWC with ``cfg.channels_last``) and trained in place;
    ``cfg.fused`` picks torch's fused SGD kernel, ``cfg.compile`` runs forward and backward through
    ``torch.compile`` (the compiled module shares the model's parameters).
    """

    kind = "module"

    def __init__(self, model: nn.Module, cfg: TrainConfig, device: torch.device, seed: int):
        self.models, self.seeds, self.cfg, self.device = [model], [int(seed)], cfg, device
        self.active = [0]
        model.to(device)
        set_tf32(cfg, device)
        if cfg.channels_last:
            model.to(memory_format=torch.channels_last)
        self.opt = sgd(param_groups(model, cfg), cfg, **({"fused": True} if cfg.fused else {}))
        self.forward = torch.compile(model) if cfg.compile else model

    def batches(self, train_batches: DeviceBatches, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self.models[0].train()
        return train_batches.epoch(self.seeds[0], epoch)

    def step(self, x: torch.Tensor, y: torch.Tensor, lr: float) -> tuple[torch.Tensor, torch.Tensor]:
        set_lr(self.opt, lr)
        if self.cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(self.device, self.cfg.precision):
            logits = self.forward(x)
        loss = F.cross_entropy(logits.float(), y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return loss.detach()[None], (logits.detach().argmax(1) == y).sum()[None]

    def evaluate(self, batches: DeviceBatches, topk: int) -> tuple[torch.Tensor, torch.Tensor]:
        loss_sum, correct1, correctk, preds = eval_sums(self.forward, batches, topk, self.cfg.precision,
                                                        self.cfg.channels_last)
        return torch.stack([loss_sum.double(), correct1.double(), correctk.double()])[:, None], preds[None]

    def drop(self, rows: list[int]) -> None:
        """Stop stepping the model (it diverged); its weights are already the model's."""
        self.active = [i for r, i in enumerate(self.active) if r not in rows]

    def write_back(self) -> None:
        """Nothing to do: the model trains in place."""

    def state(self) -> dict:
        return {"model": self.models[0].state_dict(), "optimizer": self.opt.state_dict()}

    def load(self, state: dict, active: list[int]) -> None:
        self.models[0].load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.active = list(active)
