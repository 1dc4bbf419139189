"""train_many: M models at once give what train() gives each of them alone."""
import copy
import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import patchinit.supermask as supermask
from patchinit.data.pipeline import DeviceBatches
from patchinit.models import build_model
from patchinit.supermask import to_supermask_
from patchinit.train import TrainConfig, check_same_architecture, train, train_many

SEEDS = [3, 4, 5]


def _split(n, side, channels, classes, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    x = rng.integers(0, 120, (n, side, side, channels))
    x[y == 0, : side // 2] += 120  # class 0 is bright on top: something to learn
    return x.astype(np.uint8), y


def _data(side=8, channels=1, classes=3, n_train=96, n_test=40, augment=False, batch_size=16):
    kw = dict(mean=(0.4,) * channels, std=(0.25,) * channels, batch_size=batch_size)
    return (DeviceBatches.from_arrays(*_split(n_train, side, channels, classes, 0), augment=augment, **kw),
            DeviceBatches.from_arrays(*_split(n_test, side, channels, classes, 1), **kw))


class Toy(nn.Module):
    """Conv, pool, linear, and a 0-d output scale (exercises ``scalar_lr_factor``)."""

    def __init__(self, width=4):
        super().__init__()
        self.conv = nn.Conv2d(1, width, 3, padding=1)
        self.fc = nn.Linear(width * 16, 3)
        self.scale = nn.Parameter(torch.tensor(1.0))

    def forward(self, x):
        return self.fc(torch.flatten(F.max_pool2d(F.relu(self.conv(x)), 2), 1)) * self.scale


def _toys(n=3, width=4):
    out = []
    for s in range(n):
        torch.manual_seed(100 + s)
        out.append(Toy(width))
    return out


def _assert_same_as_train(models, tr, te, cfg, seeds=SEEDS, rtol=1e-5):
    """train_many on ``models`` vs train() on copies of them, model by model."""
    alone = [copy.deepcopy(m) for m in models]
    results = train_many(models, tr, te, cfg, seeds, vmap=True)
    assert len(results) == len(models)
    for model, ref_model, seed, res in zip(models, alone, seeds, results):
        ref = train(ref_model, tr, te, cfg, seed=seed)
        assert len(res.metrics) == cfg.epochs and res.diverged_at == ref.diverged_at
        for a, b in zip(ref.metrics, res.metrics):
            assert a.keys() == b.keys()
            for key in a:
                if key != "seconds":
                    assert b[key] == pytest.approx(a[key], rel=rtol, abs=1e-7, nan_ok=True), (key, a, b)
        np.testing.assert_array_equal(res.predictions, ref.predictions)
        for (name, p), q in zip(model.named_parameters(), ref_model.parameters()):
            torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6, equal_nan=True, msg=name)
    return results


@pytest.mark.parametrize("cfg, augment", [
    (TrainConfig(epochs=2, lr=0.05, schedule="inv", nesterov=True, weight_decay=1e-3, scalar_lr_factor=0.1), False),
    (TrainConfig(epochs=2, lr=0.05, schedule="cosine", momentum=0.0, weight_decay=0.0), True),
])
def test_toy_nets_match_train(cfg, augment):
    tr, te = _data(augment=augment, n_test=600)  # 600 > 512: two eval batches
    models = _toys()
    before = [m.fc.weight.detach().clone() for m in models]
    _assert_same_as_train(models, tr, te, cfg)
    assert not any(torch.equal(b, m.fc.weight) for b, m in zip(before, models))  # written back


def test_frozen_parameters_stay_frozen():
    tr, te = _data()
    models = _toys(2)
    for m in models:
        m.conv.weight.requires_grad_(False)
    frozen = [m.conv.weight.detach().clone() for m in models]
    _assert_same_as_train(models, tr, te, TrainConfig(epochs=1, lr=0.1, schedule="constant"), seeds=[0, 1])
    for f, m in zip(frozen, models):
        assert torch.equal(f, m.conv.weight)


def test_lenet_matches_train():
    tr, te = _data(side=28, classes=10, n_train=48, n_test=32)
    models = [build_model("lenet", 10) for _ in range(2)]
    _assert_same_as_train(models, tr, te, TrainConfig(epochs=2, lr=0.01), seeds=[7, 8])


def _supermask_conv2s():
    models = []
    for s in range(2):
        torch.manual_seed(s)
        models.append(to_supermask_(build_model("conv2", 10, input_size=8), 0.5, seed=10 + s))
    return models


def test_conv2_supermask_matches_train():
    tied = torch.tensor([3.0, 1.0, 2.0, 2.0, 2.0, 0.0])
    assert torch.vmap(lambda s: supermask.topk_mask(s, 3))(torch.stack([tied, tied.flip(0)])).sum(1).tolist() == [3, 3]
    tr, te = _data(channels=3, classes=10, n_train=48, n_test=24)
    models = _supermask_conv2s()
    weights = [m.conv1.weight.detach().clone() for m in models]
    cfg = TrainConfig(epochs=2, lr=0.1, schedule="cosine", weight_decay=1e-4)
    _assert_same_as_train(models, tr, te, cfg, seeds=[0, 1])
    assert all(torch.equal(w, m.conv1.weight) for w, m in zip(weights, models))  # weights frozen


def test_divergence_of_one_model_leaves_the_others_alone():
    tr, te = _data()
    models = _toys()
    with torch.no_grad():
        for p in models[1].parameters():
            p.mul_(1e20)
    cfg = TrainConfig(epochs=3, lr=0.05, schedule="constant")
    results = _assert_same_as_train(models, tr, te, cfg)
    assert results[1].diverged_at == 1 and all(r.get("diverged") for r in results[1].metrics)
    assert not math.isfinite(results[1].final["train_loss"])
    assert results[0].diverged_at is None and results[2].diverged_at is None
    assert all(math.isfinite(r["train_loss"]) for r in results[0].metrics + results[2].metrics)


def test_mismatched_architectures_raise():
    tr, te = _data()
    cfg = TrainConfig(epochs=1)
    with pytest.raises(ValueError, match=r"models\[1\] has a different architecture"):
        train_many([Toy(4), Toy(5)], tr, te, cfg, [0, 1], vmap=True)
    relu = nn.Sequential(nn.Flatten(), nn.Linear(64, 3), nn.ReLU())
    tanh = nn.Sequential(nn.Flatten(), nn.Linear(64, 3), nn.Tanh())
    with pytest.raises(ValueError, match="module trees differ"):
        check_same_architecture([relu, tanh])
    with pytest.raises(ValueError, match="seeds has 1 entries for 2 models"):
        train_many(_toys(2), tr, te, cfg, [0], vmap=True)
    m = Toy()
    with pytest.raises(ValueError, match="more than once"):
        check_same_architecture([m, m])


def test_batchnorm_cannot_be_stacked_but_trains_in_turn():
    """The loop fallback gives each BatchNorm model exactly what train() gives it alone, running
    statistics included (its own data order: the statistics of the two models differ)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(144, 3))
    tr, te = _data()
    cfg = TrainConfig(epochs=1, lr=0.05)
    with pytest.raises(ValueError, match="layer '1' is BatchNorm2d"):
        train_many([net, copy.deepcopy(net)], tr, te, cfg, [0, 1], vmap=True)
    models = [net, copy.deepcopy(net)]
    alone = [copy.deepcopy(m) for m in models]
    results = train_many(models, tr, te, cfg, [0, 1], vmap=False)
    for model, ref_model, seed, res in zip(models, alone, [0, 1], results):
        ref = train(ref_model, tr, te, cfg, seed=seed)
        assert [{k: v for k, v in r.items() if k != "seconds"} for r in res.metrics] == \
            [{k: v for k, v in r.items() if k != "seconds"} for r in ref.metrics]
        np.testing.assert_array_equal(res.predictions, ref.predictions)
        for (name, p), q in zip(model.state_dict().items(), ref_model.state_dict().values()):
            assert torch.equal(p, q), name
    bn = [m[1] for m in models]
    assert all(int(b.num_batches_tracked) == len(tr) for b in bn)
    assert not torch.equal(bn[0].running_mean, torch.zeros(4))  # the statistics were tracked
    assert not torch.equal(bn[0].running_mean, bn[1].running_mean)  # each with its own data order


def test_resume_after_a_crash_equals_an_uninterrupted_run(tmp_path):
    """The stack's checkpoint holds every model, including one dropped when it diverged."""
    tr, te = _data(augment=True)
    cfg = TrainConfig(epochs=3, lr=0.05, schedule="cosine", nesterov=True, scalar_lr_factor=0.1)

    def toys():
        models = _toys()
        with torch.no_grad():
            for p in models[1].parameters():
                p.mul_(1e20)  # diverges in epoch 1
        return models

    full = toys()
    ref = train_many(full, tr, te, cfg, SEEDS, vmap=True)

    class Crash(Exception):
        pass

    def crash_after_two(rows):
        assert len(rows) == 3
        if rows[0]["epoch"] == 2:
            raise Crash

    ckpt = tmp_path / "stack.pt"
    with pytest.raises(Crash):
        train_many(toys(), tr, te, cfg, SEEDS, vmap=True, checkpoint=ckpt, on_epoch=crash_after_two)
    resumed = _toys(3, width=4)  # other weights: the checkpoint must overwrite them
    res = train_many(resumed, tr, te, cfg, SEEDS, vmap=True, checkpoint=ckpt)
    for a, b in zip(ref, res):  # compared as text, where nan equals nan
        assert repr([{k: v for k, v in r.items() if k != "seconds"} for r in a.metrics]) == \
            repr([{k: v for k, v in r.items() if k != "seconds"} for r in b.metrics])
        assert a.diverged_at == b.diverged_at
        np.testing.assert_array_equal(a.predictions, b.predictions)
    for m, n in zip(full, resumed):
        for p, q in zip(m.parameters(), n.parameters()):
            torch.testing.assert_close(p, q, rtol=0, atol=0, equal_nan=True)
    with pytest.raises(ValueError, match="different run"):
        train_many(_toys(), tr, te, cfg, [0, 1, 2], vmap=True, checkpoint=ckpt)
    # run settings are not part of a run's identity: a fused resume of the same, finished run is accepted
    # and loads the stored results instead of training other weights (fresh _toys() would not diverge)
    again_models = _toys()
    again = train_many(again_models, tr, te, dataclasses.replace(cfg, fused=True), SEEDS, vmap=True, checkpoint=ckpt)
    assert [r.diverged_at for r in again] == [r.diverged_at for r in ref] == [None, 1, None]
    for a, b in zip(ref, again):
        assert repr([{k: v for k, v in r.items() if k != "seconds"} for r in a.metrics]) == \
            repr([{k: v for k, v in r.items() if k != "seconds"} for r in b.metrics])
        np.testing.assert_array_equal(a.predictions, b.predictions)
    for m, n in zip(full, again_models):
        for p, q in zip(m.parameters(), n.parameters()):
            torch.testing.assert_close(p, q, rtol=0, atol=0, equal_nan=True)


def test_the_loop_gives_each_model_its_own_checkpoint(tmp_path):
    tr, te = _data()
    cfg = TrainConfig(epochs=1, lr=0.05)
    train_many(_toys(2), tr, te, cfg, [0, 1], vmap=False, checkpoint=tmp_path / "group.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["group.m0.pt", "group.m1.pt"]


def test_bf16_stacked_step_matches_bf16_alone():
    """Autocast inside vmap: each model close to its own bf16 run (bf16 rounding, not float32's)."""
    tr, te = _data(side=28, classes=10, n_train=64, n_test=32)
    models = [build_model("lenet", 10) for _ in range(2)]
    alone = [copy.deepcopy(m) for m in models]
    cfg = TrainConfig(epochs=2, lr=0.01, precision="bf16")
    results = train_many(models, tr, te, cfg, [7, 8], vmap=True)
    for m, ref_model, seed, res in zip(models, alone, [7, 8], results):
        ref = train(ref_model, tr, te, cfg, seed=seed)
        assert all(p.dtype == torch.float32 for p in m.parameters())
        for a, b in zip(ref.metrics, res.metrics):
            assert b["train_loss"] == pytest.approx(a["train_loss"], rel=0.02)
        for p, q in zip(m.parameters(), ref_model.parameters()):
            torch.testing.assert_close(p, q, rtol=0.02, atol=2e-3)


@pytest.fixture
def eager_compile(monkeypatch):
    """``torch.compile`` traced by TorchDynamo with ``fullgraph=True`` (a graph break is an
    error) but run by the eager backend: it checks that our code compiles, without the
    minutes TorchInductor's code generation costs on the CPU."""
    calls = []
    real = torch.compile

    def traced(fn, **kw):
        calls.append(fn)
        return real(fn, backend="eager", fullgraph=True)

    monkeypatch.setattr(torch, "compile", traced)
    yield calls
    torch._dynamo.reset()


def test_compiled_stacked_step_matches_train(eager_compile):
    tr, te = _data(channels=3, classes=10, n_train=48, n_test=24)
    cfg = TrainConfig(epochs=2, lr=0.1, schedule="cosine", weight_decay=1e-4, compile=True)
    _assert_same_as_train(_supermask_conv2s(), tr, te, cfg, seeds=[0, 1])
    assert len(eager_compile) >= 3  # the stacked train and eval steps, and train()'s model


def test_cpu_default_is_train_per_model():
    tr, te = _data()
    cfg = TrainConfig(epochs=1, lr=0.05)
    models = _toys(2)
    alone = [train(copy.deepcopy(m), tr, te, cfg, seed=s) for m, s in zip(models, [0, 1])]
    results = train_many(models, tr, te, cfg, [0, 1])  # CPU: vmap=None means one after another
    for a, b in zip(alone, results):
        assert [{k: v for k, v in r.items() if k != "seconds"} for r in a.metrics] == \
            [{k: v for k, v in r.items() if k != "seconds"} for r in b.metrics]


def test_stacked_step_ignores_layout_and_fused_settings():
    """channels_last has no meaning for stacked 5-d batches and the stacked update is already one
    multi-tensor op: with them the stacked step gives exactly what it gives without."""
    tr, te = _data()
    cfg = TrainConfig(epochs=1, lr=0.05)
    plain, fast = _toys(2), _toys(2)
    a = train_many(plain, tr, te, cfg, [0, 1], vmap=True)
    b = train_many(fast, tr, te, dataclasses.replace(cfg, channels_last=True, fused=True), [0, 1], vmap=True)
    assert [r.final["train_loss"] for r in a] == [r.final["train_loss"] for r in b]
    for m, n in zip(plain, fast):
        assert all(torch.equal(p, q) for p, q in zip(m.parameters(), n.parameters()))


def test_fixup_resnet20_matches_train():
    """Fixup's scalar biases and multipliers train at lr/10 in the stack too (scalar_lr_factor)."""
    tr, te = _data(side=8, channels=3, classes=10, n_train=32, n_test=16)
    models = [build_model("fixup_resnet20", 10, seed=s) for s in (0, 1)]
    with torch.no_grad():  # Fixup zero-initialises the last conv of each branch: make every layer matter
        for m in models:
            for name, p in m.named_parameters():
                if p.dim() == 4 and not p.abs().any():
                    p.normal_(0, 0.05)
    cfg = TrainConfig(epochs=2, lr=0.1, schedule="cosine", weight_decay=5e-4, scalar_lr_factor=0.1)
    _assert_same_as_train(models, tr, te, cfg, seeds=[0, 1])


@pytest.mark.parametrize("name", ["conv4", "conv6"])
def test_deeper_conv_supermasks_match_train(name):
    tr, te = _data(side=8, channels=3, classes=10, n_train=32, n_test=16)
    models = []
    for s in range(2):
        torch.manual_seed(s)
        models.append(to_supermask_(build_model(name, 10, input_size=8), 0.5, seed=20 + s))
    _assert_same_as_train(models, tr, te, TrainConfig(epochs=2, lr=0.1, schedule="cosine", weight_decay=1e-4),
                          seeds=[0, 1])
