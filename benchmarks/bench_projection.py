"""Projected device-hours of every chapter's paper profile, from epoch times measured on this device.

Each chapter's paper-profile runs come from the grid functions of ``patchinit.protocols`` (the
same ones the chapters and ``tools/fill_results.py`` use); runs that several chapters share are
counted once, for the first chapter that needs them.  They are cut into the groups that
``tools/fill_results.py`` trains together (``patchinit.experiment.groups_of``: same config up to seed
and init, at most ``--max-group`` models).  For every distinct workload (model, classes, image size,
batch size, dense or supermask, precision) and group size we time our trainer itself
(``patchinit.train.train_many``, which stacks the group on CUDA when the model has no BatchNorm and
trains it model after model otherwise) on synthetic images, with the run settings
``patchinit.experiment.execution_settings`` picks for the device: one epoch of S steps and one of 2S
steps, each with one 1,024-image evaluation and the best of ``--repeats``, after a warm-up epoch.  Then

    step time  = (T(2S) - T(S)) / S,     eval time = T(S) - S x step time,
    set-up     = T(warm-up) - T(S)       (torch.compile and cuDNN autotuning; paid once per group)
    hours      = sum over groups of  epochs x (steps per epoch x step time + test batches x eval time) + set-up

The patch inits are left out (seconds to minutes per run, reused across prune rates and learning
rates within a process).  Run it on the device you plan to use:
``python benchmarks/bench_projection.py --device cuda`` (add ``--compile`` to measure with
``PATCHINIT_COMPILE=1``).  Prints ``RESULT projected_<chapter>_h`` and ``RESULT projected_total_h``
(hours on the device measured).
"""
from __future__ import annotations

import argparse
import functools
import os
import time
from collections import OrderedDict

import numpy as np
import torch

from patchinit import protocols as P
from patchinit.data.datasets import KNOWN, TINYIMAGENET_SUBSET_PER_CLASS
from patchinit.data.pipeline import DeviceBatches
from patchinit.experiment import execution_settings, groups_of
from patchinit.models import build_model
from patchinit.train import stacking_problem, train_many
from patchinit.results import config_key
from patchinit.supermask import to_supermask_
from patchinit.train import TrainConfig

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
            bool(cfg.get("supermask")), bool(cfg["train"].get("augment")), cfg["train"].get("precision", "fp32"))


def _models(key, n: int) -> list[torch.nn.Module]:
    model_name, classes, *_, supermask = key[:5]
    out = []
    for s in range(n):
        torch.manual_seed(s)
        model = build_model(model_name, classes)
        out.append(to_supermask_(model, 0.5, seed=s) if supermask else model)
    return out


def measure(key, n_models: int, device: str, steps: int, repeats: int) -> dict:
    """Seconds per training step and per 1,024-image evaluation for a group of ``n_models``
    models of workload ``key``, and the group's one-off set-up, all measured with ``train_many``."""
    model_name, classes, (h, w, c), batch, supermask, augment, precision = key
    rng = np.random.default_rng(0)
    test = DeviceBatches.from_arrays(rng.integers(0, 256, (1024, h, w, c), dtype=np.uint8),
                                     rng.integers(0, classes, 1024), (0.5,) * c, (0.25,) * c, device=device,
                                     batch_size=1024)
    cfg = TrainConfig(epochs=1, lr=1e-3, momentum=0.9, weight_decay=1e-4, schedule="constant", precision=precision,
                      **execution_settings(device))

    def epoch_time(n_steps: int) -> float:
        n = n_steps * batch
        train = DeviceBatches.from_arrays(rng.integers(0, 256, (n, h, w, c), dtype=np.uint8),
                                          rng.integers(0, classes, n), (0.5,) * c, (0.25,) * c, device=device,
                                          batch_size=batch, augment=augment)
        models = _models(key, n_models)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        train_many(models, train, test, cfg, seeds=list(range(n_models)), progress=False)  # reads back: synced
        return time.perf_counter() - t0

    warm = epoch_time(steps)
    t1 = min(epoch_time(steps) for _ in range(repeats))  # the best of a few: noise only ever adds time
    t2 = min(epoch_time(2 * steps) for _ in range(repeats))
    t_step = max(t2 - t1, 0.0) / steps
    return {"step": t_step, "eval": max(t1 - steps * t_step, 0.0), "setup": max(warm - t1, 0.0)}


@functools.lru_cache(maxsize=None)
def _stackable(key) -> bool:
    return stacking_problem(_models(key, 1)[0]) is None


def stacked(key, n: int, device: str) -> bool:
    """Whether train_many stacks a group of ``n`` such models on ``device`` (it does on CUDA only)."""
    return n > 1 and device.startswith("cuda") and _stackable(key)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=4, help="S: timed SGD steps per workload (and 2S)")
    ap.add_argument("--repeats", type=int, default=2, help="timings of S and of 2S steps; the best counts")
    ap.add_argument("--max-group", type=int, default=None, help="most models per stack, as in fill_results")
    ap.add_argument("--compile", action="store_true", help="measure with PATCHINIT_COMPILE=1 (CUDA)")
    args = ap.parse_args()
    if args.compile:
        os.environ["PATCHINIT_COMPILE"] = "1"
    torch.set_num_threads(args.threads)
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"cpu ({args.threads} threads)"
    print(f"# device={name} torch={torch.__version__} steps={args.steps} settings={execution_settings(args.device)}")

    seen, per_chapter = set(), OrderedDict()
    for chapter, grid in CHAPTERS.items():
        runs = []
        for _, cfg in grid("paper"):
            k = config_key(cfg)
            if k not in seen:
                seen.add(k)
                runs.append(cfg)
        per_chapter[chapter] = groups_of(runs, args.max_group)

    times = {}  # (workload, models per measured group) -> seconds
    for groups in per_chapter.values():
        for group in groups:
            key = workload(group[0])
            n = len(group) if stacked(key, len(group), args.device) else 1  # unstacked: n x one model
            if (key, n) not in times:
                times[key, n] = measure(key, n, args.device, args.steps, args.repeats)
                t = times[key, n]
                print(f"# {key[0]:16s} classes {key[1]:3d} {key[2][0]}x{key[2][1]} batch {key[3]:3d} "
                      f"{'supermask' if key[4] else 'dense    '} {key[6]} x{n:2d}: {t['step'] * 1e3:8.1f} ms/step, "
                      f"{t['eval'] * 1e3:8.1f} ms per 1,024 test images, set-up {t['setup']:.1f} s", flush=True)

    total = 0.0
    for chapter, groups in per_chapter.items():
        seconds = 0.0
        for group in groups:
            cfg = group[0]
            key = workload(cfg)
            n = len(group) if stacked(key, len(group), args.device) else 1
            t, repeat = times[key, n], len(group) // n
            steps = -(-n_train(cfg) // cfg["train"].get("batch_size", 128))
            epoch = steps * t["step"] + -(-n_test(cfg) // 1024) * t["eval"]
            seconds += repeat * (cfg["train"]["epochs"] * epoch + t["setup"])
        hours = seconds / 3600
        total += hours
        tag = chapter.split()[0].replace("-", "_")
        runs = sum(len(g) for g in groups)
        epochs = sum(c["train"]["epochs"] for g in groups for c in g)
        print(f"# {chapter}: {runs} runs in {len(groups)} groups, {epochs:,} epochs, {hours:.2f} h")
        print(f"RESULT projected_{tag}_h={hours:.3f}")
    print(f"RESULT projected_total_h={total:.3f}")


if __name__ == "__main__":
    main()
