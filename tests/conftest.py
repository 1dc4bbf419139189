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
    """Decoded-array cache shared by the whole session, outside the repo."""
    cache = os.environ.get("PATCHINIT_CACHE") or str(tmp_path_factory.mktemp("patchinit-cache"))
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
