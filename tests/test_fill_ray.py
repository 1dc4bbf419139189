"""The Ray engine of patchinit.fill on a local 2-CPU Ray cluster: the same records as the local engine,
a worker killed mid-task, a task that raises or returns a malformed record, a second driver."""
import builtins
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

import torch  # noqa: E402

from patchinit import fill as F  # noqa: E402
from patchinit.experiment import identify  # noqa: E402
from patchinit.protocols import method_a_mnist  # noqa: E402
from patchinit.results import ResultsStore, config_key  # noqa: E402

BUILTIN_PRINT = builtins.print  # Python's own (importing Ray leaves it)
TINY = {"init.patch": None, "train_subset": 128, "test_subset": 64, "train.epochs": 1, "train.batch_size": 64}
TIMING = {"seconds", "train_seconds", "wall_time_s", "created"}


def tiny_configs(n=4):
    """n LeNet runs (seeds 0..n-1) of 2 SGD steps each on 128 MNIST images, scored on 64."""
    p = method_a_mnist("quick")
    return [identify(p.config(s, **TINY)) for s in range(n)]


@pytest.fixture(scope="module")
def cluster(data_root):
    """A new local Ray instance with 2 CPUs (never a cluster this machine may run); its workers inherit
    this environment (data root, cache)."""
    os.environ["PATCHINIT_DATA"] = str(data_root)
    os.environ.pop("RAY_ADDRESS", None)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # CI has no network to report to
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # this module is not importable there
    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=100 * 2**20, log_to_driver=False,
             configure_logging=False)
    yield
    ray.shutdown()


@pytest.fixture
def env(cluster, monkeypatch):
    monkeypatch.setenv("PATCHINIT_GIT_COMMIT", "test-commit")
    monkeypatch.delenv("PATCHINIT_CHECKPOINTS", raising=False)


def _numbers(rec):
    """A record without its timings and dates: what must not depend on where it trained."""
    def strip(x):
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if k not in TIMING}
        if isinstance(x, list):
            return [strip(v) for v in x]
        return x

    out = strip(rec)
    out["extra"].pop("init", None)
    return out


def test_ray_fills_a_grid_with_the_records_the_local_engine_writes(env, tmp_path):
    configs = tiny_configs(4)
    groups = F.split_groups(configs, one_by_one=True)
    torch.set_num_threads(1)  # as a 1-CPU Ray task does: the same float reductions
    here, there = ResultsStore(tmp_path / "local"), ResultsStore(tmp_path / "ray")
    assert F.fill(here, groups, device="cpu", progress=False).trained == 4
    report = F.fill(there, groups, engine=F.RayEngine(device="cpu"), device="cpu", progress=False)
    assert (report.trained, report.skipped, report.failed) == (4, 0, 0)
    for c in configs:
        a, b = here.get(c), there.get(c)
        assert _numbers(a) == _numbers(b)
        assert a["metrics"][-1]["test_acc"] == b["metrics"][-1]["test_acc"] and b["git_commit"] == "test-commit"
    # a second driver on the same store trains nothing
    again = F.fill(there, groups, engine=F.RayEngine(device="cpu"), device="cpu", progress=False)
    assert (again.trained, again.skipped) == (0, 4)


def test_a_worker_killed_mid_task_is_retried_and_every_run_trains_once(env, tmp_path):
    configs = tiny_configs(4)
    trace = tmp_path / "trace"
    trace.mkdir()
    victim = config_key(configs[1])

    def train(members, **kw):
        key = config_key(members[0])
        folder = Path(str(trace))
        (folder / f"start-{key}-{os.getpid()}").touch()
        if key == victim and not (folder / "killed").exists():
            (folder / "victim.pid").write_text(str(os.getpid()))
            time.sleep(60)  # the test kills this worker here
        recs = F.train_group(members, **kw)
        (folder / f"done-{key}-{os.getpid()}").touch()
        return recs

    def killer():
        pid_file = trace / "victim.pid"
        for _ in range(600):
            if pid_file.exists() and pid_file.read_text():
                (trace / "killed").touch()
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
                return
            time.sleep(0.1)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    store = ResultsStore(tmp_path / "store")
    report = F.fill(store, F.split_groups(configs, one_by_one=True), engine=F.RayEngine(device="cpu", train_fn=train),
                    device="cpu", progress=False, checkpoint_dir=str(tmp_path / "checkpoints"))
    thread.join(timeout=1)
    assert (trace / "killed").exists(), "the victim's task never started"
    assert (report.trained, report.failed) == (4, 0)
    names = [p.name for p in trace.iterdir()]
    starts = {k: sum(n.startswith(f"start-{k}-") for n in names) for k in map(config_key, configs)}
    dones = {k: sum(n.startswith(f"done-{k}-") for n in names) for k in map(config_key, configs)}
    assert starts[victim] == 2 and dones[victim] == 1  # killed once, retried by Ray, trained once
    assert all(dones[k] == 1 and (k == victim or starts[k] == 1) for k in dones)
    assert sorted(p.name for p in store.runs_dir.iterdir()) == sorted(f"{config_key(c)}.json" for c in configs)
    assert all(F.validate_record(c, store.get(c)) for c in configs)
    # the driver relayed the raylet's line about the dead worker: print must still be Python's (numba, and so
    # UMAP, cannot compile functions that call a replaced print; it failed a later test in this process)
    assert builtins.print is BUILTIN_PRINT, f"Ray replaced builtins.print with {builtins.print!r}"


