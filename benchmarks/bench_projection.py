"""Projected device-hours of every chapter's paper profile, from step times measured on this device.

Each chapter's paper-profile runs come from the grid functions of ``patchinit.protocols`` (the
same ones the chapters and ``tools/fill_results.py`` use); runs that several chapters share are
counted once, for the first chapter that needs them.  For every distinct workload (model, classes,
image size, batch size, dense or supermask) we time a few SGD steps of our trainer and an evaluation
batch on synthetic data, then project

    hours = sum over runs of epochs x (steps per epoch x step time + test batches x eval time)

The projection trains each run alone (no ``train_many`` stacking) and leaves out the patch inits
(seconds to minutes per run, reused across prune rates and learning rates within a process), so on
a GPU it is an upper bound for the training itself.  Run it on the device you plan to use:
``python benchmarks/bench_projection.py --device cuda``.  Prints ``RESULT projected_<chapter>_h``
and ``RESULT projected_total_h`` (hours on the device measured).
"""
from __future__ import annotations

import argparse
import time
from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F

from patchinit import protocols as P
from patchinit.data.datasets import KNOWN, TINYIMAGENET_SUBSET_PER_CLASS
from patchinit.models import build_model
from patchinit.results import config_key
from patchinit.supermask import to_supermask_

CHAPTERS = OrderedDict([
    ("02-03 MNIST (A1, A3, A4, A6)", lambda p: P.method_a_mnist_grid(p)),
    ("10-11 Fixup ResNet-20 (A2, A5, A7-A9)", lambda p: P.method_a_cifar_grid(p) + P.method_a_volume_grid(p)),
    ("12 ResNet-18 BN (A10)", lambda p: P.method_a_resnet18_grid(p)),
    ("05 CIFAR-10 supermasks (B1, B2)", lambda p: P.method_b_accuracy_grid(p, "cifar10") + P.method_b_reading_grid(p)),
    ("06 CIFAR-100 supermasks (B3, B4)", lambda p: P.method_b_accuracy_grid(p, "cifar100")),
    ("07 ablations (B6, B8)", lambda p: P.method_b_ablation_grid(p, "PC") + P.method_b_ablation_grid(p, "D")),
    ("08 baselines (B9)", lambda p: P.method_b_init_grid(p)),
    ("13 TinyImageNet ResNet-18 (B5, B10)", lambda p: P.method_b_tinyimagenet_grid(p) + P.method_b_partial_grid(p)),
])


def n_train(cfg) -> int:
    if cfg.get("train_subset") is not None:
        return int(cfg["train_subset"])
    if cfg["dataset"] == "tinyimagenet":  # the subset on this project's machines
        return TINYIMAGENET_SUBSET_PER_CLASS * KNOWN["tinyimagenet"].num_classes
    return KNOWN[cfg["dataset"]].train


def n_test(cfg) -> int:
    return int(cfg.get("test_subset") or KNOWN[cfg["dataset"]].test)


def workload(cfg) -> tuple:
    return (cfg["model"], cfg["num_classes"], KNOWN[cfg["dataset"]].shape, cfg["train"].get("batch_size", 128),
            bool(cfg.get("supermask")))


def measure(key, device, steps: int, warmup: int) -> tuple[float, float]:
    """(seconds per training step, seconds per 1,024-image evaluation batch) for a workload."""
    model_name, classes, (h, w, c), batch, supermask = key
    model = build_model(model_name, classes)
    if supermask:
        to_supermask_(model, 0.5, seed=0)
    model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=1e-3, momentum=0.9, weight_decay=1e-4)
    g = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(batch, c, h, w, generator=g).to(device)
    y = torch.randint(0, classes, (batch,), generator=g).to(device)

    def sync():
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize()

    model.train()
    for i in range(warmup + steps):
        if i == warmup:
            sync()
            t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
    sync()
    t_step = (time.perf_counter() - t0) / steps
    xe = torch.randn(1024, c, h, w, generator=g).to(device)
    model.eval()
    with torch.no_grad():
        model(xe)
        sync()
        t0 = time.perf_counter()
        model(xe)
        sync()
    return t_step, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3, help="timed SGD steps per workload")
    ap.add_argument("--warmup", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"cpu ({args.threads} threads)"
    print(f"# device={name} torch={torch.__version__} steps={args.steps}")

    seen, per_chapter = set(), OrderedDict()
    for chapter, grid in CHAPTERS.items():
        runs = []
        for _, cfg in grid("paper"):
            k = config_key(cfg)
            if k not in seen:
                seen.add(k)
                runs.append(cfg)
        per_chapter[chapter] = runs

    times = {}
    for runs in per_chapter.values():
        for cfg in runs:
            key = workload(cfg)
            if key not in times:
                times[key] = measure(key, args.device, args.steps, args.warmup)
                print(f"# {key[0]:16s} classes {key[1]:3d} {key[2][0]}x{key[2][1]} batch {key[3]:3d} "
                      f"{'supermask' if key[4] else 'dense    '}: {times[key][0] * 1e3:8.1f} ms/step, "
                      f"{times[key][1] * 1e3:8.1f} ms per 1,024 test images", flush=True)

    total = 0.0
    for chapter, runs in per_chapter.items():
        seconds = 0.0
        for cfg in runs:
            t_step, t_eval = times[workload(cfg)]
            steps = -(-n_train(cfg) // cfg["train"].get("batch_size", 128))
            seconds += cfg["train"]["epochs"] * (steps * t_step + -(-n_test(cfg) // 1024) * t_eval)
        hours = seconds / 3600
        total += hours
        tag = chapter.split()[0].replace("-", "_")
        print(f"# {chapter}: {len(runs)} runs, {sum(c['train']['epochs'] for c in runs):,} epochs, {hours:.2f} h")
        print(f"RESULT projected_{tag}_h={hours:.3f}")
    print(f"RESULT projected_total_h={total:.3f}")


if __name__ == "__main__":
    main()
