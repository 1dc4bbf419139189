"""No host synchronisation inside an epoch: the trainers read their metrics once per epoch."""
import numpy as np
import pytest
import torch

import patchinit.supermask as supermask
from patchinit.data.pipeline import DeviceBatches
from patchinit.models import build_model
from patchinit.syncs import HostSyncCounter
from patchinit.train import TrainConfig, train, train_many

SHAPES = {"lenet": (28, 1), "fixup_resnet20": (32, 3), "conv6": (32, 3)}


def _batches(name, steps, batch_size=8, device="cpu"):
    side, channels = SHAPES[name]
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (steps * batch_size, side, side, channels), dtype=np.uint8)
    y = rng.integers(0, 10, steps * batch_size)
    kw = dict(mean=(0.5,) * channels, std=(0.25,) * channels, batch_size=batch_size, device=device)
    tr = DeviceBatches.from_arrays(x, y, augment=channels == 3, **kw)
    te = DeviceBatches.from_arrays(x[:20], y[:20], **kw)
    return tr, te


def _model(name, seed=0):
    torch.manual_seed(seed)
    model = build_model(name, 10)
    return supermask.to_supermask_(model, 0.5, seed=seed) if name == "conv6" else model


def test_the_counter_sees_scalar_reads_and_data_dependent_shapes():
    t = torch.tensor([1.0, -2.0, 3.0])
    with HostSyncCounter() as syncs:
        t.sum() * 2  # stays a tensor
        t.topk(2)
    assert len(syncs) == 0
    with HostSyncCounter() as syncs:
        t.sum().item()
        bool(t[0] > 0)
        t[t > 0]
        torch.nonzero(t)
    assert len(syncs) == 4, syncs.events
    assert all("test_syncs.py" in where for where in syncs.where()), syncs.where()


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_train_reads_the_device_only_between_epochs(name):
    """The count is the same for 2 and for 5 steps per epoch: no step reads the device
    (batches, augmentation, forward, supermask top-k, backward, SGD)."""
    counts = []
    for steps in (2, 5):
        tr, te = _batches(name, steps)
        with HostSyncCounter() as syncs:
            train(_model(name), tr, te, TrainConfig(epochs=2, lr=0.01, schedule="cosine"), progress=False)
        counts.append(len(syncs))
    assert counts[0] == counts[1], counts
    assert counts[0] <= 2 * 6  # a handful of reads per epoch, for the metrics


def test_stacked_step_reads_the_device_only_between_epochs():
    counts = []
    for steps in (2, 5):
        tr, te = _batches("conv6", steps)
        with HostSyncCounter() as syncs:
            train_many([_model("conv6", s) for s in (0, 1)], tr, te, TrainConfig(epochs=2, lr=0.1), [0, 1],
                       vmap=True, progress=False)
        counts.append(len(syncs))
    assert counts[0] == counts[1], counts


def test_an_augmented_epoch_has_no_sync():
    tr, _ = _batches("conv6", 4)
    with HostSyncCounter() as syncs:
        for _ in tr.epoch(seed=3, epoch=1):
            pass
        for _ in tr.epoch_multi([3, 4], epoch=1):
            pass
    assert len(syncs) == 0, syncs.events


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: CUDA's own sync detector")
@pytest.mark.parametrize("name", sorted(SHAPES))
def test_cuda_steps_do_not_synchronise(name):
    """On a GPU, CUDA's detector also sees host-to-device copies, which the counter cannot."""
    tr, _ = _batches(name, 4, device="cuda")
    model = _model(name).cuda()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, foreach=True)
    batches = tr.epoch(seed=0, epoch=0)
    next(batches)  # the epoch's plan (order, augmentation) moves to the device once, here
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for x, y in batches:
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
