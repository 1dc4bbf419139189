"""How to pick the top-k of a layer's |scores| every step: full sort, topk, or kthvalue.

The edge-popup reference sorts all scores each forward pass.  ``topk`` and a
``kthvalue`` threshold avoid the full sort.  This script times the three on the
layer sizes of Conv2/4/6 (CPU here; pass ``--device cuda`` on a GPU) and checks that
they keep the same number of weights.  ``patchinit.supermask.topk_mask`` is the
kthvalue variant with a topk fallback on ties; its own time is printed too.

Usage::

    python benchmarks/bench_topk.py [--device cpu] [--repeats 20] [--prune 0.5]

Prints ``RESULT <name>=<value>`` lines (milliseconds per mask).
"""
from __future__ import annotations

import argparse
import time

import torch

from patchinit.supermask import keep_count, topk_mask

# (label, number of weights): first conv, a 64->64 conv, Conv6's last conv, Conv2's fc1
SIZES = [("conv1_1728", 3 * 64 * 9), ("conv64_36864", 64 * 64 * 9),
         ("conv256_589824", 256 * 256 * 9), ("fc1_4194304", 16384 * 256)]


def mask_sort(s: torch.Tensor, n_keep: int) -> torch.Tensor:
    """The edge-popup reference's way: argsort everything, zero the lowest."""
    flat = s.flatten()
    out = torch.zeros_like(flat)
    idx = flat.argsort()
    out[idx[flat.numel() - n_keep:]] = 1
    return out.view_as(s)


def mask_topk(s: torch.Tensor, n_keep: int) -> torch.Tensor:
    flat = s.flatten()
    out = torch.zeros_like(flat)
    out[flat.topk(n_keep, sorted=False).indices] = 1
    return out.view_as(s)


def mask_kthvalue(s: torch.Tensor, n_keep: int) -> torch.Tensor:
    flat = s.flatten()
    t = flat.kthvalue(flat.numel() - n_keep).values
    return (s > t).to(s.dtype)


def timed(fn, s, n_keep, repeats, device) -> float:
    fn(s, n_keep)  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn(s, n_keep)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / repeats * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--prune", type=float, default=0.5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    gen = torch.Generator().manual_seed(0)
    methods = {"sort": mask_sort, "topk": mask_topk, "kthvalue": mask_kthvalue,
               "topk_mask": topk_mask}
    print(f"device={device} threads={torch.get_num_threads()} prune={args.prune} repeats={args.repeats}")
    for label, n in SIZES:
        s = torch.rand(n, generator=gen).to(device)
        n_keep = keep_count(n, args.prune)
        counts = {name: int(fn(s, n_keep).sum()) for name, fn in methods.items()}
        assert len(set(counts.values())) == 1 and n_keep in counts.values(), counts
        for name, fn in methods.items():
            ms = timed(fn, s, n_keep, args.repeats, device)
            print(f"RESULT topk_ms_{label}_{name}={ms:.3f}")


if __name__ == "__main__":
    main()
