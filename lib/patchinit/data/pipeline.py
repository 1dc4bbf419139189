"""Device-resident batches with batched augmentation.

A split lives on the target device as **one uint8 tensor** ``(N, C, H, W)``.
An epoch is a seeded permutation; each batch is gathered by index, augmented
with batched tensor ops (random crop from a 4-px zero padding, horizontal
flip), converted to float and normalised, all on the device.  No Python runs
per sample.

Randomness is drawn on the CPU from a ``torch.Generator`` seeded by
``(seed, epoch, stream)``, so

* the same seed gives the same batches on CPU and CUDA,
* epoch ``e`` can be regenerated without replaying epochs ``0..e-1``, which makes
  checkpoint/resume exact, and
* several models trained at once (:meth:`DeviceBatches.epoch_multi`) each get their
  own order and their own augmentation, identical to what they would get alone.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch

__all__ = ["DeviceBatches", "epoch_generator", "random_crop", "hflip", "augment_params", "to_device_uint8",
           "normalise"]

_ORDER, _AUGMENT = 0, 1


def epoch_generator(seed: int, epoch: int, stream: int = _ORDER) -> torch.Generator:
    """A CPU generator for one (seed, epoch, stream), mixed through ``SeedSequence``."""
    state = np.random.SeedSequence([int(seed), int(epoch), int(stream)]).generate_state(2, dtype=np.uint64)
    return torch.Generator().manual_seed(int(state[0] >> np.uint64(1)))


def to_device_uint8(images, device) -> torch.Tensor:
    """``(N, H, W, C)`` uint8 numpy/tensor -> contiguous ``(N, C, H, W)`` uint8 on ``device``."""
    t = torch.as_tensor(images)
    if t.dtype != torch.uint8:
        raise TypeError(f"images must be uint8, got {t.dtype}")
    if t.dim() == 3:  # (N, H, W): single channel
        t = t.unsqueeze(-1)
    if t.dim() != 4:
        raise ValueError(f"images must have shape (N, H, W, C), got {tuple(t.shape)}")
    return t.permute(0, 3, 1, 2).contiguous().to(device)


def normalise(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Pixels ``x`` (uint8, or raw 0..255 values as floats) -> model units ``(x/255 - mean) / std``, float32.

    The one formula from pixels to what a model sees: the training batches here and the patch
    engine (:class:`patchinit.init.normalise.Normaliser`) both call it, so a patch and the image it
    came from are in the same units bit for bit.  ``mean``/``std`` are float32 tensors in [0, 1]
    units that broadcast against ``x`` (``(1, C, 1, 1)`` or ``(C, 1, 1)``).  ``x`` is not modified.
    """
    return (x.to(torch.float32, copy=True).div_(255.0) - mean) / std


def augment_params(n: int, pad: int, flip: bool, generator: torch.Generator):
    """Crop offsets in ``[0, 2*pad]`` for y and x, and flip flags, for ``n`` images."""
    offsets = torch.randint(0, 2 * pad + 1, (n, 2), generator=generator)
    flips = torch.rand(n, generator=generator) < 0.5 if flip else torch.zeros(n, dtype=torch.bool)
    return offsets, flips


def random_crop(x: torch.Tensor, offsets: torch.Tensor, pad: int) -> torch.Tensor:
    """Crop each image of ``x`` (B, C, H, W) from its zero-padded version at ``offsets`` (B, 2).

    Offset ``(pad, pad)`` returns the image unchanged; ``(0, 0)`` shifts it down-right
    by ``pad`` pixels, filling with zeros.  One gather for the whole batch.
    """
    if pad == 0:
        return x
    b, c, h, w = x.shape
    xp = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    offsets = offsets.to(x.device)
    rows = offsets[:, 0, None] + torch.arange(h, device=x.device)  # (B, H)
    cols = offsets[:, 1, None] + torch.arange(w, device=x.device)  # (B, W)
    bi = torch.arange(b, device=x.device)[:, None, None]
    out = xp.permute(0, 2, 3, 1)[bi, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2)


