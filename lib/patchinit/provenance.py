"""Where and with what a run was made: the git commit (and the hash of uncommitted changes), the device,
the library versions and the time, written into every record (:func:`provenance`)."""
from __future__ import annotations

import datetime as _dt
import hashlib
import os
import platform
import subprocess
import sys
from pathlib import Path

__all__ = ["git_state", "provenance"]


def git_state() -> dict:
    """``git_commit`` of the library's checkout, and ``git_diff_sha256`` (the hash of
    ``git diff HEAD``) when tracked files have uncommitted changes, so that a record
    made from a dirty tree still names the exact code.  ``$PATCHINIT_GIT_COMMIT``
    and ``$PATCHINIT_GIT_DIFF_SHA256`` override them (a copy of the tree without its git folder, such
    as a GPU lease, or a long fill that pins the state it started from)."""
    env = os.environ.get("PATCHINIT_GIT_COMMIT")
    if env:
        diff = os.environ.get("PATCHINIT_GIT_DIFF_SHA256")
        return {"git_commit": env, **({"git_diff_sha256": diff} if diff else {})}
    try:
        here = Path(__file__).resolve().parent
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                             timeout=5).stdout.strip()
        if not sha:
            return {"git_commit": "unknown"}
        diff = subprocess.run(["git", "diff", "HEAD"], cwd=here, capture_output=True, timeout=20).stdout
        if not diff:
            return {"git_commit": sha}
        return {"git_commit": sha + "-dirty", "git_diff_sha256": hashlib.sha256(diff).hexdigest()}
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": "unknown"}


def _device_name(device: str | None) -> str:
    import torch

    if device and str(device).startswith("cuda") and torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name(torch.device(device))}"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"cpu: {cpu} ({os.cpu_count()} cores)"


def provenance(device: str | None = None) -> dict:
    """Where and with what a run was made."""
    import torch

    return {
        "device": _device_name(device),
        "torch_version": torch.__version__,
        "python_version": sys.version.split()[0],
        **git_state(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
