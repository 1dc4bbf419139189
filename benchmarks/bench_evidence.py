"""CPU-hours of the evidence profile, chapter by chapter and tier by tier: projected, and spent so far.

    python benchmarks/bench_evidence.py [--results results]

No training happens here.  The evidence profile (``patchinit.protocols.EVIDENCE``) lists, for each
chapter, the runs of each tier: exact (the paper's grid), exact prefix (the paper's schedule up to
epoch E) and scaled.  A run's cost is its epochs times the seconds per epoch of its workload (model,
dataset, training images), **measured from the epoch times of the runs already in the store**
(median over their epochs, in machine seconds: one process on one core).  For a workload with no
stored full-size run the cost is estimated from its FLOPs (counted below) at the effective GFLOP/s of
the measured workloads, and marked as an estimate.  "spent" sums, over the stored records of each
row, the seconds of their epochs up to the row's prefix plus their set-up (wall time less training
time), so that a run extended from its checkpoint is charged for all its epochs, not only for the
last process's.  The total counts each run once, at the most epochs any row asks of it.  The FLOP
counts also check the throughput figures: a measured epoch that implies more GFLOP/s than the
machine's peak means the figure is wrong.
"""
from __future__ import annotations

import argparse
import statistics
from collections import defaultdict

import torch
import torch.nn as nn

from patchinit import protocols as P
from patchinit.experiment import identify
from patchinit.models import build_model
from patchinit.results import ResultsStore, config_key, epochs_run

#: FP32 peak of this machine's 2 Zen 3 cores at the base clock (2 x 2.445 GHz x 32 FLOP/cycle).
PEAK_GFLOPS_PER_CORE = 78.2
TRAIN_SIZE = {"mnist": 60_000, "cifar10": 50_000, "cifar100": 50_000, "tinyimagenet": 20_000}
TEST_SIZE = {"mnist": 10_000, "cifar10": 10_000, "cifar100": 10_000, "tinyimagenet": 10_000}
SHAPE = {"mnist": (1, 28, 28), "cifar10": (3, 32, 32), "cifar100": (3, 32, 32), "tinyimagenet": (3, 64, 64)}


def macs_per_image(model_name: str, num_classes: int, dataset: str) -> float:
    """Multiply-accumulates of one forward pass (convolutions and linear layers)."""
    model = build_model(model_name, num_classes)
    total = [0.0]

    def hook(m, inp, out):
        if isinstance(m, nn.Conv2d):
            total[0] += out.numel() * m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
        elif isinstance(m, nn.Linear):
            total[0] += out.numel() * m.in_features

    hs = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model.eval()(torch.zeros(1, *SHAPE[dataset]))
    for h in hs:
        h.remove()
    return total[0]


def epoch_gflop(model_name, num_classes, dataset, n_train, n_test) -> float:
    """FLOPs of one epoch: training at 3 x the forward (forward, input and weight gradients), 2 FLOPs
    per MAC, plus the evaluation's forward passes."""
    m = macs_per_image(model_name, num_classes, dataset)
    return (n_train * 3 * 2 * m + n_test * 2 * m) / 1e9


def workload(cfg) -> tuple:
    n = cfg.get("train_subset") or TRAIN_SIZE[cfg["dataset"]]
    return (cfg["model"], cfg["dataset"], int(n), bool(cfg.get("supermask")))


def measured_epoch_seconds(store) -> dict:
    """Median seconds per epoch of each workload, over the stored runs of the paper and scaled profiles
    (diverged epochs excluded; the quick profile caps its steps per epoch, so its epochs are not the
    workload's)."""
    times = defaultdict(list)
    for rec in store.records():
        cfg = rec["config"]
        if cfg.get("test_subset") is not None or cfg.get("profile") == "quick":
            continue
        for row in rec["metrics"]:
            if row.get("seconds", 0) > 0 and not row.get("diverged"):
                times[workload(cfg)].append(float(row["seconds"]))
    return {w: statistics.median(v) for w, v in times.items() if len(v) >= 3}


def spent_seconds(rec, epochs: int) -> float:
    """Machine seconds a record's run took for its first ``epochs`` epochs, set-up included."""
    per_epoch = [float(m.get("seconds", 0.0)) for m in rec.get("metrics", [])]
    setup = float(rec.get("wall_time_s", 0.0)) - float(rec.get("extra", {}).get("train_seconds", sum(per_epoch)))
    return sum(per_epoch[:epochs]) + max(setup, 0.0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--results", default="results")
    args = ap.parse_args()
    store = ResultsStore(args.results)
    measured = measured_epoch_seconds(store)
    rates = []
    print("measured workloads (one process, one core, under the load of the other fill process):")
    for (model, dataset, n, mask), sec in sorted(measured.items()):
        classes = {"cifar100": 100, "tinyimagenet": 200}.get(dataset, 10)
        g = epoch_gflop(model, classes, dataset, n, TEST_SIZE[dataset])
        rates.append(g / sec)
        print(f"  {model:14s} {dataset:12s} {n:6d} images{' (supermask)' if mask else '':12s}: {sec:7.1f} s per epoch, "
              f"{g:8.0f} GFLOP, {g / sec:6.1f} GFLOP/s ({100 * g / sec / PEAK_GFLOPS_PER_CORE:.0f}% of one core's peak)")
    rate = statistics.median(rates) if rates else None
    print(f"\n{'chapter':40s} {'tier':14s} {'runs':>5s} {'stored':>6s} {'epochs':>7s} {'projected h':>11s} {'spent h':>8s}")
    once: dict = {}  # run key -> (projected, spent) at the most epochs a row asks: shared runs count once
    for chapter, tier, grid, prefix in P.EVIDENCE:
        rows = grid()
        cost = spent = 0.0
        estimated = False
        stored = 0
        epochs = 0
        for _, cfg in rows:
            cfg = identify(cfg)
            e = prefix or int(cfg["train"]["epochs"])
            epochs += e
            w = workload(cfg)
            if w in measured:
                c = e * measured[w]
            else:
                classes = int(cfg["num_classes"])
                c = e * epoch_gflop(cfg["model"], classes, cfg["dataset"], w[2], TEST_SIZE[cfg["dataset"]]) / (rate or 1)
                estimated = True
            rec = store.get(cfg, prefix)
            s = spent_seconds(rec, e) if rec is not None else 0.0
            stored += rec is not None
            cost, spent = cost + c, spent + s
            key = config_key(cfg)
            once[key] = tuple(max(a, b) for a, b in zip(once.get(key, (0.0, 0.0)), (c, s)))
        mark = "*" if estimated else " "
        print(f"{chapter:40s} {tier:14s} {len(rows):5d} {stored:6d} {epochs:7d} {cost / 3600:10.1f}{mark} {spent / 3600:8.2f}")
        print(f"RESULT evidence_{tier}_{chapter.split()[0]}_projected_h={cost / 3600:.2f}")
    totals = [sum(v[0] for v in once.values()), sum(v[1] for v in once.values())]
    print(f"{'total (shared runs once)':40s} {'':14s} {'':5s} {'':6s} {'':7s} {totals[0] / 3600:10.1f}  {totals[1] / 3600:8.2f}")
    print("* estimated from FLOPs at the measured workloads' median GFLOP/s" if rate else "")
    print(f"RESULT evidence_projected_h={totals[0] / 3600:.2f}")
    print(f"RESULT evidence_spent_h={totals[1] / 3600:.2f}")


if __name__ == "__main__":
    main()
