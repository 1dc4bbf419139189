"""Filling grids (patchinit.fill), engine-independent parts and the local engine: skip what is stored,
check each returned record before writing it, report failures and go on, retry, the command line."""
import json
import os

import numpy as np
import pytest

from patchinit import fill as F
from patchinit.experiment import identify
from patchinit.protocols import method_a_mnist
from patchinit.results import ResultsStore, config_key, decode_predictions, encode_predictions

TINY = {"init.patch": None, "train_subset": 128, "test_subset": 64, "train.epochs": 1, "train.batch_size": 64}


def tiny_configs(n=4):
    """n LeNet runs (seeds 0..n-1) of 2 SGD steps each on 128 MNIST images, scored on 64."""
    p = method_a_mnist("quick")
    return [identify(p.config(s, **TINY)) for s in range(n)]


@pytest.fixture
def mnist(data_root, monkeypatch):
    monkeypatch.setenv("PATCHINIT_DATA", str(data_root))
    monkeypatch.delenv("PATCHINIT_CHECKPOINTS", raising=False)


def _files(store):
    return sorted(p.name for p in store.runs_dir.iterdir()) if store.runs_dir.exists() else []


def test_plan_split_part_and_pending_are_the_grid_cut_into_groups(mnist, tmp_path):
    configs = tiny_configs(4)
    assert len(F.split_groups(configs)) == 1  # they differ only in seed: one group
    assert [len(g) for g in F.split_groups(configs, max_group=3)] == [3, 1]
    assert [len(g) for g in F.split_groups(configs, one_by_one=True)] == [1, 1, 1, 1]
    groups = F.split_groups(configs, one_by_one=True)
    assert F.take_part(groups, (1, 2)) == [groups[1], groups[3]]
    assert F.parse_part("1/3") == (1, 3)
    for bad in ("3/3", "x", "1"):
        with pytest.raises(ValueError, match="--part"):
            F.parse_part(bad)
    store = ResultsStore(tmp_path)
    store.put({"config": configs[0], "metrics": [{"epoch": 1}]})
    assert F.pending(store, groups) == [[c] for c in configs[1:]]
    rows = F.grid_rows("mnist-A1", "quick", inits=["Kaiming U"], seeds=[1])
    assert [(r["init"], r["seed"]) for r, _ in rows] == [("Kaiming U", 1)]


def test_where_filters_rows_by_value_and_names_a_bad_key():
    rows = F.grid_rows("mnist-A3", "quick", where=F.parse_where(["train.lr=0.001,1e-4"]), seeds=[0])
    assert sorted((r["train.lr"], r["init"]) for r, _ in rows) == [
        (1e-4, "Kaiming U"), (1e-4, "patch"), (1e-3, "Kaiming U"), (1e-3, "patch")]
    with pytest.raises(KeyError, match="no row of grid 'mnist-A3' has that key"):
        F.grid_rows("mnist-A3", "quick", where={"train.lrr": ["0.1"]})
    assert F.split_names("patch, patch (conv1 + conv2, activations)") == ["patch", "patch (conv1 + conv2, activations)"]
    with pytest.raises(ValueError, match="KEY=VALUE"):
        F.parse_where(["train.lr"])


def test_train_group_returns_complete_records_that_validate(mnist):
    configs = tiny_configs(2)
    recs = F.train_group(configs, device="cpu", progress=False)
    assert [r["config"] for r in recs] == configs
    for c, r in zip(configs, recs):
        assert F.validate_record(c, r) == r
        assert r["epochs_run"] == 1 and r["tier"] == "quick" and r["extra"]["trained_together"] == 2
        assert len(decode_predictions(r["predictions"])) == 64
        for k in ("device", "git_commit", "torch_version", "created", "wall_time_s"):
            assert k in r, k


