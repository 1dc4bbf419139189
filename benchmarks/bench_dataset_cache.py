"""Cold vs warm ``load_dataset`` for every dataset found under the data root.

Cold: a fresh, empty cache folder, so the source is read and decoded (both
splits) and the arrays are written to the cache.  Warm: the same calls again,
after clearing the in-process checksum memo, so the archive is hashed again as
in a new Python process and only the cache is read.  Each measurement loads the
train and the test split.

Prints ``RESULT <dataset>_cold_s=``, ``RESULT <dataset>_warm_s=`` and
``RESULT <dataset>_cache_speedup=`` lines.

Usage: ``python benchmarks/bench_dataset_cache.py [--root DIR] [--datasets mnist cifar10]``
(root defaults to ``$PATCHINIT_DATA``).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from patchinit.data import fingerprint
from patchinit.data.datasets import load_dataset
from patchinit.data.errors import DatasetNotFoundError
from patchinit.data.sources import DATASETS


def timed_load(name: str, root: Path, cache: Path, workers: int | None) -> float:
    fingerprint._memo.clear()
    start = time.perf_counter()
    for split in ("train", "test"):
        load_dataset(name, split, root=root, cache_dir=cache, workers=workers)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default=os.environ.get("PATCHINIT_DATA"),
                        help="data root (default: $PATCHINIT_DATA)")
    parser.add_argument("--datasets", nargs="*", default=list(DATASETS))
    parser.add_argument("--workers", type=int, default=None, help="decoding threads")
    args = parser.parse_args()
    if not args.root:
        parser.error("no data root: pass --root or set PATCHINIT_DATA")
    root = Path(args.root)
    for name in args.datasets:
        with tempfile.TemporaryDirectory(prefix="bench-cache-") as cache:
            try:
                cold = timed_load(name, root, Path(cache), args.workers)
            except DatasetNotFoundError:
                print(f"# {name}: not found under {root}, skipped", file=sys.stderr)
                continue
            warm = min(timed_load(name, root, Path(cache), args.workers) for _ in range(3))
        print(f"RESULT {name}_cold_s={cold:.3f}")
        print(f"RESULT {name}_warm_s={warm:.3f}")
        print(f"RESULT {name}_cache_speedup={cold / warm:.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
