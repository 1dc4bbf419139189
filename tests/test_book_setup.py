"""The book as its readers meet it: paths from any directory, chapter parameters, tables, figure style,
progress bars, the jupytext header, and bad input that would lose work."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from patchinit import bars, paths  # noqa: E402
from patchinit import experiment as E  # noqa: E402
from patchinit.chapter import Chapter, parse_seeds  # noqa: E402
from patchinit.plots import COLUMN_WIDTH, STYLE, mark_overlaps, panels, use_book_style  # noqa: E402
from patchinit.protocols import method_a_mnist, method_b_accuracy_grid  # noqa: E402
from patchinit.results import MissingRunsError, ResultsStore, config_key  # noqa: E402
from patchinit.tables import MISSING, show, sig  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def fake_copy(monkeypatch):
    """Configs get a fixed data fingerprint, so no dataset is read."""
    monkeypatch.setattr(E, "data_fingerprint", lambda name: f"test-{name}")


# -- paths --------------------------------------------------------------------------------------
def test_paths_come_from_the_repository_not_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("PATCHINIT_ROOT", raising=False)
    monkeypatch.delenv("PATCHINIT_RESULTS", raising=False)
    monkeypatch.chdir(tmp_path)
    assert paths.repo_root() == REPO
    assert paths.results_dir() == REPO / "results"
    assert paths.paper_csv("method_b_accuracy") == REPO / "book" / "paper" / "method_b_accuracy.csv"
    assert paths.results_dir("mine") == tmp_path / "mine"  # a given relative path is the caller's, as on a command line
    with pytest.raises(FileNotFoundError, match="no paper table nope.csv"):
        paths.paper_csv("nope")


def test_paths_follow_patchinit_root_and_results(tmp_path, monkeypatch):
    (tmp_path / "results").mkdir()
    (tmp_path / "book" / "paper").mkdir(parents=True)
    monkeypatch.setenv("PATCHINIT_ROOT", str(tmp_path))
    monkeypatch.delenv("PATCHINIT_RESULTS", raising=False)
    assert paths.results_dir() == tmp_path / "results" and paths.paper_dir() == tmp_path / "book" / "paper"
    monkeypatch.setenv("PATCHINIT_RESULTS", str(tmp_path / "elsewhere"))
    assert paths.results_dir() == tmp_path / "elsewhere"
    monkeypatch.setenv("PATCHINIT_ROOT", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="PATCHINIT_ROOT"):
        paths.repo_root()


def test_a_chapter_finds_the_store_from_any_directory(tmp_path):
    code = ("from patchinit.chapter import Chapter; ch = Chapter('02-mnist-kaiming'); "
            "print(ch.store.root); print(ch.allow)")
    env = {k: v for k, v in os.environ.items() if k not in ("PATCHINIT_RESULTS", "PATCHINIT_ROOT")}
    for cwd in (REPO, REPO / "notebooks", tmp_path):
        out = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                             check=True).stdout.split()
        assert out == [str(REPO / "results"), "True"], cwd


# -- chapter parameters ----------------------------------------------------------------------------
def test_parse_seeds_takes_what_papermill_passes():
    assert parse_seeds(None) is None
    assert parse_seeds("[0]") == (0,) and parse_seeds("0, 1") == (0, 1) and parse_seeds("2 3") == (2, 3)
    assert parse_seeds(4) == (4,) and parse_seeds([5, 6]) == (5, 6)
    for bad in ("", "[]", "a", [0, 0], [1.5], True):
        with pytest.raises(ValueError, match="seeds"):
            parse_seeds(bad)


def test_chapter_checks_its_parameters():
    with pytest.raises(ValueError, match="profile"):
        Chapter("x", "fast")
    with pytest.raises(ValueError, match="test_subset"):
        Chapter("x", test_subset=0)
    with pytest.raises(ValueError, match="allow_training"):
        Chapter("x", allow_training="yes")
    assert Chapter("x", "paper").allow is False and Chapter("x", "paper", True).allow is True


def test_chapter_overrides_seeds_and_test_subset_of_a_protocol():
    ch = Chapter("02-mnist-kaiming", seeds="[7]", test_subset=500)
    proto = ch.protocol(method_a_mnist("quick"))
    configs = proto.configs()
    assert [c["seed"] for c in configs] == [7] and all(c["test_subset"] == 500 for c in configs)
    assert method_a_mnist("quick").seeds == (0, 1, 2)  # the profile itself is untouched
    text = ch.describe(method_a_mnist("quick"))
    assert "seed 7 (the profile has 0, 1, 2)" in text and "500 test images" in text
    assert Chapter("02-mnist-kaiming").protocol(method_a_mnist("quick")).seeds == (0, 1, 2)


def test_chapter_grid_gives_each_run_the_chapter_seeds():
    base = method_b_accuracy_grid("quick", "cifar10")
    ch = Chapter("05-cifar10-supermasks", seeds=[3, 4])
    grid = ch.grid(base)
    assert len(grid) == 2 * len(base)
    assert [row["seed"] for row, _ in grid[:2]] == [3, 4] and [c["seed"] for _, c in grid[:2]] == [3, 4]
    assert {k: v for k, v in grid[0][1].items() if k != "seed"} == {k: v for k, v in base[0][1].items() if k != "seed"}
    assert [config_key(c) for _, c in Chapter("x").grid(base)] == [config_key(c) for _, c in base]


def test_missing_runs_error_lists_every_run_of_the_chapter(tmp_path, fake_copy):
    ch = Chapter("05-cifar10-supermasks", "paper", results_dir=str(tmp_path / "store"), announce=None)
    grid = ch.grid(method_b_accuracy_grid("paper", "cifar10"))
    extra = ch.grid(method_b_accuracy_grid("paper", "cifar100"))[:3]
    with pytest.raises(MissingRunsError) as err:
        ch.require(grid, extra)
    assert len(err.value.missing) == len(grid) + 3
    message = str(err.value)
    assert f"{len(grid) + 3} run(s)" in message and "make paper NB=notebooks/05-cifar10-supermasks.md" in message
    assert message.index("run(s)") < message.index("Produce them with")


def test_chapter_announces_what_it_trains(tmp_path, fake_copy, monkeypatch):
    said = []
    ch = Chapter("02-mnist-kaiming", results_dir=str(tmp_path / "store"), seeds=[0], announce=said.append)
    configs = ch.protocol(method_a_mnist("quick")).configs(**{"init.patch": None})
    fake = {"metrics": [{"test_acc": 50.0}] * 5, "predictions": np.zeros(3, dtype=np.int64),
            "result": {"test_acc": 50.0}, "device": "cpu"}
    monkeypatch.setattr(E, "run", lambda config, **kw: dict(fake))
    assert len(ch.missing(configs)[0]) == 1
    ch.require(configs)
    assert "1 of the chapter's 1 runs are not in the results store" in said[-1]
    records = ch.run_all(ch.store, configs)
    assert len(records) == 1 and records[0]["config"]["seed"] == 0
    assert said[-1].startswith(f"trained {config_key(records[0]['config'])} (mnist, lenet, kaiming_uniform")
    assert str(ch.store.path(records[0]["config"])) in said[-1]
    ch.require(configs)
    assert said[-1].startswith("all 1 runs of the chapter are in the results store")


# -- a read-only store fails before any training ----------------------------------------------------
def _no_training(*args, **kwargs):
    raise AssertionError("a run was trained before the store was found unwritable")


def test_unwritable_store_fails_before_training(tmp_path, fake_copy, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    store = ResultsStore(blocker / "results")  # nothing can be created below a regular file, even as root
    monkeypatch.setattr(E, "run", _no_training)
    monkeypatch.setattr(E, "run_many", _no_training)
    configs = method_a_mnist("quick").configs()
    with pytest.raises(PermissionError, match="not writable.*no run was trained"):
        E.run_all(store, configs, device="cpu")
    with pytest.raises(PermissionError, match="PATCHINIT_RESULTS"):
        store.check_writable()


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_store_fails_before_training(tmp_path, fake_copy, monkeypatch):
    root = tmp_path / "results"
    (root / "runs").mkdir(parents=True)
    os.chmod(root / "runs", 0o555)
    monkeypatch.setattr(E, "run", _no_training)
    monkeypatch.setattr(E, "run_many", _no_training)
    try:
        with pytest.raises(PermissionError, match="not writable"):
            E.run_all(ResultsStore(root), method_a_mnist("quick").configs(), device="cpu")
    finally:
        os.chmod(root / "runs", 0o755)


# -- tables -----------------------------------------------------------------------------------------
def test_sig_writes_numbers_as_a_person_does():
    assert [sig(x) for x in (0.1, 1e-5, 5e-4, 12.345, 123456.0, 3, 2.0, 0.0, -2.5e-7)] == \
        ["0.1", "1e-5", "0.0005", "12.3", "123,456", "3", "2", "0", "-2.5e-7"]
    assert sig(np.nan) == sig(None) == sig(pd.NA) == MISSING and sig("text") == "text"
    assert sig(0.123456, 2) == "0.12" and sig(float("inf")) == "∞"


def test_show_formats_float_labels_and_missing_cells():
    frame = pd.DataFrame({"a": [1.234, np.nan], "p": [0.000123, 0.5]},
                         index=pd.Index([0.1, 1e-5], name="lr"))
    html = show(frame, 2, formats={"p": "{:.2g}"}, caption="Table 1 <x>")._repr_html_()
    assert ">0.1<" in html and ">1e-5<" in html and "0.100000" not in html and "0.000010" not in html
    assert MISSING in html and "nan" not in html.lower().replace("nanum", "")
    assert ">1.23<" in html and ">0.00012<" in html
    # the caption sits above the table's own scroll box, not inside the table
    assert html.index('class="pi-table-caption">Table 1 &lt;x&gt;</p>') < html.index('class="pi-table-scroll"')
    assert "<caption" not in html
    with pytest.raises(KeyError, match="formats names"):
        show(frame, formats={"nope": "{:.1f}"})


def test_show_formats_multiindex_levels():
    frame = pd.DataFrame({"v": [1.0, 2.0]}, index=pd.MultiIndex.from_tuples([(0.001, "x"), (0.1, "y")]))
    html = show(frame, 1)._repr_html_()
    assert ">0.001<" in html and ">0.1<" in html and "0.001000" not in html


# -- figures ----------------------------------------------------------------------------------------
def test_book_style_and_panels_fit_the_column():
    use_book_style()
    assert matplotlib.rcParams["figure.dpi"] == STYLE["figure.dpi"]
    fig, axes = panels(5)
    assert len(axes) == 5 and len(fig.axes) == 5  # three rows of two, the sixth removed
    assert fig.get_size_inches()[0] == pytest.approx(COLUMN_WIDTH)
    assert len({ax.get_position().x0 for ax in axes}) == 2
    plt.close(fig)
    fig, axes = panels(1)
    assert len(axes) == 1
    plt.close(fig)


def test_mark_overlaps_makes_a_hidden_curve_visible():
    fig, ax = plt.subplots()
    ax.plot([1, 2, 3], [9.74, 9.74, 9.74], label="activations")
    ax.plot([1, 2, 3], [9.74, 9.74, 9.74], label="volume")
    ax.plot([1, 2, 3], [50, 60, 70], label="other")
    assert mark_overlaps(ax) == [("volume", "activations")]
    lines = ax.get_lines()
    assert lines[1].get_label() == "volume (on top of activations)" and lines[1].get_linestyle() != "-"
    assert lines[2].get_label() == "other"
    plt.close(fig)


# -- progress bars ----------------------------------------------------------------------------------
def test_progress_bars_follow_the_argument_then_the_environment(monkeypatch):
    monkeypatch.delenv(bars.ENV, raising=False)
    assert bars.disable(True) is False and bars.disable(False) is True
    assert bars.disable(None) is None  # tqdm decides: bars on a terminal only
    monkeypatch.setenv(bars.ENV, "0")
    assert bars.disable(None) is True and bars.disable(True) is False
    monkeypatch.setenv(bars.ENV, "on")
    assert bars.disable(None) is False
    monkeypatch.setenv(bars.ENV, "maybe")
    with pytest.raises(ValueError, match=bars.ENV):
        bars.disable(None)


def test_library_script_prints_no_bars_when_not_on_a_terminal():
    code = ("import numpy as np; from patchinit.patches.sift import sift_patches; "
            "sift_patches(np.random.default_rng(0).integers(0, 255, (40, 32, 32, 3), dtype=np.uint8), 15)")
    env = {k: v for k, v in os.environ.items() if k != bars.ENV}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert "SIFT keypoints" not in out.stderr
    out = subprocess.run([sys.executable, "-c", code], env=dict(env, **{bars.ENV: "1"}), capture_output=True,
                         text=True, check=True)
    assert "SIFT keypoints" in out.stderr


# -- bad input --------------------------------------------------------------------------------------
def test_patchesinit_on_blank_images_says_so_without_warnings():
    from patchinit.init.method_b import patches_init_
    from patchinit.models import build_model

    images = np.zeros((20, 32, 32, 3), np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # sklearn's "invalid value encountered in divide" must not leak
        with pytest.raises(ValueError, match=r"layer 1 \('conv1'\).*images blank"):
            patches_init_(build_model("conv2", 10), images, np.arange(20) % 10, P=1000, C=20, seed=0,
                          mean=(0.5,) * 3, std=(0.25,) * 3)


def test_too_few_patches_for_c_names_the_layer():
    from patchinit.init.method_b import patches_init_
    from patchinit.models import build_model

    images = np.random.default_rng(0).integers(0, 255, (2, 32, 32, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match=r"layer 1 \('conv1'\): cannot form C=500 clusters from 100 patches"):
        patches_init_(build_model("conv2", 10), images, np.arange(2), P=100, C=500, seed=0,
                      mean=(0.5,) * 3, std=(0.25,) * 3)


def test_failed_download_tells_a_newcomer_what_the_book_needs(tmp_path, monkeypatch):
    import patchinit.data.download as dl
    from patchinit.data import load_dataset
    from patchinit.data.errors import DownloadError

    with socket.socket() as s:  # a loopback port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    spec = dl.DOWNLOADS["mnist"]
    monkeypatch.setitem(dl.DOWNLOADS, "mnist", dl.DownloadSpec((f"http://127.0.0.1:{port}/",), spec.files,
                                                               spec.subdir, spec.megabytes))
    with pytest.raises(DownloadError) as err:
        load_dataset("mnist", "train", root=tmp_path / "data", download=True)
    text = str(err.value)
    for needed in ("make book", "MB", "11 minutes", "PATCHINIT_DATA", "cifar-10-python.tar.gz", str(tmp_path / "data")):
        assert needed in text, needed


# -- JupyterLab and jupytext ------------------------------------------------------------------------
def test_a_jupyterlab_save_leaves_the_chapters_as_committed():
    """What JupyterLab's save does through jupytext's contents manager: read the .md, set the running
    kernel's spec (name, display name, language, in that order), write it back with jupytext.toml."""
    import jupytext
    from ipykernel.kernelspec import get_kernel_dict
    from jupytext.config import load_jupytext_configuration_file

    config = load_jupytext_configuration_file(str(REPO / "jupytext.toml"))
    assert "ipynb" in config.formats[0] and "md:myst" in config.formats[0]
    spec = get_kernel_dict()
    chapters = sorted((REPO / "notebooks").glob("*.md"))
    assert len(chapters) >= 14
    for path in chapters:
        text = path.read_text()
        nb = jupytext.reads(text, fmt="md:myst", config=config)
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": spec["display_name"],
                                     "language": spec["language"]}
        nb.metadata["language_info"] = {"name": "python", "version": sys.version.split()[0]}
        assert jupytext.writes(nb, fmt="md:myst", config=config) == text, path.name


