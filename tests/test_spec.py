"""The typed run spec: an exact round trip to the stored configs (every record keeps its key), the
identities as methods, and validation when a spec (or a grid) is built, not when its run starts."""
import json
from pathlib import Path

import pytest

from patchinit import protocols as P
from patchinit.fill import GRIDS
from patchinit.results import canonical_json, config_key
from patchinit.spec import UNSET, RunSpec, SpecError

RUNS = sorted((Path(__file__).resolve().parents[1] / "results" / "runs").glob("*.json"))


def test_the_committed_store_is_there():
    assert len(RUNS) >= 200


def test_every_stored_record_resolves_to_its_old_key():
    for path in RUNS:
        config = json.loads(path.read_text())["config"]
        spec = RunSpec.from_config(config)
        assert spec.key() == path.stem == config_key(config), path.name
        assert canonical_json(spec.to_config()) == canonical_json(config), path.name


@pytest.mark.parametrize("profile", ["quick", "paper"])
def test_every_grid_config_round_trips(profile):
    for name, grid in GRIDS.items():
        for _, config in grid(profile):
            assert canonical_json(RunSpec.from_config(config).to_config()) == canonical_json(config), name


def _lenet():
    return P.method_a_mnist("quick").config(0)


def _conv6():
    return P.method_b_cifar("quick", "cifar10", "conv6", 0.5).config(0)


def test_typed_fields_and_unset_keys_stay_out():
    spec = RunSpec.from_config(_conv6())
    assert spec.supermask.prune == 0.5 and spec.prune == 0.5
    assert spec.train.lr == 0.1 and spec.data.dataset == "cifar10" and spec.init.patch.method == "B"
    mnist = RunSpec.from_config(_lenet())
    assert mnist.supermask is UNSET and mnist.prune is None and mnist.data.test_subset is UNSET
    assert "supermask" not in mnist.to_config() and "test_subset" not in mnist.to_config()


def test_identities_are_methods_of_the_spec():
    a, b = RunSpec.from_config(_conv6()), RunSpec.from_config(P.method_b_cifar("quick").config(1))
    assert a.group_key() == b.group_key() and a.key() != b.key()  # seeds train together
    assert a.init_key() == a.replace(**{"supermask.prune": 0.7}).init_key()  # the mask does not touch the weights
    assert a.init_key() != a.replace(**{"init.patch.options.C": 100}).init_key()
    assert a.group_key() != a.replace(**{"train.lr": 0.05}).group_key()


def test_replace_validates():
    spec = RunSpec.from_config(_conv6())
    assert spec.replace(**{"supermask.prune": 0.7}).prune == 0.7
    with pytest.raises(SpecError, match="did you pass a percentage"):
        spec.replace(**{"supermask.prune": 50})


def test_a_bad_prune_rate_fails_when_the_grid_is_built():
    with pytest.raises(SpecError, match=r"0 < prune < 1.*got prune=1.5"):
        P.method_b_cifar("quick", "cifar10", "conv6", prune=1.5)
    with pytest.raises(SpecError, match="prune"):
        P.method_b_tinyimagenet("quick", prune=0.0)


@pytest.mark.parametrize("change, message", [
    ({"trian": {}}, r"unknown key \['trian'\] in the run config"),
    ({"train": {"epochs": 5, "lr": 0.1, "momentum": 0.9, "weight_decay": 0.0, "schedule": "cosine",
                "batch_size": 128, "augment": True, "lrr": 1}}, r"unknown key \['lrr'\] in train"),
    ({"model": "conv7"}, "unknown model 'conv7'"),
    ({"dataset": "mnist2"}, "unknown dataset 'mnist2'"),
    ({"seed": "0"}, "seed must be an int"),
    ({"test_subset": 0}, "test_subset must be a positive int"),
    ({"normalize": {"mean": [0.5], "std": [0.2, 0.2]}}, "normalize must be"),
])
def test_bad_configs_name_the_problem(change, message):
    with pytest.raises(SpecError, match=message):
        RunSpec.from_config({**_conv6(), **change})


@pytest.mark.parametrize("path, value, message", [
    ("train.lr", -0.1, "train.lr must be a positive"),
    ("train.momentum", 1.0, r"train.momentum must be in \[0, 1\)"),
    ("train.schedule", "step", "train.schedule must be one of"),
    ("train.precision", "fp16", "train.precision must be one of"),
    ("init.baseline", "xavier", "unknown init.baseline 'xavier'"),
    ("init.patch.options.PP", 5, r"unknown method-B option \['PP'\]"),
    ("init.patch.method", "C", "unknown patch method 'C'"),
])
def test_bad_values_name_the_field(path, value, message):
    from patchinit.experiment import variant

    with pytest.raises(SpecError, match=message):
        RunSpec.from_config(variant(_conv6(), **{path: value}))


def test_method_a_settings_are_checked():
    from patchinit.experiment import variant

    with pytest.raises(SpecError, match="deep_mapping must be one of"):
        RunSpec.from_config(variant(_lenet(), **{"init.patch.deep_mapping": "pixels"}))
    with pytest.raises(SpecError, match=r"unknown method-A option \['patchsize'\]"):
        RunSpec.from_config(variant(_lenet(), **{"init.patch.options.patchsize": 9}))
    with pytest.raises(SpecError, match="method-A setting"):
        RunSpec.from_config(variant(_conv6(), **{"init.patch.layers": ["conv1"]}))


def test_trainer_config_carries_the_numbers():
    cfg = RunSpec.from_config(_lenet()).train.trainer_config({"compile": False})
    assert (cfg.lr, cfg.schedule, cfg.inv_power, cfg.epochs) == (0.01, "inv", 0.75, 5)
