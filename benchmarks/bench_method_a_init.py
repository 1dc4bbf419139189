"""Wall time of method A on LeNet's conv1 from the MNIST training set, stage by stage.

The paper's setting cuts all 60,000 training images into 14x14 patches at
stride 7 (540,000 patches), drops those with fewer than 20 non-black pixels,
reduces the rest with UMAP to 2-D, and runs k-means with k = 20.  UMAP
dominates.  ``--budget N`` clusters a seeded subsample of N kept patches
instead (the quick profile); without it every kept patch is used (the paper
profile).

Usage::

    python benchmarks/bench_method_a_init.py [--root DATA] [--budget 20000] [--images 60000]
                                             [--reducer umap] [--seed 0] [--threads 2]

The data root comes from ``--root`` or ``$PATCHINIT_DATA``.  Prints
``RESULT <name>=<value>`` lines: counts, seconds per stage (extract, filter,
subsample, reduce, kmeans, patterns, resize), the total, and the one-off
numba compile time of UMAP measured on a tiny input beforehand (so ``reduce``
is the steady-state cost).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time

import numpy as np
import torch

from patchinit import cluster
from patchinit.data import load_dataset
from patchinit.init import MNIST, baseline_init_, method_a_init_
from patchinit.models import build_model


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default=os.environ.get("PATCHINIT_DATA"))
    parser.add_argument("--budget", type=int, default=None, help="patch budget (default: all kept patches)")
    parser.add_argument("--images", type=int, default=None, help="use only the first N training images")
    parser.add_argument("--reducer", default="umap", choices=cluster.REDUCERS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    args = parser.parse_args()
    if not args.root:
        parser.error("give --root or set PATCHINIT_DATA")
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)

    t = time.perf_counter()
    ds = load_dataset("mnist", "train", root=args.root)
    images = ds.images if args.images is None else ds.images[: args.images]
    print(f"RESULT load_s={time.perf_counter() - t:.2f}")

    if args.reducer == "umap":  # pay numba's JIT once, outside the timed stages
        t = time.perf_counter()
        cluster.reduce(np.random.default_rng(0).normal(size=(200, 196)), "umap", 2, seed=0)
        print(f"RESULT umap_compile_s={time.perf_counter() - t:.2f}")

    model = baseline_init_(build_model("lenet", 10), "kaiming_uniform", seed=args.seed)
    t = time.perf_counter()
    [r] = method_a_init_(model, images, ["conv1"], **dict(MNIST, reducer=args.reducer), budget=args.budget,
                         seed=args.seed, mean=ds.mean, std=ds.std, progress=False)
    total = time.perf_counter() - t

    print(f"RESULT images={r.n_images}")
    print(f"RESULT patches_cut={r.n_patches}")
    print(f"RESULT patches_kept={r.n_kept}")
    print(f"RESULT patches_used={r.n_used}")
    for stage, seconds in r.timings.items():
        print(f"RESULT {stage}_s={seconds:.3f}")
    print(f"RESULT total_s={total:.2f}")
    w = model.conv1.weight.detach()
    print(f"RESULT conv1_weight_std={w.std().item():.4f}")
    print(f"RESULT conv1_weight_absmax={w.abs().max().item():.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
