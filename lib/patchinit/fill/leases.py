"""Leases on runs in flight, so that several fill drivers on one store share a grid without repeating runs.

A driver takes a run's lease just before it trains it and gives it back once the record is stored (or the
run failed).  A lease is a small file, ``<results>/leases/<key>.json``, created atomically (``O_EXCL``), that
names the process holding it.  A second driver that finds the lease skips the run and takes the next one, so
two single-thread processes started with the same command split the grid between them as they go.

A lease whose process has gone (killed, or the machine restarted) must not block the run for ever: on the
same host, a lease is stale once its process id no longer runs; a lease from another host is stale once it
is older than ``ttl_s`` (default :data:`LEASE_TTL_S`), since its process cannot be checked from here.
"""
from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

#: How long a lease taken on another host is honoured (a driver there cannot be checked from here).
LEASE_TTL_S = 12 * 3600.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it runs, as another user
        return True
    return True


class Leases:
    """The leases of one results store (``folder`` is ``<results>/leases``)."""

    def __init__(self, folder: str | os.PathLike, ttl_s: float = LEASE_TTL_S):
        self.folder = Path(folder)
        self.ttl_s = float(ttl_s)
        self.host, self.pid = socket.gethostname(), os.getpid()
        self.held: set[str] = set()

    def _path(self, key: str) -> Path:
        return self.folder / f"{key}.json"

    def holder(self, key: str) -> dict | None:
        """Who holds ``key``'s lease (``{"host", "pid", "since"}``), or None when it is free or stale."""
        try:
            info = json.loads(self._path(key).read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):  # half-written by a driver killed mid-write: treat it as stale
            return None
        if info.get("host") == self.host:
            return info if _alive(int(info.get("pid", -1))) else None
        return info if time.time() - float(info.get("since", 0)) < self.ttl_s else None

    def take(self, key: str) -> bool:
        """Take ``key``'s lease: True if this process now holds it (or already did), False if another
        live driver does."""
        if key in self.held:
            return True
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self._path(key)
        for _ in range(2):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if self.holder(key) is not None:
                    return False
                try:  # stale: remove it and try once more (another driver may win the race; then it holds it)
                    path.unlink()
                except FileNotFoundError:
                    pass
                continue
            with os.fdopen(fd, "w") as f:
                json.dump({"host": self.host, "pid": self.pid, "since": time.time()}, f)
            self.held.add(key)
            return True
        return False

    def give_back(self, key: str) -> None:
        """Give back ``key``'s lease (a no-op unless this process holds it)."""
        if key in self.held:
            self.held.discard(key)
            try:
                self._path(key).unlink()
            except FileNotFoundError:
                pass

    def give_back_all(self) -> None:
        for key in list(self.held):
            self.give_back(key)