def _broken(rec, what):
    rec = json.loads(json.dumps(rec))
    if what == "config":
        rec["config"]["seed"] = 99
    elif what == "key":
        rec["key"] = "0" * 20
    elif what == "metrics":
        rec["metrics"] = {"test_acc": 1}
    elif what == "epoch":
        rec["metrics"][0]["epoch"] = 3
    elif what == "text":
        rec["metrics"][0]["test_acc"] = "ninety"
    elif what == "epochs_run":
        rec["epochs_run"] = 5
    elif what == "result":
        rec["result"] = None
    elif what == "undecodable":
        rec["predictions"]["data"] = "not base64 zlib!"
    elif what == "count":
        rec["predictions"] = encode_predictions(np.zeros(10, dtype=np.int64))
    elif what == "classes":
        rec["predictions"] = encode_predictions(np.full(64, 12, dtype=np.int64))
    elif what == "none":
        rec["predictions"] = None
    return rec


@pytest.mark.parametrize("what", ["config", "key", "metrics", "epoch", "text", "epochs_run", "result",
                                  "undecodable", "count", "classes", "none"])
def test_validate_record_refuses_a_malformed_record(what):
    cfg = {"dataset": "mnist", "num_classes": 10, "test_subset": 64, "train": {"epochs": 1}, "seed": 0}
    good = {"config": cfg, "metrics": [{"epoch": 1, "test_acc": 50.0, "diverged": False}], "epochs_run": 1,
            "result": {"test_acc": 50.0, "diverged_at": None},
            "predictions": encode_predictions(np.arange(64) % 10)}
    assert F.validate_record(cfg, good) == good
    with pytest.raises(F.MalformedRecord, match=config_key(cfg)):
        F.validate_record(cfg, _broken(good, what))


def test_validate_record_wants_the_epochs_asked_for():
    cfg = {"dataset": "mnist", "num_classes": 10, "train": {"epochs": 3}, "seed": 0}
    rec = {"config": cfg, "metrics": [{"epoch": 1}, {"epoch": 2}], "result": {},
           "predictions": encode_predictions(np.zeros(5, dtype=np.int64))}
    with pytest.raises(F.MalformedRecord, match="expected 3..3"):
        F.validate_record(cfg, rec)
    assert F.validate_record(cfg, rec, min_epochs=2)  # an exact prefix of 2 epochs


def test_local_fill_stores_every_run_and_a_second_driver_skips_them(mnist, tmp_path):
    configs = tiny_configs(4)
    store = ResultsStore(tmp_path)
    lines = []
    report = F.fill(store, F.split_groups(configs, max_group=2), device="cpu", progress=False,
                    announce=lines.append)
    assert (report.trained, report.skipped, report.failed) == (4, 0, 0)
    assert _files(store) == sorted(f"{config_key(c)}.json" for c in configs)
    assert sum(line.startswith("trained ") for line in lines) == 4
    assert str(store.runs_dir.resolve()) in report.summary() and "trained 4, skipped 0, failed 0" in report.summary()
    again = F.fill(store, F.split_groups(configs, max_group=2), device="cpu", progress=False,
                   engine=F.LocalEngine(train_fn=lambda **kw: pytest.fail("trained a stored run")))
    assert (again.trained, again.skipped, again.failed) == (0, 4, 0)


def _faulty(fail_seed=None, corrupt_seed=None, flaky_seed=None):
    """A train_fn: a group holding ``fail_seed`` raises, ``corrupt_seed``'s record comes back with broken
    predictions, ``flaky_seed``'s group raises on its first try only."""
    tries = {}

    def train(members, **kw):
        seeds = {c["seed"] for c in members}
        tries[frozenset(seeds)] = tries.get(frozenset(seeds), 0) + 1
        if fail_seed in seeds:
            raise RuntimeError(f"boom in seed {fail_seed}")
        if flaky_seed in seeds and tries[frozenset(seeds)] == 1:
            raise OSError("transient")
        recs = F.train_group(members, **kw)
        for r in recs:
            if r["config"]["seed"] == corrupt_seed:
                r["predictions"] = dict(r["predictions"], data="garbage")
        return recs

    return train, tries


