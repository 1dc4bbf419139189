"""Results store: stable hashing, atomic writes across a crash, concurrent writers, run_or_load."""
import multiprocessing as mp
import os

import numpy as np
import pytest

from patchinit import results as R
from patchinit.results import MissingRunsError, ResultsStore, config_key


CFG = {"experiment": "toy", "model": "lenet", "lr": 0.01, "seed": 0, "layers": ("conv1",)}


def test_hash_is_stable_and_order_free():
    same = {"seed": 0, "layers": ["conv1"], "lr": 0.01, "model": "lenet", "experiment": "toy"}
    assert config_key(CFG) == config_key(same)
    assert config_key({"lr": 1.0}) == config_key({"lr": 1})
    assert config_key({**CFG, "seed": 1}) != config_key(CFG)
    # a fixed expectation guards against accidental changes of the canonical form
    assert R.canonical_json({"b": [1, 2.5], "a": True}) == '{"a":true,"b":[1,2.5]}'
    assert config_key({"a": 1}) == "015abd7f5cc57a2dd94b"


@pytest.mark.parametrize("bad", [{"x": object()}, {1: 2}, {"x": float("nan")}])
def test_unhashable_configs_are_refused(bad):
    with pytest.raises((TypeError, ValueError)):
        config_key(bad)


def test_predictions_roundtrip():
    p = np.random.default_rng(0).integers(0, 100, 10_000)
    enc = R.encode_predictions(p)
    assert len(enc["data"]) < 15_000
    np.testing.assert_array_equal(R.decode_predictions(enc), p)
    big = np.array([0, 199, 1000])
    np.testing.assert_array_equal(R.decode_predictions(R.encode_predictions(big)), big)


def test_run_or_load_runs_once_and_records_provenance(tmp_path):
    store = ResultsStore(tmp_path)
    calls = []

    def fn(cfg):
        calls.append(cfg)
        return {"metrics": [{"epoch": 1, "test_acc": 0.5}], "result": {"test_acc": 0.5},
                "predictions": np.array([1, 2, 3])}

    rec = store.run_or_load(CFG, fn, profile="quick")
    again = store.run_or_load(CFG, fn, profile="quick")
    assert len(calls) == 1 and again["result"] == {"test_acc": 0.5}
    for field in ("device", "torch_version", "git_commit", "created", "wall_time_s", "profile"):
        assert field in rec, field
    np.testing.assert_array_equal(R.decode_predictions(again["predictions"]), [1, 2, 3])
    assert store.path(CFG).name == f"{config_key(CFG)}.json"


def test_missing_runs_name_the_runs_and_the_command(tmp_path):
    store = ResultsStore(tmp_path)
    store.run_or_load(CFG, lambda c: {"result": {}})
    other = {**CFG, "seed": 7}
    cmd = "papermill notebooks/x.ipynb out.ipynb -p profile paper -p allow_training True"
    with pytest.raises(MissingRunsError) as e:
        store.run_all([CFG, other], lambda c: {}, allow_run=False, command=cmd)
    msg = str(e.value)
    assert config_key(other) in msg and cmd in msg and config_key(CFG) not in msg


def test_crash_during_write_keeps_the_earlier_record(tmp_path, monkeypatch):
    store = ResultsStore(tmp_path)
    store.put({"config": CFG, "result": {"v": 1}})

    def exploding_replace(src, dst):
        raise KeyboardInterrupt("simulated crash between write and rename")

    monkeypatch.setattr(R.os, "replace", exploding_replace)
    with pytest.raises(KeyboardInterrupt):
        store.put({"config": CFG, "result": {"v": 2}})
    monkeypatch.undo()
    assert store.get(CFG)["result"] == {"v": 1}
    assert [p.name for p in store.runs_dir.iterdir()] == [f"{config_key(CFG)}.json"]  # no temp left


def test_corrupt_record_is_reported_with_its_path(tmp_path):
    store = ResultsStore(tmp_path)
    store.runs_dir.mkdir(parents=True)
    store.path(CFG).write_text('{"config": ')
    with pytest.raises(ValueError, match=str(store.path(CFG).name)):
        store.get(CFG)


def test_run_function_failure_stores_nothing(tmp_path):
    store = ResultsStore(tmp_path)

    def boom(cfg):
        raise RuntimeError("diverged")

    with pytest.raises(RuntimeError, match="diverged"):
        store.run_or_load(CFG, boom)
    assert CFG not in store


def _writer(args):
    root, i = args
    store = ResultsStore(root)
    for rep in range(20):
        store.put({"config": {"shared": True}, "result": {"writer": i, "rep": rep}, "pad": "x" * 20_000})
        store.put({"config": {"writer": i, "rep": rep}, "result": {}})
    return i


def test_concurrent_writers(tmp_path):
    with mp.get_context("spawn").Pool(4) as pool:
        assert sorted(pool.map(_writer, [(str(tmp_path), i) for i in range(4)])) == [0, 1, 2, 3]
    store = ResultsStore(tmp_path)
    files = sorted(os.listdir(store.runs_dir))
    assert len(files) == 1 + 4 * 20 and not any(f.endswith(".tmp") for f in files)
    for rec in store.records():  # every file is complete, valid JSON
        assert "config" in rec
    assert store.get({"shared": True})["result"]["rep"] == 19


def test_import_runs_adds_new_records_keeps_stored_ones_and_refuses_bad_files(tmp_path):
    """tools/import_runs.py: records trained on a device machine come back as a tarball."""
    import json
    import subprocess
    import sys
    import tarfile
    from pathlib import Path

    tool = Path(__file__).resolve().parents[1] / "tools" / "import_runs.py"
    remote = ResultsStore(tmp_path / "remote")
    paths = [remote.put({"config": {**CFG, "seed": s}, "result": {"test_acc": 50.0 + s}}) for s in range(2)]
    here = ResultsStore(tmp_path / "here")
    here.put({"config": {**CFG, "seed": 0}, "result": {"test_acc": 1.0}})  # stored already: must be kept
    tarball = tmp_path / "runs.tar"
    with tarfile.open(tarball, "w") as tar:
        for p in paths:
            tar.add(p, arcname=p.name)

    def run(tb):
        return subprocess.run([sys.executable, str(tool), str(tb), "--results", str(tmp_path / "here")],
                              capture_output=True, text=True)

    out = run(tarball)
    assert out.returncode == 0 and "imported 1 of 2" in out.stdout, out.stderr
    assert here.get({**CFG, "seed": 0})["result"]["test_acc"] == 1.0
    assert here.get({**CFG, "seed": 1})["result"]["test_acc"] == 51.0
    bad = tmp_path / "bad.tar"
    (tmp_path / "renamed.json").write_text(json.dumps({"config": {**CFG, "seed": 7}}))
    with tarfile.open(bad, "w") as tar:
        tar.add(tmp_path / "renamed.json", arcname="renamed.json")
    out = run(bad)
    assert out.returncode != 0 and "renamed.json" in out.stderr and "does not match" in out.stderr
    assert {**CFG, "seed": 7} not in here
