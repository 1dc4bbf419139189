"""Runs as data: config -> initialised model -> trained record, through the results store."""
import numpy as np
import pytest
import torch

from patchinit import experiment as E
from patchinit.protocols import describe, method_a_mnist
from patchinit.results import ResultsStore, decode_predictions


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


def _accuracy_from_predictions(record) -> float:
    """Top-1 in % from a record's stored predictions against the labels of the images it was scored on."""
    predictions = decode_predictions(record["predictions"])
    labels = E.test_labels(record["config"])
    assert predictions.shape == labels.shape
    return 100.0 * int((predictions == labels).sum()) / len(labels)


# LeNet on 3,000 MNIST images, 2 epochs (_tiny), measured over seeds 0-2: the working run scores
# 92.8-93.9%, the same run on shuffled labels 10.3-14.9%, with zero optimiser steps 7.6-9.3% (chance:
# 10%; one standard error is 0.3 points on 10,000 images, 0.4 at 15%).  LENET_LEARNS = 80% lies tens of
# standard errors from both.
LENET_LEARNS = 80.0


def test_lenet_on_an_mnist_subset_learns_and_is_stored(data_root, monkeypatch, tmp_path):
    monkeypatch.setenv("PATCHINIT_DATA", str(data_root))
    store = ResultsStore(tmp_path)
    cfg = _tiny()
    [rec] = E.run_all(store, [cfg], device="cpu")
    accs = [m["test_acc"] for m in rec["metrics"]]
    assert accs[-1] > LENET_LEARNS, accs
    assert rec["predictions"]["n"] == 10_000 and rec["device"].startswith("cpu")
    # the stored predictions are those of the stored accuracy, in the order of experiment.test_labels
    assert _accuracy_from_predictions(rec) == rec["result"]["test_acc"] == accs[-1]
    monkeypatch.setattr(E, "run", lambda *a, **k: pytest.fail("a stored run was trained again"))
    assert E.run_all(store, [cfg], allow_run=False)[0]["metrics"] == rec["metrics"]


@pytest.mark.parametrize("control", ["zero optimiser steps", "shuffled labels"])
def test_lenet_negative_controls_stay_near_chance(data_root, monkeypatch, control, untrained,
                                                  shuffle_training_labels):
    from patchinit.train import evaluate

    monkeypatch.setenv("PATCHINIT_DATA", str(data_root))
    cfg = _tiny()
    if control == "zero optimiser steps":
        acc = evaluate(*untrained(cfg))["test_acc"]
    else:
        shuffle_training_labels()
        acc = E.run(cfg, device="cpu", progress=False)["metrics"][-1]["test_acc"]
    assert 3 < acc < 20, f"{control}: {acc:.1f}%"  # chance 10%; far below LENET_LEARNS


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
    real = E._apply_method_a
    monkeypatch.setattr(E, "_apply_method_a", lambda m, s, c: calls.append(1) or real(m, s, c))
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
    cfgs = [E.variant(_tiny(), **{"seed": s, "train_subset": 1000, "train.epochs": 1, "test_subset": 2000})
            for s in (0, 1)]
    recs = E.run_all(store, cfgs, device="cpu", max_group=2)
    assert [r["extra"]["trained_together"] for r in recs] == [2, 2]
    for rec in recs:  # each member's predictions are its own, on the test subset's images in order
        assert _accuracy_from_predictions(rec) == rec["result"]["test_acc"] == rec["metrics"][-1]["test_acc"]
    assert recs[0]["extra"]["execution"] == {"channels_last": False, "fused": False, "compile": False, "tf32": False}
    assert recs[0]["metrics"] != recs[1]["metrics"]  # own seed, own data order
    assert len(list((tmp_path / "ckpt").glob("group-*.m[01].pt"))) == 2
    alone = E.run(cfgs[1], device="cpu", checkpoint_dir=str(tmp_path / "alone"))
    assert [m["test_loss"] for m in alone["metrics"]] == [m["test_loss"] for m in recs[1]["metrics"]]
    assert E.execution_settings("cuda") == {"channels_last": True, "fused": True, "compile": False, "tf32": True}
    monkeypatch.setenv("PATCHINIT_COMPILE", "1")
    assert E.execution_settings("cuda")["compile"] is True


def test_run_and_run_many_resume_bit_identically_after_a_crash_while_writing_a_checkpoint(
        data_root, monkeypatch, tmp_path):
    """A run killed while its checkpoint is being written keeps the previous epoch's checkpoint, leaves
    no temporary file, and, restarted with the same checkpoint folder, ends exactly as a run that was
    never interrupted: every metric, every prediction."""
    import io

    from patchinit.results import config_key

    monkeypatch.setenv("PATCHINIT_DATA", str(data_root))
    cfgs = [E.variant(_tiny(), **{"seed": s, "train_subset": 256, "test_subset": 500, "train.epochs": 2,
                                  "init.patch": None}) for s in (0, 1)]
    real_save = torch.save

    class Killed(BaseException):
        """Not an Exception: like a KeyboardInterrupt, it passes every ``except Exception``."""

    def killed_during_save(n):
        calls = []

        def save(obj, f, *args, **kwargs):
            calls.append(f)
            if len(calls) == n:  # half the bytes reach the temporary file, then the process dies
                buf = io.BytesIO()
                real_save(obj, buf, *args, **kwargs)
                with open(f, "wb") as out:
                    out.write(buf.getvalue()[: len(buf.getvalue()) // 2])
                raise Killed
            return real_save(obj, f, *args, **kwargs)

        return save

    def same(a, b):  # every field but the wall times, nan compared as text
        strip = lambda out: repr([{k: v for k, v in m.items() if k != "seconds"} for m in out["metrics"]])  # noqa: E731
        assert strip(a) == strip(b) and a["result"] == b["result"]
        np.testing.assert_array_equal(a["predictions"], b["predictions"])

    # one run: killed while writing the checkpoint of epoch 2
    ref = E.run(cfgs[0], device="cpu", progress=False)
    ckpt_dir = tmp_path / "single"
    monkeypatch.setattr(torch, "save", killed_during_save(2))
    with pytest.raises(Killed):
        E.run(cfgs[0], device="cpu", progress=False, checkpoint_dir=str(ckpt_dir))
    monkeypatch.setattr(torch, "save", real_save)
    ckpt = ckpt_dir / f"{config_key(cfgs[0])}.pt"
    assert [p.name for p in ckpt_dir.iterdir()] == [ckpt.name]
    assert torch.load(ckpt, weights_only=False)["epoch"] == 1
    same(ref, E.run(cfgs[0], device="cpu", progress=False, checkpoint_dir=str(ckpt_dir)))

    # a group (one model after another on the CPU): killed in model 0's second checkpoint
    refs = E.run_many(cfgs, device="cpu", progress=False)
    group_dir = tmp_path / "group"
    monkeypatch.setattr(torch, "save", killed_during_save(2))
    with pytest.raises(Killed):
        E.run_many(cfgs, device="cpu", progress=False, checkpoint_dir=str(group_dir))
    monkeypatch.setattr(torch, "save", real_save)
    (left,) = group_dir.iterdir()
    assert left.name.startswith("group-") and left.name.endswith(".m0.pt")
    assert torch.load(left, weights_only=False)["epoch"] == 1
    resumed = E.run_many(cfgs, device="cpu", progress=False, checkpoint_dir=str(group_dir))
    for a, b in zip(refs, resumed):
        same(a, b)
    same(ref, refs[0])  # and the group's member is the run trained alone
