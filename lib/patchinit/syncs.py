"""Find the operations that make the host wait for the device.

On a GPU, reading a number back (``loss.item()``, ``bool(t)``, printing a tensor)
or an operation whose output shape depends on the data (``nonzero``, boolean-mask
indexing, ``unique``) stalls Python until every queued kernel has finished.  One
such read per step serialises the CPU and the GPU, and a training epoch should have
none: :func:`patchinit.train.train` reads its metrics once per epoch.

:class:`HostSyncCounter` records those operations as they are dispatched, on any
device, so the property can be tested on the CPU::

    with HostSyncCounter() as syncs:
        train(model, batches, test_batches, cfg)
    syncs.events  # [(op name, Python location), ...]

It sees operations on tensors; what it cannot see is a host-to-device copy of a CPU
tensor (on the CPU that copy does not exist).  On CUDA,
``torch.cuda.set_sync_debug_mode("error")`` catches those too, and
``tests/test_syncs.py`` uses it when a GPU is present.
"""
from __future__ import annotations

import traceback

import torch
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["HostSyncCounter", "SYNC_OPS"]

aten = torch.ops.aten

# operations that read device memory on the host, or whose output shape depends on the data
SYNC_OPS = frozenset(op for op in (
    aten._local_scalar_dense.default,  # .item(), float(t), bool(t), int(t)
    aten.nonzero.default,
    aten.masked_select.default,
    aten.equal.default,
    aten.unique_consecutive.default,
    aten._unique2.default,
    aten.unique_dim.default,
    aten.repeat_interleave.Tensor,
))

_INDEX_OPS = frozenset((aten.index.Tensor, aten.index_put.default, aten.index_put_.default))


def _boolean_index(args) -> bool:
    """Whether an ``index``/``index_put`` call has a boolean mask among its indices."""
    indices = args[1] if len(args) > 1 else ()
    return any(isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8) for i in indices or ())


def _caller() -> str:
    """The innermost frame outside torch and this module: where the read was written."""
    for frame in reversed(traceback.extract_stack()[:-3]):
        if "/torch/" not in frame.filename and frame.filename != __file__:
            return f"{frame.filename}:{frame.lineno} ({frame.name})"
    return "?"


class HostSyncCounter(TorchDispatchMode):
    """A dispatch mode that records host-synchronising operations while it is active."""

    def __init__(self):
        super().__init__()
        self.events: list[tuple[str, str]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in SYNC_OPS or (func in _INDEX_OPS and _boolean_index(args)):
            self.events.append((str(func), _caller()))
        return func(*args, **(kwargs or {}))

    def __len__(self) -> int:
        return len(self.events)

    def where(self) -> dict[str, int]:
        """How many events each source location produced."""
        out: dict[str, int] = {}
        for _, loc in self.events:
            out[loc] = out.get(loc, 0) + 1
        return out
