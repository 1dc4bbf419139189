"""``--processes N``: the same fill command as N single-thread driver processes that share the grid.

Small models are overhead-bound on a CPU, so on 2 cores two single-thread processes train more runs per hour
than one two-thread process (see ``benchmarks/README.md``).  Each child runs this command without
``--processes``, with ``OMP_NUM_THREADS=1`` (and MKL's, OpenBLAS's and numba's), so its torch, its BLAS and
its UMAP take one core each.  The children split the grid through the leases of :mod:`patchinit.fill.leases`:
none trains a run another has in flight.  Their output is passed on line by line, each line prefixed with
``[i]``; the exit status is the worst of theirs.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
from typing import Callable, Sequence

#: The variables set to 1 in every child: one thread for torch, the BLAS libraries and numba (UMAP).
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")


def without_processes(argv: Sequence[str]) -> list[str]:
    """``argv`` without its ``--processes N`` (or ``--processes=N``)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--processes":
            skip = True
        elif not a.startswith("--processes="):
            out.append(a)
    return out


def child_env(index: int, environ: dict | None = None) -> dict:
    env = dict(os.environ if environ is None else environ)
    env.update({name: "1" for name in THREAD_VARS})
    env["PATCHINIT_FILL_PROCESS"] = str(index)
    return env


def _relay(stream, prefix: str, out) -> None:
    for line in stream:
        out.write(f"{prefix}{line}")
        out.flush()


def run_processes(n: int, argv: Sequence[str], *, out=None,
                  popen: Callable[..., subprocess.Popen] = subprocess.Popen) -> int:
    """Run ``python -m patchinit.fill`` with ``argv`` (less ``--processes``) as ``n`` child processes; wait for
    all of them and return the largest exit status."""
    out = out or sys.stdout
    cmd = [sys.executable, "-m", "patchinit.fill", *without_processes(argv)]
    children, relays = [], []
    for i in range(1, n + 1):
        p = popen(cmd, env=child_env(i), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        t = threading.Thread(target=_relay, args=(p.stdout, f"[{i}] ", out), daemon=True)
        t.start()
        children.append(p)
        relays.append(t)
    try:
        codes = [p.wait() for p in children]
    except KeyboardInterrupt:  # stop the children too, so no run trains on unseen
        for p in children:
            p.terminate()
        raise
    for t in relays:
        t.join()
    return max(codes)