def test_a_raising_group_and_a_malformed_record_are_reported_and_not_written(mnist, tmp_path):
    configs = tiny_configs(4)
    store = ResultsStore(tmp_path)
    train, _ = _faulty(fail_seed=0, corrupt_seed=3)
    groups = [F.Job(f"g{k}", g) for k, g in enumerate(F.split_groups(configs, max_group=2))]
    report = F.fill(store, groups, engine=F.LocalEngine(train_fn=train), device="cpu", progress=False)
    assert (report.trained, report.failed) == (1, 3)
    by_label = {f.label: f for f in report.failures}
    assert "RuntimeError: boom in seed 0" in by_label["g0"].error
    assert by_label["g0"].keys == [config_key(configs[0]), config_key(configs[1])]
    assert "MalformedRecord" in by_label["g1"].error and "predictions do not decode" in by_label["g1"].error
    assert by_label["g1"].keys == [config_key(configs[3])]
    assert _files(store) == [f"{config_key(configs[2])}.json"]  # nothing else, no temporary file
    assert "failed 3" in report.summary() and "g0" in by_label["g0"].line()


def test_retries_resubmit_a_failed_group(mnist, tmp_path):
    configs = tiny_configs(2)
    store = ResultsStore(tmp_path)
    train, tries = _faulty(flaky_seed=1)
    report = F.fill(store, F.split_groups(configs, one_by_one=True), engine=F.LocalEngine(train_fn=train),
                    device="cpu", progress=False, retries=1)
    assert (report.trained, report.failed, report.retried) == (2, 0, 1)
    assert tries == {frozenset({0}): 1, frozenset({1}): 2}
    none = F.fill(ResultsStore(tmp_path / "b"), F.split_groups(configs, one_by_one=True), device="cpu",
                  engine=F.LocalEngine(train_fn=_faulty(flaky_seed=1)[0]), progress=False)
    assert (none.trained, none.failed) == (1, 1) and "OSError: transient" in none.failures[0].error


def test_no_group_starts_after_the_time_limit(mnist, tmp_path):
    report = F.fill(ResultsStore(tmp_path), F.split_groups(tiny_configs(2), one_by_one=True), device="cpu",
                    progress=False, stop_after_s=0, started=0.0)
    assert (report.trained, report.not_started) == (0, 2) and "not started 2" in report.summary()


@pytest.fixture
def tiny_grid(monkeypatch):
    p = method_a_mnist("quick")
    monkeypatch.setitem(F.GRIDS, "tiny-test", lambda profile: [({"init": "Kaiming U", "seed": s}, p.config(s, **TINY))
                                                               for s in range(4)])
    monkeypatch.setenv("PATCHINIT_GIT_COMMIT", "test-commit")


