"""Results store: stable hashing, atomic writes across a crash, concurrent writers, run_or_load."""
import json
import multiprocessing as mp
import os
import time

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


# -- readers alongside writers ------------------------------------------------------------
READ_CFG = {"shared": "read-while-written"}
PAD = 200_000  # characters per record: json.dump writes such a record in many pieces


class InPlaceStore(ResultsStore):
    """The broken variant of ``put``: the record is written straight into its final file, which
    ``open(..., "w")`` first empties.  The reader check below must catch it."""

    def put(self, record):
        target = self.path(record["config"])
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "w") as f:
            json.dump(dict(record, key=config_key(record["config"])), f, indent=1)
        return target


def _record(i: int, rep: int) -> dict:
    return {"config": READ_CFG, "result": {"writer": i, "rep": rep}, "pad": str(i) * PAD, "end": "complete"}


def _rewrite(args):
    root, i, atomic, seconds = args
    store = (ResultsStore if atomic else InPlaceStore)(root)
    stop, rep = time.monotonic() + seconds, 0
    while time.monotonic() < stop:
        store.put(_record(i, rep))
        rep += 1
    return rep


def _torn_reads(pool, root, atomic: bool, seconds: float = 1.0, writers: int = 2) -> tuple[int, int]:
    """(torn, complete) reads of one record while ``writers`` processes of ``pool`` rewrite it for
    ``seconds``.  A read is torn when it fails to parse, or parses to anything but one writer's
    complete record."""
    store = ResultsStore(root)
    store.put(_record(9, 0))
    started = pool.map_async(_rewrite, [(str(root), i, atomic, seconds) for i in range(writers)])
    torn = complete = 0
    while not started.ready():
        try:
            rec = store.get(READ_CFG, min_epochs=0)
            ok = rec["end"] == "complete" and rec["pad"] == str(rec["result"]["writer"]) * PAD
        except (ValueError, KeyError, TypeError):
            ok = False
        torn, complete = torn + (not ok), complete + ok
    assert min(started.get()) > 0, "a writer never wrote"
    return torn, complete


def test_readers_alongside_writers_never_see_a_partial_record(tmp_path):
    """Readers see one complete record or another, never a torn one: ``put`` writes a temporary file
    and renames it into place.  The same reader, against a plain in-place write (InPlaceStore), does
    see torn records, so this check can fail."""
    with mp.get_context("spawn").Pool(2) as pool:
        torn, complete = _torn_reads(pool, tmp_path / "atomic", atomic=True)
        assert torn == 0 and complete > 10, (torn, complete)
        assert [p.name for p in (tmp_path / "atomic" / "runs").iterdir()] == [f"{config_key(READ_CFG)}.json"]
        torn, complete = _torn_reads(pool, tmp_path / "in-place", atomic=False)
        assert torn > 0, f"the in-place control was never seen torn in {complete} reads"


def _race(root, barrier, queue):
    """run_or_load of CFG, with the training held until the other process is training as well."""
    os.environ["PATCHINIT_GIT_COMMIT"] = "race-test"  # provenance without two `git diff`s of the tree

    def train(cfg):
        barrier.wait(timeout=60)  # both processes found no record and are training: a real race
        return {"result": {"pid": os.getpid()}, "metrics": [{"epoch": 1}], "predictions": np.arange(1000) % 7,
                "extra": {"pad": "x" * PAD}}

    queue.put(ResultsStore(root).run_or_load(CFG, train)["result"]["pid"])


def test_two_processes_running_the_same_config_leave_one_valid_record(tmp_path):
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_race, args=(str(tmp_path), barrier, queue)) for _ in range(2)]
    for p in procs:
        p.start()
    returned = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(60)
    pids = {p.pid for p in procs}
    assert [p.exitcode for p in procs] == [0, 0] and set(returned) <= pids  # each got a complete record back
    files = os.listdir(tmp_path / "runs")
    assert files == [f"{config_key(CFG)}.json"], files  # exactly one record, no temporary file
    rec = ResultsStore(tmp_path).get(CFG)
    assert rec["result"]["pid"] in pids and rec["extra"]["pad"] == "x" * PAD
    np.testing.assert_array_equal(R.decode_predictions(rec["predictions"]), np.arange(1000) % 7)


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


def test_tiers_follow_the_profile_the_prefix_and_the_images():
    from patchinit.results import tier_of

    paper = {"profile": "paper", "train": {"epochs": 100}, "train_subset": None, "test_subset": None}
    metrics = [{"test_acc": 1.0}] * 100
    assert tier_of({"config": paper, "metrics": metrics}) == "exact"
    assert tier_of({"config": paper, "metrics": metrics[:1]}) == "exact-prefix"
    assert tier_of({"config": dict(paper, test_subset=1000), "metrics": metrics}) == "scaled"
    assert tier_of({"config": dict(paper, profile="quick"), "metrics": metrics[:1]}) == "quick"
    assert tier_of({"config": {"train": {"epochs": 1}}, "metrics": metrics[:1]}) is None
    with pytest.raises(ValueError, match="profile"):
        tier_of({"config": dict(paper, profile="fast"), "metrics": metrics})


