"""The in-memory result of decoding one dataset source (both splits).

Format readers (IDX, CIFAR pickles, image folders, TinyImageNet) all return a
:class:`Decoded`, so validation, statistics and caching are written once.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class SplitArrays:
    """Images ``(N, H, W, C)`` uint8 and int64 labels of one split."""

    images: np.ndarray
    labels: np.ndarray
    coarse_labels: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if self.coarse_labels is not None:
            self.coarse_labels = np.asarray(self.coarse_labels, dtype=np.int64)


@dataclass
class Decoded:
    """Every split of one source plus the class metadata they share."""

    splits: dict[str, SplitArrays]
    classes: list[str]
    coarse_classes: list[str] | None = None
    wnids: list[str] | None = None
