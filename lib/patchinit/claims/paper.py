"""The papers' own numbers, read from ``book/paper/*.csv`` (transcribed there, never typed into a chapter)."""
from __future__ import annotations

import functools

from patchinit.paths import paper_csv


@functools.lru_cache(maxsize=None)
def _table(name: str):
    import pandas as pd

    return pd.read_csv(paper_csv(name))


def method_b_accuracy():
    """Tables 5.2 and 8.1–8.9: model (lower case, ``resnet18`` for ResNet-18), dataset, metric, init,
    ``prune`` (a fraction), value, std, seeds."""
    t = _table("method_b_accuracy").copy()
    t["model"] = t["model"].str.lower().str.replace("-", "", regex=False)
    t["prune"] = t["prune_pct"] / 100
    return t


def method_b_pc_ablation():
    """Tables 5.3, 8.10, 8.11: prune, P, C (None for SimpleInit), top5, init_minutes."""
    t = _table("method_b_patches_clusters_ablation").copy()
    t["prune"] = t["prune_pct"] / 100
    t["P"] = [_count(v) for v in t["patches_P"]]
    t["C"] = [None if c == "SimpleInit" else int(c) for c in t["clusters_C"]]
    return t


def method_b_entropy():
    """Table 5.4: clusters_C ("SimpleInit" or C), layer, mean_entropy_bits."""
    return _table("method_b_cluster_entropy").copy()


def method_b_d_ablation():
    """Tables 5.5, 8.12, 8.13: prune, selection ("xC-yD"), top5."""
    t = _table("method_b_layer_d_ablation").copy()
    t["prune"] = t["prune_pct"] / 100
    return t


def _count(text: str) -> int:
    text = str(text).strip().lower()
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1], 1)
    return int(float(text[:-1] if scale > 1 else text) * scale)
