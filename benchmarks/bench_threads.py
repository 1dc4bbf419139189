"""Two single-thread processes against one two-thread process: which uses two cores better?

One call trains ``--images`` CIFAR-10 images of the Conv6 supermask (50%) or LeNet for one epoch with
``--threads`` torch threads, through our trainer, and prints its wall time.  Time the two layouts side
by side with ``farm-bench`` (pairs run in turn, so drift cancels in the ratio)::

    farm-bench -n 3 --warmup 0 --timeout 900 \\
      -- sh -c 'python benchmarks/bench_threads.py --images 1280 --threads 1 & \\
                python benchmarks/bench_threads.py --images 1280 --threads 1 & wait' \\
      --vs 'python benchmarks/bench_threads.py --images 2560 --threads 2'

Both sides train 2,560 images in all, so the wall-time ratio A/B is the inverse of the throughput ratio.
"""
from __future__ import annotations

import argparse
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="conv6", choices=("conv6", "lenet"))
    ap.add_argument("--images", type=int, default=1280)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from patchinit.data import DeviceBatches
    from patchinit.models import build_model
    from patchinit.supermask import to_supermask_
    from patchinit.train import TrainConfig, train

    g = torch.Generator().manual_seed(0)
    shape = (args.images, 32, 32, 3) if args.model == "conv6" else (args.images, 28, 28, 1)
    images = torch.randint(0, 256, shape, generator=g, dtype=torch.uint8).numpy()
    labels = torch.randint(0, 10, (args.images,), generator=g).numpy()
    c = shape[-1]
    batches = DeviceBatches.from_arrays(images, labels, [0.5] * c, [0.25] * c, device="cpu",
                                        batch_size=128 if args.model == "conv6" else 64, augment=args.model == "conv6")
    test = DeviceBatches.from_arrays(images[:256], labels[:256], [0.5] * c, [0.25] * c, device="cpu", batch_size=256)
    model = build_model(args.model, 10)
    if args.model == "conv6":
        to_supermask_(model, 0.5, seed=0)
        cfg = TrainConfig(epochs=1, lr=0.1, momentum=0.9, weight_decay=1e-4, schedule="cosine")
    else:
        cfg = TrainConfig(epochs=1)
    t0 = time.perf_counter()
    train(model, batches, test, cfg, seed=0, progress=False)
    print(f"RESULT {args.model}_threads{args.threads}_images{args.images}_s={time.perf_counter() - t0:.2f}")


if __name__ == "__main__":
    main()