def hflip(x: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
    """Mirror the images of ``x`` (B, C, H, W) whose flag in ``flips`` (B,) is set."""
    return torch.where(flips.to(x.device)[:, None, None, None], x.flip(3), x)


@dataclass
class DeviceBatches:
    """One split on one device, served as normalised float batches.

    ``images`` is uint8 ``(N, C, H, W)`` on ``device``; ``mean``/``std`` are per-channel
    statistics in [0, 1] units.  ``augment`` turns on crop (``pad`` px) and flip.
    """

    images: torch.Tensor
    labels: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    batch_size: int = 128
    augment: bool = False
    pad: int = 4
    flip: bool = True
    drop_last: bool = False

    def __post_init__(self):
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(f"images must be a uint8 (N, C, H, W) tensor, got {self.images.dtype} {tuple(self.images.shape)}")
        if len(self.labels) != len(self.images):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        c = self.images.shape[1]
        if self.mean.numel() != c or self.std.numel() != c:
            raise ValueError(f"mean/std need {c} channels, got {self.mean.numel()}/{self.std.numel()}")
        if bool((self.std <= 0).any()):
            raise ValueError(f"std must be positive, got {self.std.tolist()}")

    # -- construction -------------------------------------------------------------
    @classmethod
    def from_arrays(cls, images, labels, mean: Sequence[float], std: Sequence[float], device="cpu",
                    **kwargs) -> "DeviceBatches":
        dev = torch.device(device)
        imgs = to_device_uint8(images, dev)
        c = imgs.shape[1]
        mean_t = torch.as_tensor(mean, dtype=torch.float32).flatten()
        std_t = torch.as_tensor(std, dtype=torch.float32).flatten()
        if mean_t.numel() != c or std_t.numel() != c:
            raise ValueError(f"mean/std need {c} channels, got {mean_t.numel()}/{std_t.numel()}")
        return cls(
            images=imgs,
            labels=torch.as_tensor(np.asarray(labels), dtype=torch.int64).to(dev),
            mean=mean_t.reshape(1, c, 1, 1).to(dev),
            std=std_t.reshape(1, c, 1, 1).to(dev),
            **kwargs,
        )

    @classmethod
    def from_dataset(cls, ds, device="cpu", mean=None, std=None, subset: int | None = None,
                     **kwargs) -> "DeviceBatches":
        """Wrap a :class:`patchinit.data.Dataset`; ``subset`` keeps its first n examples."""
        images, labels = ds.images, ds.labels
        if subset is not None:
            if not 0 < subset <= len(labels):
                raise ValueError(f"subset must be in 1..{len(labels)}, got {subset}")
            images, labels = images[:subset], labels[:subset]
        return cls.from_arrays(images, labels, ds.mean if mean is None else mean,
                               ds.std if std is None else std, device=device, **kwargs)

    # -- sizes ----------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.images.device

    def __len__(self) -> int:
        """Batches per epoch."""
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    @property
    def num_examples(self) -> int:
        return len(self.labels)

    # -- the hot path ---------------------------------------------------------------
    def order(self, seed: int, epoch: int) -> torch.Tensor:
        """The permutation of epoch ``epoch`` for ``seed`` (CPU int64)."""
        return torch.randperm(self.num_examples, generator=epoch_generator(seed, epoch, _ORDER))

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        return normalise(x, self.mean, self.std)

    def _augmented(self, idx: torch.Tensor, params) -> torch.Tensor:
        x = self.images[idx]
        if self.augment:
            offsets, flips = params
            x = hflip(random_crop(x, offsets, self.pad), flips)
        return self._normalise(x)

    def _slices(self):
        n, bs = self.num_examples, self.batch_size
        stop = n - n % bs if self.drop_last else n
        return [(s, min(s + bs, stop)) for s in range(0, stop, bs)]

    def _epoch_plan(self, seed: int, epoch: int):
        # drawn on the CPU (same numbers on every device), then moved once per epoch, so that
        # slicing them per batch needs no host-to-device copy (a host sync on CUDA)
        perm = self.order(seed, epoch)
        params = None
        if self.augment:
            offsets, flips = augment_params(self.num_examples, self.pad, self.flip,
                                            epoch_generator(seed, epoch, _AUGMENT))
            params = (offsets.to(self.device), flips.to(self.device))
        return perm.to(self.device), params

    def epoch(self, seed: int, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Shuffled (and, if enabled, augmented) batches ``(x float (B,C,H,W), y int64 (B,))``."""
        perm, params = self._epoch_plan(seed, epoch)
        for s, e in self._slices():
            idx = perm[s:e]
            p = None if params is None else (params[0][s:e], params[1][s:e])
            yield self._augmented(idx, p), self.labels[idx]

    def epoch_multi(self, seeds: Sequence[int], epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches for M models at once: ``x (M, B, C, H, W)``, ``y (M, B)``.

        Model ``m`` sees exactly the batches :meth:`epoch` gives for ``seeds[m]``.
        """
        plans = [self._epoch_plan(s, epoch) for s in seeds]
        for s, e in self._slices():
            idx = torch.stack([perm[s:e] for perm, _ in plans])  # (M, B)
            if self.augment:
                offsets = torch.cat([p[0][s:e] for _, p in plans])
                flips = torch.cat([p[1][s:e] for _, p in plans])
                x = self._augmented(idx.reshape(-1), (offsets, flips))
            else:
                x = self._augmented(idx.reshape(-1), None)
            yield x.reshape(*idx.shape, *x.shape[1:]), self.labels[idx]

    def eval_batches(self, batch_size: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The split in its stored order, unaugmented, every example once."""
        bs = batch_size or max(self.batch_size, 512)
        for s in range(0, self.num_examples, bs):
            yield self._normalise(self.images[s:s + bs]), self.labels[s:s + bs]
