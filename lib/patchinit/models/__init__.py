"""Model registry: ``build_model(name, num_classes)``.

Each model module registers its builders with :func:`register`; the registry
imports them lazily so that ``import patchinit.models`` stays cheap.
"""
from __future__ import annotations

import importlib
from typing import Callable

import torch.nn as nn

_BUILDERS: dict[str, Callable[..., nn.Module]] = {}
# name -> module that registers it (imported on first use)
_MODULES = {
    "lenet": "patchinit.models.lenet",
    "conv2": "patchinit.models.conv",
    "conv4": "patchinit.models.conv",
    "conv6": "patchinit.models.conv",
    "fixup_resnet20": "patchinit.models.fixup",
    "resnet18": "patchinit.models.resnet",
    "resnet18_thesis": "patchinit.models.resnet",
}


def register(name: str):
    """Decorator: register ``fn(num_classes, **kw) -> nn.Module`` under ``name``."""

    def deco(fn):
        _BUILDERS[name] = fn
        return fn

    return deco


def available() -> list[str]:
    return sorted(_MODULES)


def build_model(name: str, num_classes: int, **kwargs) -> nn.Module:
    """Build a model by name. ``kwargs`` are passed to the model's builder."""
    key = name.lower()
    if key not in _MODULES:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(available())}")
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
    if key not in _BUILDERS:
        importlib.import_module(_MODULES[key])
    return _BUILDERS[key](num_classes, **kwargs)