def test_every_experiment_chapter_takes_the_same_parameters():
    import jupytext

    names = ("profile", "allow_training", "device", "results_dir", "seeds", "test_subset")
    for path in sorted((REPO / "notebooks").glob("*.md")):
        nb = jupytext.read(path)
        params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(params) == 1, path.name
        source = params[0].source
        if "allow_training" in source and "profile" in source:   # a chapter with both profiles
            assert all(f"\n{n} = " in "\n" + source for n in names), path.name
            code = "".join(c.source for c in nb.cells if c.cell_type == "code")
            assert 'results_dir = "' not in source and "../" not in code, path.name


@pytest.mark.slow
def test_papermill_from_the_repository_root(tmp_path):
    """A notebook run by papermill from the repository root finds the store and the papers' tables."""
    import nbformat

    pytest.importorskip("papermill")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell('seeds = None\nresults_dir = None', metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell(
                    "import json, pandas as pd\nfrom patchinit.chapter import Chapter\nfrom patchinit.paths import paper_csv\n"
                    "ch = Chapter('02-mnist-kaiming', seeds=seeds, results_dir=results_dir)\n"
                    "print(json.dumps({'store': str(ch.store.root), 'seeds': list(ch.seeds),\n"
                    "                  'rows': len(pd.read_csv(paper_csv('method_b_accuracy')))}))")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    src, out = tmp_path / "in.ipynb", tmp_path / "out.ipynb"
    nbformat.write(nb, src)
    env = {k: v for k, v in os.environ.items() if k not in ("PATCHINIT_RESULTS", "PATCHINIT_ROOT")}
    subprocess.run([sys.executable, "-m", "papermill", str(src), str(out), "-p", "seeds", "[0]", "--log-level", "ERROR"],
                   cwd=REPO, env=env, check=True, capture_output=True)
    text = "".join(o.get("text", "") for o in nbformat.read(out, as_version=4).cells[-1].outputs)
    result = json.loads(text)
    assert result["store"] == str(REPO / "results") and result["seeds"] == [0] and result["rows"] > 0


def test_method_a_errors_name_the_layer():
    from patchinit.init.method_a import method_a_init_
    from patchinit.models import build_model

    images = np.random.default_rng(0).integers(0, 255, (2, 28, 28, 1), dtype=np.uint8)
    with pytest.raises(ValueError, match=r"layer 'conv1' \(20 filters\): only 18 usable patches"):
        method_a_init_(build_model("lenet", 10), images, ["conv1"], source="grid", patch_size=14, stride=7,
                       min_pixels=0, reducer="pca", n_components=2, pattern="mean", n_nearest=1, progress=False)
