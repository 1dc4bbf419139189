"""A run's identity names the data copy it trained on: the fingerprint of the decoded arrays."""
from types import SimpleNamespace

import numpy as np
import pytest

from patchinit import experiment as E
from patchinit.data.fingerprint import arrays_fingerprint


def split(images, labels):
    return SimpleNamespace(images=np.asarray(images, np.uint8), labels=np.asarray(labels, np.int64))


def test_arrays_fingerprint_names_the_pixels_not_the_files():
    a = {"train": split(np.zeros((2, 4, 4, 3)), [0, 1]), "test": split(np.ones((1, 4, 4, 3)), [1])}
    same = {"test": split(np.ones((1, 4, 4, 3)), [1]), "train": split(np.zeros((2, 4, 4, 3)), [0, 1])}
    assert arrays_fingerprint(a) == arrays_fingerprint(same)  # however the copy was stored or ordered in the dict
    lossy = {"train": split(np.zeros((2, 4, 4, 3)) + np.eye(4)[None, :, :, None], [0, 1]), "test": a["test"]}
    relabelled = {"train": split(np.zeros((2, 4, 4, 3)), [1, 0]), "test": a["test"]}
    assert len({arrays_fingerprint(x) for x in (a, lossy, relabelled)}) == 3
    assert arrays_fingerprint(a).startswith("arrays-sha256:")


def test_identify_adds_the_local_copy_and_run_refuses_another(monkeypatch):
    monkeypatch.setattr(E, "data_fingerprint", lambda name: f"arrays-sha256:local-{name}")
    from patchinit.protocols import method_a_mnist

    cfg = method_a_mnist("quick").config(0)
    assert E.identify(cfg) == {**cfg, "data_fingerprint": "arrays-sha256:local-mnist"}
    theirs = {**cfg, "data_fingerprint": "arrays-sha256:someone-elses"}
    assert E.identify(theirs) == theirs  # a config that names its copy keeps it
    with pytest.raises(E.DataCopyMismatch, match="someone-elses.*PATCHINIT_DATA"):
        E.run(theirs)  # before any model is built or trained
