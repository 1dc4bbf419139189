"""Write patterns into a conv layer's filters, in ``torch.nn.init`` style."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn


def _as_weight(conv) -> torch.Tensor:
    if isinstance(conv, nn.Module):
        w = getattr(conv, "weight", None)
        if not isinstance(w, torch.Tensor) or w.dim() != 4:
            raise TypeError(f"patch_init_ needs a Conv2d (4-D weight), got {type(conv).__name__}")
        return w
    if isinstance(conv, torch.Tensor) and conv.dim() == 4:
        return conv
    raise TypeError(f"patch_init_ needs an nn.Conv2d or a 4-D weight tensor, got "
                    f"{type(conv).__name__} with shape {tuple(getattr(conv, 'shape', ()))}")


@torch.no_grad()
def patch_init_(conv, patterns, scale: float = 1.0) -> torch.Tensor:
    """Set the filters of ``conv`` to ``scale * patterns``, in place; return the weight.

    ``conv`` is an ``nn.Conv2d`` or its weight tensor ``(out, in, kh, kw)``.
    ``patterns`` (numpy or torch) must have exactly that shape, or
    ``(out, kh, kw)`` when ``in == 1``.  The values are used as given: centring
    and scaling policy belongs to the recipe (method A or B), apart from the
    optional uniform ``scale``.  The bias, if any, is left untouched.
    """
    w = _as_weight(conv)
    p = torch.as_tensor(np.asarray(patterns) if not isinstance(patterns, torch.Tensor) else patterns)
    target = tuple(w.shape)
    if p.dim() == 3 and target[1] == 1:
        p = p.unsqueeze(1)
    shape = tuple(p.shape)
    if p.dim() == 4 and shape[0] < target[0] and shape[1:] == target[1:]:
        raise ValueError(f"only {shape[0]} patterns for {target[0]} filters; "
                         f"form one pattern per filter (k = {target[0]} clusters)")
    if shape != target:
        raise ValueError(f"pattern shape {shape} does not match the filter shape {target} "
                         f"(out, in, kh, kw); resize the patterns to the layer's filter size")
    if not torch.isfinite(p).all():
        raise ValueError("patterns contain NaN or inf values")
    w.copy_(p.to(dtype=w.dtype, device=w.device) * float(scale))
    return w