def test_a_raising_task_and_a_malformed_record_are_reported_and_nothing_corrupt_is_written(env, tmp_path):
    configs = tiny_configs(4)
    marks = tmp_path / "marks"
    marks.mkdir()

    def train(members, **kw):
        seed = members[0]["seed"]
        if seed == 0:
            raise RuntimeError("boom in seed 0")
        if seed == 2 and not (Path(str(marks)) / "flaky").exists():
            (Path(str(marks)) / "flaky").touch()
            raise OSError("transient")
        recs = F.train_group(members, **kw)
        if seed == 3:
            recs[0]["metrics"] = "not a list"
        return recs

    store = ResultsStore(tmp_path / "store")
    jobs = [F.Job(f"seed {c['seed']}", [c]) for c in configs]
    report = F.fill(store, jobs, engine=F.RayEngine(device="cpu", train_fn=train), device="cpu", progress=False,
                    retries=1)
    failures = {f.label: f for f in report.failures}
    assert (report.trained, report.failed, report.retried) == (2, 2, 2)  # seed 0 twice, seed 2 once, both retried
    assert "RuntimeError: boom in seed 0" in failures["seed 0"].error
    assert failures["seed 0"].keys == [config_key(configs[0])]
    assert "MalformedRecord" in failures["seed 3"].error and "metrics" in failures["seed 3"].error
    assert sorted(p.name for p in store.runs_dir.iterdir()) == sorted(f"{config_key(c)}.json" for c in configs[1:3])
    assert all(F.validate_record(c, store.get(c)) for c in configs[1:3])


def test_the_command_fills_through_ray(env, tmp_path, monkeypatch, capsys):
    p = method_a_mnist("quick")
    monkeypatch.setitem(F.GRIDS, "tiny-test", lambda profile: [({"init": "Kaiming U", "seed": s}, p.config(s, **TINY))
                                                               for s in range(2)])
    out = tmp_path / "store"
    assert F.main(["tiny-test", "--engine", "ray", "--results", str(out), "--device", "cpu", "--allow-dirty",
                   "--one-by-one", "--no-progress", "--retries", "1"]) == 0
    assert "trained 2, skipped 0, failed 0" in capsys.readouterr().out
    assert len(list(ResultsStore(out).records())) == 2


def test_a_group_checkpoints_under_ray_and_a_later_fill_resumes_it(env, tmp_path):
    p = method_a_mnist("quick")
    configs = [identify(p.config(s, **dict(TINY, **{"train.epochs": 2}))) for s in range(2)]
    groups = F.split_groups(configs)  # one group of two: one checkpoint for the group
    store, checkpoints = ResultsStore(tmp_path / "store"), str(tmp_path / "shared-checkpoints")
    first = F.fill(store, groups, engine=F.RayEngine(device="cpu"), device="cpu", progress=False, prefix=1,
                   checkpoint_dir=checkpoints)
    assert first.trained == 2 and all(store.get(c, 1)["epochs_run"] == 1 for c in configs)
    assert len({name.split(".")[0] for name in os.listdir(checkpoints)}) == 1  # the group's (per model on a CPU)
    prefix = {config_key(c): store.get(c, 1) for c in configs}
    rest = F.fill(store, groups, engine=F.RayEngine(device="cpu"), device="cpu", progress=False,
                  checkpoint_dir=checkpoints)
    assert rest.trained == 2
    torch.set_num_threads(1)
    alone = ResultsStore(tmp_path / "alone")
    F.fill(alone, groups, device="cpu", progress=False)
    for c in configs:
        full = store.get(c)
        assert full["epochs_run"] == 2 and full["tier"] == "quick"
        assert full["metrics"][0] == prefix[config_key(c)]["metrics"][0]  # epoch 1 resumed, timing and all
        # the record kept the prefix run's epoch-1 test predictions, which the uninterrupted run has no need of
        assert full.pop("prefix_predictions") == {"1": prefix[config_key(c)]["predictions"]}
        assert _numbers(full) == _numbers(alone.get(c))  # and the same numbers as an uninterrupted run
