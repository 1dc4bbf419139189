"""Fixup ResNet-20, 5 seeds together: the wall time of 200 epochs, projected from measured epochs.

#6's target is 200 epochs x 5 seeds in at most 10 minutes on an H100.  This trains the five seeds of
method A's paper-profile baseline (``protocols.method_a_cifar("paper")``: CIFAR-10, batch 128, crop
and flip, cosine, lr 0.1, bf16 autocast) through ``patchinit.experiment.run_many``, exactly as
``tools/fill_results.py`` would (stacked with ``train_many`` on CUDA, one after another on the CPU),
for ``--epochs`` epochs, and reads the epoch times the records hold.  The first epoch also pays the
set-up (cuDNN autotuning, ``torch.compile`` with ``--compile``), so

    200-epoch time = first epoch + 199 x (the fastest later epoch)

``--images`` / ``--test-images`` train on a random n of the 50,000 training images and score a random
m of the 10,000 test images (the CPU cannot do the full epoch in a benchmark); the epoch time is then
that of the smaller epoch and no 200-epoch projection is printed.  Data come from ``$PATCHINIT_DATA``
or ``--root``.

Prints ``RESULT fixup_5seeds_epoch_s`` and, on the full data, ``RESULT fixup_5seeds_200_epochs_min``.
"""
from __future__ import annotations

import argparse
import os

import torch

from patchinit import protocols as P
from patchinit.experiment import execution_settings, run_many, variant

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--epochs", type=int, default=3, help="epochs measured (at least 2)")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--images", type=int, default=None, help="train on a random n images (default: all)")
    ap.add_argument("--test-images", type=int, default=None, help="score a random m test images (default: all)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--compile", action="store_true", help="PATCHINIT_COMPILE=1")
    ap.add_argument("--root", default=None, help="data root (default $PATCHINIT_DATA)")
    args = ap.parse_args()
    if args.epochs < 2:
        ap.error("--epochs must be at least 2: the first epoch carries the set-up")
    if args.compile:
        os.environ["PATCHINIT_COMPILE"] = "1"
    if args.root:
        os.environ["PATCHINIT_DATA"] = args.root
    torch.set_num_threads(args.threads)
    proto = P.method_a_cifar("paper")
    changes = {"train.epochs": args.epochs}
    if args.images:
        changes.update(train_subset=args.images, train_subset_seed=0)
    if args.test_images:
        changes.update(test_subset=args.test_images)
    configs = [variant(proto.config(s), **changes) for s in range(args.seeds)]
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"cpu ({args.threads} threads)"
    print(f"# device={name} torch={torch.__version__} seeds={args.seeds} epochs={args.epochs} "
          f"images={args.images or 50_000} test_images={args.test_images or 10_000} precision={configs[0]['train'].get('precision', 'fp32')} "
          f"settings={execution_settings(args.device)}", flush=True)
    records = run_many(configs, device=args.device, checkpoint_dir=None)
    if torch.device(args.device).type == "cuda":  # stacked: one shared epoch time
        epochs = [row["seconds"] for row in records[0]["metrics"]]
    else:  # one after another: an epoch of the five is the sum of theirs
        epochs = [sum(r["metrics"][e]["seconds"] for r in records) for e in range(args.epochs)]
    first, steady = epochs[0], min(epochs[1:])
    accs = [round(r["metrics"][-1]["test_acc"], 1) for r in records]
    print(f"# epoch times (s, measured): {[round(e, 2) for e in epochs]}; test accuracy after "
          f"{args.epochs} epochs: {accs}")
    print(f"RESULT fixup_5seeds_epoch_s={steady:.2f}")
    if args.images or args.test_images:
        print("# a reduced epoch: no 200-epoch projection")
    else:
        print(f"RESULT fixup_5seeds_200_epochs_min={(first + 199 * steady) / 60:.1f}")


if __name__ == "__main__":
    main()
