"""One training epoch: our trainer (``patchinit.train`` on ``DeviceBatches``) vs a plain reference loop.

The reference is what a typical PyTorch script does: a ``torch.utils.data.Dataset``
that converts and augments one image at a time (uint8 -> float, normalise, random
4-pixel-padded crop and horizontal flip for CIFAR), a ``DataLoader`` (shuffled,
``--workers`` worker processes), fp32, one model, and ``loss.item()`` every step.
Ours keeps the whole split on the device as uint8, augments a batch at a time, and
accumulates its metrics on the device.  Both sides train a freshly built copy of
the same model with the same optimiser (SGD, momentum 0.9) on the same images and
then score the same test images; ``--repeats`` rounds are interleaved and the best
time of each side is kept, so a busy machine penalises both alike.

Models: ``lenet`` (MNIST, batch 64, no augmentation), ``fixup_resnet20`` and
``conv6_supermask`` (CIFAR-10, batch 128, crop and flip; Conv6 at prune 0.5).
Data come from ``$PATCHINIT_DATA`` or ``--root``.

Usage::

    python benchmarks/bench_epoch.py [--models lenet fixup_resnet20 conv6_supermask]
        [--images 5000] [--test-images 1000] [--device cpu|cuda] [--threads 2] [--repeats 2]
        [--precision bf16] [--channels-last] [--fused] [--compile] [--fast]

Prints ``RESULT epoch_<model>_<device>_speedup=<reference/ours>`` and the absolute
times ``..._ours_s=`` / ``..._reference_s=``.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

import patchinit.supermask as supermask
from patchinit.data import DeviceBatches, load_dataset
from patchinit.models import build_model
from patchinit.train import TrainConfig, evaluate, train

SETUPS = {  # model -> (dataset, batch size, augment, lr)
    "lenet": ("mnist", 64, False, 0.01),
    "fixup_resnet20": ("cifar10", 128, True, 0.1),
    "conv6_supermask": ("cifar10", 128, True, 0.1),
}


def build(name: str) -> torch.nn.Module:
    if name == "lenet":
        return build_model("lenet", 10)
    if name == "fixup_resnet20":
        return build_model("fixup_resnet20", 10, seed=0)
    return supermask.to_supermask_(build_model("conv6", 10), 0.5, seed=0)


class PerSampleImages(Dataset):
    """The reference: one uint8 HWC image at a time -> normalised CHW float, then augmented."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, mean, std, augment: bool, seed: int = 0):
        self.images, self.labels, self.augment = images, labels, augment
        self.mean = torch.tensor(mean, dtype=torch.float32)[:, None, None]
        self.std = torch.tensor(std, dtype=torch.float32)[:, None, None]
        self.rng = np.random.default_rng(seed)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        img = self.images[i]
        if img.ndim == 2:
            img = img[:, :, None]
        x = (torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float() / 255 - self.mean) / self.std
        if self.augment:
            x = F.pad(x, (4, 4, 4, 4))
            dy, dx = self.rng.integers(0, 9, 2)
            x = x[:, dy:dy + img.shape[0], dx:dx + img.shape[1]]
            if self.rng.random() < 0.5:
                x = x.flip(2)
        return x, int(self.labels[i])


def reference_epoch(model, loader, test_x, test_y, lr, device):
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=1e-4)
    model.to(device).train()
    losses = []
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(test_y), 1024):
            correct += (model(test_x[i:i + 1024].to(device)).argmax(1).cpu() == test_y[i:i + 1024]).sum().item()
    return float(np.mean(losses)), 100.0 * correct / len(test_y)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--test-images", type=int, default=1000)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workers", type=int, default=0, help="DataLoader worker processes for the reference")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--root", default=None)
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"], help="our trainer's arithmetic")
    ap.add_argument("--channels-last", action="store_true", help="our trainer: NHWC model and batches")
    ap.add_argument("--fused", action="store_true", help="our trainer: torch's fused SGD")
    ap.add_argument("--compile", action="store_true", help="our trainer: torch.compile (its one-off cost is "
                                                           "reported apart: first round minus the best)")
    ap.add_argument("--fast", action="store_true", help="all of --precision bf16 --channels-last --fused")
    args = ap.parse_args()
    if args.fast:
        args.precision, args.channels_last, args.fused = "bf16", True, True
    torch.set_num_threads(args.threads)
    print(f"# device={args.device} threads={args.threads} images={args.images} test={args.test_images} "
          f"workers={args.workers} torch={torch.__version__} ours: precision={args.precision} "
          f"channels_last={args.channels_last} fused={args.fused} compile={args.compile}")

    for name in args.models:
        dataset, bs, augment, lr = SETUPS[name]
        tr, te = load_dataset(dataset, "train", root=args.root), load_dataset(dataset, "test", root=args.root)
        idx = np.random.default_rng(0).permutation(len(tr.labels))[:args.images]
        x, y = tr.images[idx], tr.labels[idx]
        tx, ty = te.images[:args.test_images], te.labels[:args.test_images]
        ours_tr = DeviceBatches.from_arrays(x, y, tr.mean, tr.std, device=args.device, batch_size=bs, augment=augment)
        ours_te = DeviceBatches.from_arrays(tx, ty, tr.mean, tr.std, device=args.device, batch_size=1024)
        ref_test = PerSampleImages(tx, ty, tr.mean, tr.std, augment=False)
        test_x = torch.stack([ref_test[i][0] for i in range(len(ty))])
        test_y = torch.from_numpy(ty.astype(np.int64))
        cfg = TrainConfig(epochs=1, lr=lr, momentum=0.9, weight_decay=1e-4, schedule="constant",
                          precision=args.precision, channels_last=args.channels_last, fused=args.fused,
                          compile=args.compile)
        times = {"ours": [], "reference": []}
        for _ in range(args.repeats):
            model = build(name)
            t0 = time.perf_counter()
            res = train(model, ours_tr, ours_te, cfg, seed=0, progress=False)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            times["ours"].append(time.perf_counter() - t0)
            ours_loss = res.metrics[-1]["train_loss"]
            model = build(name)
            loader = DataLoader(PerSampleImages(x, y, tr.mean, tr.std, augment), batch_size=bs, shuffle=True,
                                num_workers=args.workers, drop_last=False)
            t0 = time.perf_counter()
            ref_loss, _ = reference_epoch(model, loader, test_x, test_y, lr, args.device)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            times["reference"].append(time.perf_counter() - t0)
        ours, ref = min(times["ours"]), min(times["reference"])
        settings = "".join(f"_{v}" for v, on in ((args.precision, args.precision != "fp32"),
                                                 ("nhwc", args.channels_last), ("fused", args.fused),
                                                 ("compiled", args.compile)) if on)
        tag = f"epoch_{name}_{args.device.split(':')[0]}{settings}"
        print(f"# {name}: {len(y)} images, batch {bs}; train loss ours {ours_loss:.3f}, reference {ref_loss:.3f}")
        print(f"RESULT {tag}_ours_s={ours:.2f}")
        print(f"RESULT {tag}_reference_s={ref:.2f}")
        print(f"RESULT {tag}_speedup={ref / ours:.2f}", flush=True)
        if args.compile:
            print(f"RESULT {tag}_compile_overhead_s={times['ours'][0] - ours:.1f}", flush=True)


if __name__ == "__main__":
    main()