def test_a_shorter_record_never_replaces_a_longer_one(tmp_path):
    store = ResultsStore(tmp_path)
    cfg = {"profile": "paper", "train": {"epochs": 3}, "seed": 0}
    store.put({"config": cfg, "metrics": [{"e": 1}], "result": {}})
    assert store.get(cfg) is None and store.get(cfg, min_epochs=1)["tier"] == "exact-prefix"
    store.put({"config": cfg, "metrics": [{"e": 1}, {"e": 2}, {"e": 3}], "result": {}})
    store.put({"config": cfg, "metrics": [{"e": 1}], "result": {}})  # a late prefix run: kept out
    rec = store.get(cfg)
    assert rec["epochs_run"] == 3 and rec["tier"] == "exact"
    assert store.missing([cfg]) == [] and store.missing([cfg], min_epochs=4) == [cfg]


def test_a_record_that_extends_a_prefix_keeps_the_prefix_predictions(tmp_path):
    store = ResultsStore(tmp_path)
    cfg = {"profile": "paper", "train": {"epochs": 5}, "seed": 0}
    epochs = [{"epoch": e, "test_acc": 10.0 + e, "seconds": 1.5} for e in range(1, 6)]
    p1, p2, p5 = (R.encode_predictions(np.full(4, k)) for k in (1, 2, 5))
    store.put({"config": cfg, "metrics": epochs[:1], "result": {}, "predictions": p1})
    store.put({"config": cfg, "metrics": epochs[:2], "result": {}, "predictions": p2})   # resumed: extends it
    store.put({"config": cfg, "metrics": epochs, "result": {}, "predictions": p5})
    rec = store.get(cfg)
    assert rec["epochs_run"] == 5 and rec["predictions"] == p5
    assert list(rec["prefix_predictions"]) == ["1", "2"]
    assert [R.decode_predictions(rec["prefix_predictions"][e])[0] for e in ("1", "2")] == [1, 2]


def test_predictions_of_another_trajectory_are_not_carried(tmp_path):
    store = ResultsStore(tmp_path)
    cfg = {"profile": "paper", "train": {"epochs": 3}, "seed": 0}
    store.put({"config": cfg, "metrics": [{"test_acc": 11.0}], "result": {}, "predictions": R.encode_predictions([1])})
    retrained = [{"test_acc": 11.5}, {"test_acc": 12.0}, {"test_acc": 13.0}]   # epoch 1 differs: not a resume
    store.put({"config": cfg, "metrics": retrained, "result": {}, "predictions": R.encode_predictions([3])})
    rec = store.get(cfg)
    assert rec["epochs_run"] == 3 and "prefix_predictions" not in rec
    assert R.extends(rec, {"config": cfg, "metrics": retrained[:2]})
    assert not R.extends(rec, {"config": dict(cfg, seed=1), "metrics": retrained[:2]})
    assert not R.extends(rec, rec)


def test_keep_prefix_predictions_repairs_records_written_without_them(tmp_path):
    store = ResultsStore(tmp_path)
    cfg = {"profile": "paper", "train": {"epochs": 2}, "seed": 0}
    short = {"config": cfg, "metrics": [{"test_acc": 11.0}], "result": {}, "predictions": R.encode_predictions([1, 2])}
    full = {"config": cfg, "metrics": [{"test_acc": 11.0}, {"test_acc": 12.0}], "result": {},
            "predictions": R.encode_predictions([2, 2])}
    store.put(full)                                       # as older code wrote it: the prefix is gone
    assert "prefix_predictions" not in store.get(cfg)
    other = {"config": dict(cfg, seed=1), "metrics": [{"test_acc": 1.0}], "result": {}}
    assert store.keep_prefix_predictions([short, other]) == [config_key(cfg)]
    rec = store.get(cfg)
    assert rec["prefix_predictions"] == {"1": short["predictions"]} and rec["predictions"] == full["predictions"]
    assert store.keep_prefix_predictions([short]) == []   # already kept: nothing to change


def test_rekey_moves_records_and_refuses_collisions(tmp_path):
    store = ResultsStore(tmp_path)
    for seed in (0, 1):
        store.put({"config": {"seed": seed}, "metrics": [], "result": {"v": seed}})
    moved = store.rekey(lambda c: dict(c, data_fingerprint="arrays-sha256:x"), "test")
    assert len(moved) == 2 and {r["result"]["v"] for r in store.records()} == {0, 1}
    assert all(r["migrations"][0]["note"] == "test" for r in store.records())
    assert store.get({"seed": 0, "data_fingerprint": "arrays-sha256:x"})["result"] == {"v": 0}
    with pytest.raises(ValueError, match="overwrite"):
        store.rekey(lambda c: {"same": True}, "collide")
    assert len(list(store.records())) == 2  # nothing changed


def test_git_state_names_a_dirty_tree_by_its_diff(monkeypatch):
    from patchinit.results import git_state

    monkeypatch.setenv("PATCHINIT_GIT_COMMIT", "abc-dirty")
    monkeypatch.setenv("PATCHINIT_GIT_DIFF_SHA256", "d1ff")
    assert git_state() == {"git_commit": "abc-dirty", "git_diff_sha256": "d1ff"}
