"""Seeded subsampling of a patch set down to a budget."""
from __future__ import annotations

import logging

import numpy as np

from patchinit.patches.base import PatchSet, as_rng

log = logging.getLogger(__name__)


def subsample_indices(n: int, budget: int | None, seed) -> np.ndarray:
    """Sorted indices of ``min(n, budget)`` items drawn without replacement.

    Sorting keeps the original (image) order, so a subsample reads like the full
    set with gaps.  ``budget=None`` keeps everything.
    """
    if budget is None:
        return np.arange(n, dtype=np.int64)
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 1:
        raise ValueError(f"budget must be a positive int or None, got {budget!r}")
    if budget >= n:
        return np.arange(n, dtype=np.int64)
    idx = as_rng(seed).choice(n, size=int(budget), replace=False)
    return np.sort(idx).astype(np.int64)


def subsample(patchset: PatchSet, budget: int | None, seed) -> PatchSet:
    """At most ``budget`` patches, chosen with ``numpy.random.default_rng(seed)``.

    ``image_index`` and ``positions`` stay aligned.  With ``budget=None`` or a
    budget at least the set's size, the set is returned unchanged.
    """
    idx = subsample_indices(len(patchset), budget, seed)
    if idx.size == len(patchset):
        return patchset
    log.info("subsampled %d of %d patches (budget=%d)", idx.size, len(patchset), budget)
    return patchset.select(idx)
