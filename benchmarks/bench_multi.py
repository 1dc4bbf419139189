"""N models trained at once (``train_many``) vs one after another (``train``).

Both sides train the same N freshly built models (same inits, data seeds and
steps) in this process, interleaved over ``--repeats`` rounds; the best time of
each is kept, so a busy machine penalises both alike.  A run is one epoch of
``--steps`` batches plus one evaluation of a ``--test-size`` split, i.e. what a
caller pays.

Models: ``lenet`` (MNIST-shaped random data, or real MNIST with ``--mnist`` and
``PATCHINIT_DATA``), ``fixup_resnet20`` and ``conv6_supermask`` (Conv6, prune 0.5)
on CIFAR-shaped random data.  ``--precision bf16`` and ``--compile`` apply to both
sides (the run settings of ``TrainConfig``; on CUDA the one-model side also uses
channels_last and fused SGD, as ``patchinit.experiment.execution_settings`` does).

Usage::

    python benchmarks/bench_multi.py [--models lenet fixup_resnet20 conv6_supermask] [--n 1 3 5]
        [--steps 20] [--device cpu|cuda] [--threads 2] [--clock wall|cpu] [--mnist]
        [--precision fp32|bf16] [--compile]

On a shared CPU, ``--threads 1 --clock cpu`` (process CPU time) gives steady
numbers; wall time with more threads shows what a user waits.

Prints ``RESULT multi_<model>_N<n>_speedup=<sequential/multi>`` and the absolute
times ``RESULT multi_<model>_N<n>_sequential_s=`` / ``_multi_s=``.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time

import numpy as np
import torch

import patchinit.supermask as supermask
from patchinit.data.pipeline import DeviceBatches
from patchinit.experiment import execution_settings
from patchinit.models import build_model
from patchinit.train import train_many
from patchinit.train import TrainConfig, train

SETUPS = {  # model -> (image side, channels, batch size, config)
    "lenet": (28, 1, 64, TrainConfig(epochs=1, lr=0.01, schedule="inv")),
    "fixup_resnet20": (32, 3, 128, TrainConfig(epochs=1, lr=0.1, schedule="cosine", weight_decay=5e-4,
                                               scalar_lr_factor=0.1)),
    "conv6_supermask": (32, 3, 128, TrainConfig(epochs=1, lr=0.1, schedule="cosine", weight_decay=1e-4)),
}


def build(name: str, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    if name == "lenet":
        return build_model("lenet", 10)
    if name == "fixup_resnet20":
        return build_model("fixup_resnet20", 10, seed=seed)
    return supermask.to_supermask_(build_model("conv6", 10), 0.5, seed=seed)


def batches(name: str, steps: int, test_size: int, device: str, mnist: bool):
    side, channels, bs, _ = SETUPS[name]
    n = steps * bs
    if mnist and name == "lenet":
        from patchinit.data import load_dataset
        ds = load_dataset("mnist", "train")
        x, y, mean, std = ds.images, ds.labels, ds.mean, ds.std
    else:
        rng = np.random.default_rng(0)
        x = rng.integers(0, 256, (n + test_size, side, side, channels), dtype=np.uint8)
        y = rng.integers(0, 10, n + test_size)
        mean, std = (0.5,) * channels, (0.25,) * channels
    kw = dict(mean=mean, std=std, device=device, batch_size=bs, drop_last=True)
    return (DeviceBatches.from_arrays(x[:n], y[:n], **kw),
            DeviceBatches.from_arrays(x[n:n + test_size], y[n:n + test_size], **kw))


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_sequential(name, n, tr, te, device, clock, cfg) -> float:
    models = [build(name, s) for s in range(n)]
    _sync(device)
    t0 = clock()
    for seed, model in enumerate(models):
        train(model, tr, te, cfg, seed=seed, progress=False)
    _sync(device)
    return clock() - t0


def time_multi(name, n, tr, te, device, clock, cfg) -> float:
    models = [build(name, s) for s in range(n)]
    _sync(device)
    t0 = clock()
    train_many(models, tr, te, cfg, list(range(n)), progress=False, vmap=True)
    _sync(device)
    return clock() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    parser.add_argument("--n", nargs="+", type=int, default=[1, 3, 5])
    parser.add_argument("--steps", type=int, default=20, help="training batches per run")
    parser.add_argument("--test-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--compile", action="store_true", help="torch.compile both sides (TrainConfig.compile)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="cpu: this process's CPU time, steadier than wall time on a shared "
                             "machine (use it with --threads 1)")
    parser.add_argument("--mnist", action="store_true", help="LeNet on real MNIST ($PATCHINIT_DATA)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    settings = execution_settings(args.device)
    print(f"device={args.device} threads={torch.get_num_threads()} clock={args.clock} steps={args.steps} "
          f"test_size={args.test_size} repeats={args.repeats} precision={args.precision} compile={args.compile} "
          f"settings={settings}")
    for name in args.models:
        cfg = dataclasses.replace(SETUPS[name][3], precision=args.precision, **dict(settings, compile=args.compile))
        tr, te = batches(name, args.steps, args.test_size, args.device, args.mnist)
        time_sequential(name, 1, tr, te, args.device, clock, cfg)  # warm-up (allocator, kernels, compilation)
        for n in sorted(set(args.n)):  # the stacked step compiles and autotunes once per stack size
            time_multi(name, n, tr, te, args.device, clock, cfg)
        for n in args.n:
            seq, multi = float("inf"), float("inf")
            for _ in range(args.repeats):
                seq = min(seq, time_sequential(name, n, tr, te, args.device, clock, cfg))
                multi = min(multi, time_multi(name, n, tr, te, args.device, clock, cfg))
            print(f"RESULT multi_{name}_N{n}_sequential_s={seq:.3f}")
            print(f"RESULT multi_{name}_N{n}_multi_s={multi:.3f}")
            print(f"RESULT multi_{name}_N{n}_speedup={seq / multi:.2f}")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
