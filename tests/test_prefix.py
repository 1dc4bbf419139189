"""Exact prefixes: a run stopped after epoch E of a T-epoch schedule is the first E epochs of the full run."""
import numpy as np
import pytest
import torch
import torch.nn as nn

from patchinit.data.pipeline import DeviceBatches
from patchinit.train import train_many
from patchinit.train import TrainConfig, train


def _setup(seed=0):
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 255, (96, 8, 8, 1)).astype(np.uint8), rng.integers(0, 3, 96)
    tr = DeviceBatches.from_arrays(x, y, mean=(0.5,), std=(0.25,), batch_size=32, augment=True)
    te = DeviceBatches.from_arrays(x[:32], y[:32], mean=(0.5,), std=(0.25,), batch_size=32)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(144, 3))
    return model, tr, te


CFG = TrainConfig(epochs=4, lr=0.1, schedule="cosine")


def test_a_prefix_is_the_start_of_the_full_run_and_resumes_to_it(tmp_path):
    full = train(*_setup(), CFG, seed=1)
    ckpt = tmp_path / "run.pt"
    model, tr, te = _setup()
    head = train(model, tr, te, CFG, seed=1, stop_after=2, checkpoint=ckpt)
    assert len(head.metrics) == 2
    assert [m["lr"] for m in head.metrics] == [m["lr"] for m in full.metrics[:2]]  # the 4-epoch cosine, not a 2-epoch one
    for a, b in zip(head.metrics, full.metrics):
        assert a["train_loss"] == b["train_loss"] and a["test_acc"] == b["test_acc"]
    rest = train(model, tr, te, CFG, seed=1, checkpoint=ckpt)  # a later call trains on to the end
    assert [m["train_loss"] for m in rest.metrics] == [m["train_loss"] for m in full.metrics]


def test_train_many_stops_too_and_bad_prefixes_are_refused():
    model, tr, te = _setup()
    [res] = train_many([model], tr, te, CFG, seeds=[1], stop_after=3)
    assert len(res.metrics) == 3
    with pytest.raises(ValueError, match="stop_after must be >= 1"):
        train(*_setup(), CFG, stop_after=0)
    assert len(train(*_setup(), CFG, stop_after=99).metrics) == 4  # beyond the schedule: the whole run
