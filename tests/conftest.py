"""Shared fixtures.

The real datasets are found through ``PATCHINIT_DATA`` (CI points it at
``../shared/data``); when it is unset we look for a ``shared/data`` folder beside
the checkout.  Tests that need real data are skipped when neither exists, so the
suite still runs for a user without the archives.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def _find_data_root() -> Path | None:
    env = os.environ.get("PATCHINIT_DATA")
    if env:
        return Path(env)
    beside = REPO.parent / "shared" / "data"
    return beside if beside.is_dir() else None


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = _find_data_root()
    if root is None or not root.is_dir():
        pytest.skip("no dataset root: set PATCHINIT_DATA")
    return root


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Decoded-array cache shared by the whole session, outside the repo.

    Under pytest-xdist every worker has its own temporary folder below one shared by the session; the
    cache goes there, so that a dataset is decoded once per session, not once per worker (the cache's
    writes are atomic, so workers that decode the same source at the same time do no harm)."""
    cache = os.environ.get("PATCHINIT_CACHE")
    if not cache:
        if os.environ.get("PYTEST_XDIST_WORKER"):
            shared = tmp_path_factory.getbasetemp().parent / "patchinit-cache"
            shared.mkdir(exist_ok=True)
            cache = str(shared)
        else:
            cache = str(tmp_path_factory.mktemp("patchinit-cache"))
    old = os.environ.get("PATCHINIT_CACHE")
    os.environ["PATCHINIT_CACHE"] = cache
    yield Path(cache)
    if old is None:
        os.environ.pop("PATCHINIT_CACHE", None)


@pytest.fixture(autouse=True)
def _threads():
    """One thread per pytest-xdist worker (two workers share two cores), else two."""
    torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else 2)
    yield


# -- negative controls for the "it learns" tests --------------------------------------------------
@pytest.fixture
def shuffle_training_labels(monkeypatch):
    """A callable: after it, every run of ``patchinit.experiment`` trains on a fixed permutation of its
    training labels (images, test set and everything else as they were).  A run that still scores
    above chance on the test set learned from something other than the labels."""
    import numpy as np

    from patchinit import experiment as E

    def apply(seed: int = 1):
        real = E._train_images

        def shuffled(config):
            images, labels = real(config)
            return images, np.random.default_rng(seed).permutation(labels)

        monkeypatch.setattr(E, "_train_images", shuffled)

    return apply


def untrained_run(config, device: str = "cpu"):
    """The run of ``config`` with zero optimiser steps: its model as initialised, after the forward
    passes of every training batch of the schedule (they move batch-norm running statistics, and
    nothing else), and its test batches.  Returns ``(model, test_batches)``."""
    from patchinit import experiment as E

    model, _ = E.build_initialised_model(config, device)
    tr, te = E._batches(config, device)
    if any(getattr(m, "track_running_stats", False) for m in model.modules()):
        model.train()
        with torch.no_grad():
            for epoch in range(int(config["train"]["epochs"])):
                for x, _ in tr.epoch(int(config["seed"]), epoch):
                    model(x)
    return model, te


@pytest.fixture
def untrained():
    return untrained_run
