"""Runs as data: config -> initialised model -> trained record, through the results store."""
import numpy as np
import pytest
import torch

from patchinit import experiment as E
from patchinit.protocols import describe, method_a_mnist
from patchinit.results import ResultsStore


def _tiny(profile="quick"):
    """The quick MNIST protocol shrunk to seconds; PCA instead of UMAP to skip numba's compile time."""
    p = method_a_mnist(profile)
    return p.config(0, **{"train_subset": 3000, "train.epochs": 2, "init.patch.options.reducer": "pca",
                          "init.patch.options.n_init": 2, "init.patch.options.budget": 3000})


def test_variant_is_a_deep_copy_with_dotted_changes():
    base = {"a": {"b": 1, "c": [1]}, "d": 2}
    v = E.variant(base, **{"a.b": 5, "d": 3})
    assert v == {"a": {"b": 5, "c": [1]}, "d": 3} and base["a"]["b"] == 1
    v["a"]["c"].append(2)
    assert base["a"]["c"] == [1]
    with pytest.raises(KeyError, match="no section"):
        E.variant(base, **{"x.y": 1})


def test_protocol_profiles_and_description():
    quick, paper = method_a_mnist("quick"), method_a_mnist("paper")
    assert paper.base["train"]["epochs"] == 20 and len(paper.seeds) == 5 and paper.base["train_subset"] is None
    assert quick.base["train_subset"] == 10_000 and "scaled-down" in describe(quick)
    assert "full protocol" in describe(paper)
    with pytest.raises(ValueError, match="profile"):
        method_a_mnist("fast")


def test_patch_and_baseline_runs_share_every_random_layer(data_root, monkeypatch):
    monkeypatch.setenv("PATCHINIT_DATA", str(data_root))
    cfg = _tiny()
    patched, rec = E.build_initialised_model(cfg)
    plain, _ = E.build_initialised_model(E.variant(cfg, **{"init.patch": None}))
    for (name, p), (_, q) in zip(patched.named_parameters(), plain.named_parameters()):
        if name == "conv1.weight":
            assert not torch.equal(p, q)
            assert float(p.detach().mean(dim=(1, 2, 3)).abs().max()) < 1e-5  # zero-mean patterns
        else:
            assert torch.equal(p, q), name
    assert rec["patch"]["conv1"]["n_used"] == 3000
    again, _ = E.build_initialised_model(cfg)
    assert all(torch.equal(p, q) for p, q in zip(patched.parameters(), again.parameters()))


def test_lenet_on_an_mnist_subset_learns_and_is_stored(data_root, monkeypatch, tmp_path):
    monkeypatch.setenv("PATCHINIT_DATA", str(data_root))
    store = ResultsStore(tmp_path)
    cfg = _tiny()
    [rec] = E.run_all(store, [cfg], device="cpu")
    accs = [m["test_acc"] for m in rec["metrics"]]
    # a seeded run reaches ~93%; chance is 10%
    assert accs[-1] > 80, accs
    assert rec["predictions"]["n"] == 10_000 and rec["device"].startswith("cpu")
    monkeypatch.setattr(E, "run", lambda *a, **k: pytest.fail("a stored run was trained again"))
    assert E.run_all(store, [cfg], allow_run=False)[0]["metrics"] == rec["metrics"]


def test_method_b_run_keeps_random_fc_layers_and_trains_only_scores(data_root, monkeypatch):
    from patchinit.protocols import method_b_cifar
    from patchinit.supermask import SupermaskConv2d

    monkeypatch.setenv("PATCHINIT_DATA", str(data_root))
    cfg = method_b_cifar("quick", model="conv2").config(
        0, **{"train_subset": 500, "init.patch.options": {"P": 2000, "C": 64, "simple": True, "blas_threads": 1}})
    patched, rec = E.build_initialised_model(cfg)
    plain, _ = E.build_initialised_model(E.variant(cfg, **{"init.patch": None}))
    assert isinstance(patched.conv1, SupermaskConv2d) and set(rec["patch"]) == {"conv1", "conv2"}
    assert not torch.equal(patched.conv1.weight, plain.conv1.weight)
    for name in ("fc1", "fc2", "fc3"):  # the FC layers stay at the Random (Xavier-normal) values of the seed
        assert torch.equal(getattr(patched, name).weight, getattr(plain, name).weight)
    assert torch.equal(patched.conv1.scores, plain.conv1.scores)  # same seed, same scores
    trainable = {n for n, p in patched.named_parameters() if p.requires_grad}
    assert trainable and all(n.endswith("scores") for n in trainable)


