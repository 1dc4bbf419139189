"""M models of one architecture trained as one stack: their parameters stacked along a new leading
axis, one ``torch.func.vmap``-ed forward/backward per batch for all M (PyTorch lowers a vmapped
convolution to one grouped convolution and a vmapped linear layer to one batched matmul), then one
``torch.optim.SGD`` step on the stacked tensors.

Per model nothing changes: its loss is its own batch mean, so its gradient is the one it would get
alone, and an elementwise SGD update on a stacked tensor is the update of each of its slices.  Only
parameters with ``requires_grad`` train (supermask scores do, their frozen weights do not).

Restrictions (:func:`check_same_architecture`, :func:`stacking_problem`): one architecture; no
BatchNorm, whose running statistics change in the forward pass; other buffers are passed through
unchanged, so they must not be written in ``forward``; random layers (dropout) are refused by vmap.
"""
from __future__ import annotations

import copy
from typing import Iterator, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call

from patchinit.data.pipeline import DeviceBatches
from patchinit.train.config import TrainConfig, autocast, set_tf32
from patchinit.train.optim import factor_groups, lr_rule, set_lr, sgd

__all__ = ["StackRun", "check_same_architecture", "stacking_problem"]


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


class StackRun:
    """The loop's execution for M stacked models (see :mod:`patchinit.train.loop` for the interface).

    ``cfg.precision`` autocasts the stacked forward and ``cfg.compile`` runs the vmapped step through
    ``torch.compile``; ``channels_last`` has no meaning for the stacked 5-d batches and ``fused`` none
    for the stacked update (already one multi-tensor op per group), so they are ignored.  Row r of
    the stack is model ``active[r]``; a model that diverged leaves the stack (:meth:`drop`).
    """

    kind = "stack"

    def __init__(self, models: Sequence[nn.Module], cfg: TrainConfig, device: torch.device, seeds: Sequence[int]):
        self.models, self.seeds, self.cfg, self.device = list(models), [int(s) for s in seeds], cfg, device
        for model in self.models:
            model.to(device)
        set_tf32(cfg, device)
        self.base = copy.deepcopy(self.models[0]).to("meta")  # the module tree; tensors come from the stack
        self.rule = lr_rule(self.models[0])
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
        self._restack(list(range(len(self.models))))

    def _restack(self, active: list[int], momentum: dict | None = None) -> None:
        """Stack (copies of) the parameters and buffers of ``models[active]``; momentum buffers
        ``momentum`` (stacked like the parameters) or zeros."""
        self.active = list(active)
        members = [self.models[i] for i in active] or self.models[:1]
        named = [dict(m.named_parameters()) for m in members]
        self.params = {n: torch.stack([d[n].detach() for d in named]).to(self.device).requires_grad_(p.requires_grad)
                       for n, p in named[0].items()}
        named = [dict(m.named_buffers()) for m in members]
        self.buffers = {n: torch.stack([d[n] for d in named]).to(self.device) for n in named[0]}
        if not active:  # every model diverged: an empty stack
            self._keep(torch.zeros(0, dtype=torch.long, device=self.device))
        self.trainable = [n for n, p in self.params.items() if p.requires_grad]
        if momentum is None and self.cfg.momentum:
            momentum = {n: torch.zeros_like(self.params[n]) for n in self.trainable}
        self._optimiser(momentum or {})

    def _optimiser(self, momentum: dict) -> None:
        # torch.optim.SGD on the stacked tensors, foreach (the stack ignores cfg.fused).  Its momentum
        # buffers start as zeros put into its state (``0·m + g`` is SGD's first-step ``buf = g`` to the
        # bit; the checkpoints of the stack store these buffers from the first epoch on), and the
        # optimiser is rebuilt around new tensors whenever models leave the stack.
        self.groups = factor_groups(self.trainable, self.cfg, self.rule)
        self.opt = sgd([{"params": [self.params[n] for n in names], "lr_factor": f} for f, names in self.groups],
                       self.cfg, foreach=True)
        for n, buf in momentum.items():
            self.opt.state[self.params[n]]["momentum_buffer"] = buf

    @property
    def momentum(self) -> dict:
        """The momentum buffer of each trainable parameter, stacked (empty without momentum)."""
        return {n: self.opt.state[self.params[n]]["momentum_buffer"] for n in self.trainable
                if "momentum_buffer" in self.opt.state[self.params[n]]}

    def batches(self, train_batches: DeviceBatches, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches (M, B, ...): model ``active[r]`` gets exactly ``epoch(seeds[active[r]], epoch)``'s."""
        return train_batches.epoch_multi([self.seeds[i] for i in self.active], epoch)

    def step(self, x: torch.Tensor, y: torch.Tensor, lr: float) -> tuple[torch.Tensor, torch.Tensor]:
        self.base.train()
        self.opt.zero_grad(set_to_none=True)
        losses, logits = self._train_fn(self.params, self.buffers, x, y)
        losses.sum().backward()  # models are independent: d(sum)/d(params[m]) = d(loss[m])/d(params[m])
        set_lr(self.opt, lr)
        self.opt.step()
        return losses.detach(), (logits.detach().argmax(-1) == y).sum(1)

    @torch.no_grad()
    def evaluate(self, batches: DeviceBatches, topk: int) -> tuple[torch.Tensor, torch.Tensor]:
        self.base.eval()
        m, dev = len(self.active), batches.device
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

    def _keep(self, rows: torch.Tensor) -> None:
        for n, p in self.params.items():
            self.params[n] = p.detach()[rows].requires_grad_(p.requires_grad)
        self.buffers = {n: b[rows] for n, b in self.buffers.items()}

    def drop(self, rows: list[int]) -> None:
        """Write back and remove the stack rows ``rows`` (models that diverged): a model stops
        stepping once it diverged, so its final parameters are those at the end of that epoch;
        removing it also spares the others its cost."""
        self._write_back(rows)
        keep = [r for r in range(len(self.active)) if r not in rows]
        index = torch.tensor(keep, dtype=torch.long, device=self.device)
        momentum = {n: b[index] for n, b in self.momentum.items()}
        self._keep(index)
        self.active = [self.active[r] for r in keep]
        self._optimiser(momentum)

    @torch.no_grad()
    def _write_back(self, rows: Sequence[int]) -> None:
        for r in rows:
            named = dict(self.models[self.active[r]].named_parameters())
            for n in self.trainable:
                named[n].copy_(self.params[n][r])

    def write_back(self) -> None:
        """Copy the trained parameters of the stack into the models still in it."""
        self._write_back(range(len(self.active)))

    def state(self) -> dict:
        self.write_back()
        return {"models": [m.state_dict() for m in self.models], "momentum": self.momentum, "active": list(self.active)}

    def load(self, state: dict, active: list[int]) -> None:
        for model, sd in zip(self.models, state["models"]):
            model.load_state_dict(sd)
        self._restack(active, state["momentum"])
