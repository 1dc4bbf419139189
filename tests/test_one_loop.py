"""One training loop (#14): train() is the loop over one model, train_many() the same loop over M;
the models do not import the trainer, and the names of the old modules still work."""
import copy
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import patchinit.train as T
from patchinit.data.pipeline import DeviceBatches
from patchinit.train import TrainConfig, train, train_many
from patchinit.train import loop as L


def _data():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 128)
    x = rng.integers(0, 120, (128, 8, 8, 1))
    x[y == 0, :4] += 120
    kw = dict(mean=(0.4,), std=(0.25,), batch_size=32)
    tr = DeviceBatches.from_arrays(x[:96].astype(np.uint8), y[:96], augment=True, **kw)
    te = DeviceBatches.from_arrays(x[96:].astype(np.uint8), y[96:], **kw)
    return tr, te


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(64, 3)
        self.scale = nn.Parameter(torch.tensor(1.0))

    def forward(self, x):
        return self.fc(torch.flatten(F.max_pool2d(F.relu(self.conv(x)), 2), 1)) * self.scale


def _toy(seed=0):
    torch.manual_seed(seed)
    return Toy()


CFG = TrainConfig(epochs=2, lr=0.05, schedule="inv", nesterov=True, scalar_lr_factor=0.1)


@pytest.fixture
def executions(monkeypatch):
    """The kinds of execution the loop is run with, one entry per call of :func:`loop.run`."""
    seen = []
    real = L.run

    def spy(ex, *args, **kwargs):
        seen.append(type(ex).__name__)
        return real(ex, *args, **kwargs)

    monkeypatch.setattr(L, "run", spy)
    return seen


def _strip(res):
    return repr([{k: v for k, v in r.items() if k != "seconds"} for r in res.metrics])


def test_train_and_train_many_of_one_model_are_one_code_path_and_bit_identical(executions, tmp_path):
    tr, te = _data()
    a, b = _toy(), _toy()
    rows_a, rows_b = [], []
    ra = train(a, tr, te, CFG, seed=4, on_epoch=rows_a.append, checkpoint=tmp_path / "a.pt")
    [rb] = train_many([b], tr, te, CFG, [4], on_epoch=rows_b.extend, checkpoint=tmp_path / "b.pt")  # CPU default
    assert executions == ["ModuleRun", "ModuleRun"]
    assert _strip(ra) == _strip(rb) and ra.diverged_at == rb.diverged_at
    np.testing.assert_array_equal(ra.predictions, rb.predictions)
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), name
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in rows_a] == \
        [{k: v for k, v in r.items() if k != "seconds"} for r in rows_b]
    sa = torch.load(tmp_path / "a.pt", weights_only=False)
    sb = torch.load(tmp_path / "b.m0.pt", weights_only=False)
    assert sa.keys() == sb.keys() == {"model", "optimizer", "epoch", "iteration", "metrics", "diverged_at",
                                      "train_config", "seed", "predictions"}  # train()'s layout, as before #14
    assert all(torch.equal(sa["model"][k], sb["model"][k]) for k in sa["model"])


def test_the_stack_is_the_same_loop(executions):
    tr, te = _data()
    models = [_toy(1), _toy(2)]
    results = train_many(models, tr, te, CFG, [1, 2], vmap=True)
    assert executions == ["StackRun"]
    assert [len(r.metrics) for r in results] == [2, 2]


def test_a_diverged_run_repeats_its_last_row_and_reports_every_epoch():
    tr, te = _data()
    rows = []
    res = train(_toy(), tr, te, TrainConfig(epochs=3, lr=1e6, schedule="constant"), seed=0, on_epoch=rows.append)
    assert res.diverged_at == 1 and [r["epoch"] for r in rows] == [1, 2, 3]
    assert rows[1] == dict(rows[0], epoch=2, seconds=0.0)


def test_the_trainer_asks_the_model_which_parameters_get_the_scalar_lr():
    class Picky(Toy):
        reduced_lr_param = staticmethod(lambda name: name == "fc.weight")

    torch.manual_seed(0)
    model = Picky()
    groups = T.param_groups(model, TrainConfig(scalar_lr_factor=0.1))
    assert [g["lr_factor"] for g in groups] == [1.0, 0.1]
    assert [id(p) for p in groups[1]["params"]] == [id(model.fc.weight)]
    default = T.param_groups(_toy(), TrainConfig(scalar_lr_factor=0.1))  # the name rule: biases and scales
    assert len(default[1]["params"]) == 3
    assert len(T.param_groups(model, TrainConfig())) == 1


def test_stacked_models_with_their_own_rule_match_train():
    class Picky(Toy):
        reduced_lr_param = staticmethod(lambda name: name.startswith("conv"))

    tr, te = _data()
    models = []
    for s in (0, 1):
        torch.manual_seed(s)
        models.append(Picky())
    alone = [copy.deepcopy(m) for m in models]
    cfg = TrainConfig(epochs=1, lr=0.05, scalar_lr_factor=0.01)
    train_many(models, tr, te, cfg, [0, 1], vmap=True)
    for m, ref, s in zip(models, alone, [0, 1]):
        train(ref, tr, te, cfg, seed=s)
        for p, q in zip(m.parameters(), ref.parameters()):
            torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6)


def test_models_do_not_import_the_trainer():
    code = ("import sys, patchinit.models, patchinit.models.fixup, patchinit.supermask; "
            "print([m for m in sys.modules if m.startswith(('patchinit.train', 'patchinit.multi'))])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_old_names_still_import():
    from patchinit.models.fixup import FixupResNet, param_groups

    assert T.train_many and T.stacking_problem and T.check_same_architecture
    for name in ("TrainConfig", "TrainResult", "train", "evaluate", "learning_rate", "numerics", "same_numerics",
                 "EXECUTION_FIELDS", "autocast", "last_epoch", "reduced_lr_param", "save_atomic", "_param_groups"):
        assert hasattr(T, name), name
    model = FixupResNet()
    ours = T.param_groups(model, TrainConfig(scalar_lr_factor=0.1))
    ref = {g["name"]: g for g in param_groups(model, lr=1.0)}
    assert {id(p) for p in ours[1]["params"]} == {id(p) for p in ref["scalars"]["params"]}