def test_seeded_training_subset_covers_every_class(data_root, monkeypatch):
    """CIFAR trees are stored class by class: a subset must be drawn at random, not taken from the front."""
    from patchinit.protocols import method_b_cifar

    monkeypatch.setenv("PATCHINIT_DATA", str(data_root))
    cfg = method_b_cifar("quick").config(0)
    images, labels = E._train_images(cfg)
    assert len(labels) == 5000 and np.bincount(labels, minlength=10).min() > 400
    again, _ = E._train_images(cfg)
    assert np.array_equal(images, again)
    first, first_labels = E._train_images(E.variant(cfg, train_subset_seed=None))
    assert len(set(first_labels.tolist())) == 1  # the trap the seed avoids


def test_test_subset_is_fixed_random_and_validated(data_root, monkeypatch):
    from patchinit.protocols import method_b_cifar

    monkeypatch.setenv("PATCHINIT_DATA", str(data_root))
    cfg = method_b_cifar("quick").config(0)
    assert cfg["test_subset"] == 2000
    images, labels = E._test_images(cfg)
    again, _ = E._test_images(E.variant(cfg, seed=5, model="conv2"))  # same images for every run
    assert len(labels) == 2000 and np.array_equal(images, again)
    assert np.bincount(labels, minlength=10).min() > 120
    full, _ = E._test_images(E.variant(cfg, test_subset=None))
    assert len(full) == 10_000
    with pytest.raises(ValueError, match="test_subset"):
        E._test_images(E.variant(cfg, test_subset=20_000))


def test_patched_weights_are_reused_only_where_the_init_is_the_same(data_root, monkeypatch):
    monkeypatch.setenv("PATCHINIT_DATA", str(data_root))
    monkeypatch.setattr(E, "_PATCHED", {})
    calls = []
    real = E._apply_patch_init
    monkeypatch.setattr(E, "_apply_patch_init", lambda m, c: calls.append(1) or real(m, c))
    cfg = _tiny()
    first, rec1 = E.build_initialised_model(cfg)
    # another learning rate, test subset or supermask does not change the initial weights: reused
    for change in ({"train.lr": 1e-3}, {"test_subset": 500}, {"supermask": {"prune": 0.5}}):
        again, rec = E.build_initialised_model(E.variant(cfg, **change))
        assert rec["patch_reused"] and rec["patch"] == rec1["patch"]
        assert torch.equal(again.conv1.weight, first.conv1.weight)
    assert len(calls) == 1 and "patch_reused" not in rec1
    # another seed or training subset does: computed afresh, and equal to a computation from scratch
    other, rec2 = E.build_initialised_model(E.variant(cfg, seed=1))
    assert len(calls) == 2 and "patch_reused" not in rec2
    monkeypatch.setattr(E, "_PATCHED", {})
    fresh, _ = E.build_initialised_model(E.variant(cfg, seed=1))
    assert all(torch.equal(p, q) for p, q in zip(other.parameters(), fresh.parameters()))
    assert len(E._PATCHED) == 1


def test_groups_of_keeps_order_and_bounds_size():
    cfgs = [E.variant(_tiny(), seed=s) for s in range(5)] + [E.variant(_tiny(), **{"train.lr": 0.02})]
    cfgs.insert(1, E.variant(_tiny(), **{"init.patch": None, "seed": 9}))  # another init: same group
    groups = E.groups_of(cfgs)
    assert [len(g) for g in groups] == [6, 1] and groups[0][1]["seed"] == 9
    assert [len(g) for g in E.groups_of(cfgs, max_size=4)] == [4, 2, 1]
    with pytest.raises(ValueError, match="max_size must be >= 1"):
        E.groups_of(cfgs, max_size=0)


def test_a_group_trains_together_checkpoints_and_records_its_settings(data_root, monkeypatch, tmp_path):
    """run_all trains the seeds of one setting as one group (one after another on the CPU),
    with one checkpoint file per model, and records how they were executed."""
    monkeypatch.setenv("PATCHINIT_DATA", str(data_root))
    monkeypatch.setenv("PATCHINIT_CHECKPOINTS", str(tmp_path / "ckpt"))
    store = ResultsStore(tmp_path / "runs")
    cfgs = [E.variant(_tiny(), **{"seed": s, "train_subset": 1000, "train.epochs": 1}) for s in (0, 1)]
    recs = E.run_all(store, cfgs, device="cpu", max_group=2)
    assert [r["extra"]["trained_together"] for r in recs] == [2, 2]
    assert recs[0]["extra"]["execution"] == {"channels_last": False, "fused": False, "compile": False}
    assert recs[0]["metrics"] != recs[1]["metrics"]  # own seed, own data order
    assert len(list((tmp_path / "ckpt").glob("group-*.m[01].pt"))) == 2
    alone = E.run(cfgs[1], device="cpu", checkpoint_dir=str(tmp_path / "alone"))
    assert [m["test_loss"] for m in alone["metrics"]] == [m["test_loss"] for m in recs[1]["metrics"]]
    assert E.execution_settings("cuda") == {"channels_last": True, "fused": True, "compile": False}
    monkeypatch.setenv("PATCHINIT_COMPILE", "1")
    assert E.execution_settings("cuda")["compile"] is True