def test_the_command_trains_here_by_default_and_deprecates_part(mnist, tiny_grid, tmp_path, capsys):
    out = tmp_path / "store"
    assert F.main(["tiny-test", "--results", str(out), "--dry-run", "--max-group", "2"]) == 0
    assert "tiny-test: 4 runs in 2 groups; to train: 4 runs in 2 groups" in capsys.readouterr().out
    with pytest.warns(DeprecationWarning, match="--engine ray"):
        assert F.main(["tiny-test", "--results", str(out), "--part", "1/2", "--one-by-one", "--device", "cpu",
                       "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "--part is deprecated" in captured.err and "this part trains 2 runs in 2 groups" in captured.out
    assert "trained 2, skipped 0, failed 0" in captured.out
    store = ResultsStore(out)
    assert {r["config"]["seed"] for r in store.records()} == {1, 3}
    assert {r["git_commit"] for r in store.records()} == {"test-commit"}
    assert F.main(["tiny-test", "--results", str(out), "--device", "cpu", "--no-progress"]) == 0
    assert "trained 2, skipped 2, failed 0" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        F.main(["tiny-test", "--results", str(out), "--part", "2/2"])


def test_a_lease_is_held_while_its_process_lives_and_is_stale_after(tmp_path):
    import socket
    import subprocess
    import sys
    import time

    mine = F.Leases(tmp_path)
    assert mine.take("k1") and mine.take("k1")  # taking it again is a no-op
    assert mine.holder("k1")["pid"] == os.getpid()
    assert not F.Leases(tmp_path).take("k1")  # another driver's view: held by a live process
    mine.give_back("k1")
    assert not (tmp_path / "k1.json").exists() and mine.holder("k1") is None

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(gone.stdout)
    host = socket.gethostname()
    cases = {"dead": {"host": host, "pid": dead_pid, "since": time.time()},
             "far-old": {"host": "elsewhere", "pid": 1, "since": time.time() - 2 * F.LEASE_TTL_S},
             "far-new": {"host": "elsewhere", "pid": 1, "since": time.time()},
             "alive": {"host": host, "pid": os.getppid(), "since": time.time()}}
    for key, info in cases.items():
        (tmp_path / f"{key}.json").write_text(json.dumps(info))
    (tmp_path / "torn.json").write_text('{"host": ')  # a driver killed mid-write
    taken = {key: mine.take(key) for key in (*cases, "torn")}
    assert taken == {"dead": True, "far-old": True, "far-new": False, "alive": False, "torn": True}
    assert json.loads((tmp_path / "dead.json").read_text())["pid"] == os.getpid()
    mine.give_back_all()
    assert sorted(p.stem for p in tmp_path.iterdir()) == ["alive", "far-new"]  # others' leases stay


def test_a_run_leased_by_another_driver_is_left_to_it_and_leases_are_given_back(mnist, tmp_path):
    configs = tiny_configs(3)
    store = ResultsStore(tmp_path)
    busy = store.root / "leases" / f"{config_key(configs[1])}.json"
    busy.parent.mkdir(parents=True)
    busy.write_text(json.dumps({"host": __import__("socket").gethostname(), "pid": os.getppid(), "since": 1e12}))
    train, _ = _faulty(fail_seed=2)
    report = F.fill(store, F.split_groups(configs, one_by_one=True), engine=F.LocalEngine(train_fn=train),
                    device="cpu", progress=False)
    assert (report.trained, report.elsewhere, report.failed) == (1, 1, 1)
    assert "1 in flight in another driver" in report.summary()
    assert _files(store) == [f"{config_key(configs[0])}.json"]
    assert sorted(p.name for p in busy.parent.iterdir()) == [busy.name]  # ours given back, even the failed one's


def test_two_drivers_on_one_grid_split_it_and_train_each_run_once(mnist, tmp_path):
    import threading
    import time

    configs = tiny_configs(4)
    calls, lock = [], threading.Lock()

    def slow_train(members, **kw):
        with lock:
            calls.extend(c["seed"] for c in members)
        time.sleep(0.3)  # long enough for the other driver to reach the same group
        return F.train_group(members, **kw)

    reports = [None, None]

    def drive(i):
        reports[i] = F.fill(ResultsStore(tmp_path), F.split_groups(configs, one_by_one=True), device="cpu",
                            engine=F.LocalEngine(train_fn=slow_train), progress=False)

    threads = [threading.Thread(target=drive, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
        time.sleep(0.05)
    for t in threads:
        t.join()
    assert sorted(calls) == [0, 1, 2, 3]  # every run trained once, by one of the two
    assert sum(r.trained for r in reports) == 4 and min(r.trained for r in reports) >= 1
    assert _files(ResultsStore(tmp_path)) == sorted(f"{config_key(c)}.json" for c in configs)
    assert not list((tmp_path / "leases").iterdir())


def test_processes_are_single_thread_drivers_that_split_the_grid(mnist, tmp_path, monkeypatch):
    import io
    import re

    from patchinit.fill.processes import child_env, run_processes, without_processes

    assert without_processes(["g", "--processes", "2", "--seeds", "0", "--processes=3"]) == ["g", "--seeds", "0"]
    assert {child_env(2, {"OMP_NUM_THREADS": "8"})[k] for k in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS")} == {"1"}
    monkeypatch.setenv("PATCHINIT_GIT_COMMIT", "test-commit")
    out = io.StringIO()
    argv = ["mnist-A1", "--profile", "quick", "--inits", "Kaiming U", "--seeds", "0,1,2", "--one-by-one",
            "--device", "cpu", "--no-progress", "--results", str(tmp_path), "--processes", "2"]
    assert run_processes(2, argv, out=out) == 0
    text = out.getvalue()
    assert {line[:4] for line in text.splitlines()} == {"[1] ", "[2] "}
    assert len(re.findall(r"training with 1 torch thread\(s\)", text)) == 2
    trained = [int(n) for n in re.findall(r"\] trained (\d+), skipped", text)]
    assert len(trained) == 2 and sum(trained) == 3  # each run once, by one of them
    assert len(list(ResultsStore(tmp_path).records())) == 3
    with pytest.raises(SystemExit):  # Ray spreads a grid itself
        F.main(["mnist-A1", "--processes", "2", "--engine", "ray"])
