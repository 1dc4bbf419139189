"""When the library shows tqdm progress bars.

Every long-running function takes ``progress: bool | None = None``:

* ``True`` / ``False``: bars on / off, whatever the environment says;
* ``None`` (the default): ``$PATCHINIT_PROGRESS`` when set (``1``/``on``/``true`` or
  ``0``/``off``/``false``), else tqdm's own convention, bars only when the output is a
  terminal.  A script whose output goes to a log file, a batch job or a notebook gets
  no bars unless it asks for them.
"""
from __future__ import annotations

import os

__all__ = ["disable", "ENV"]

ENV = "PATCHINIT_PROGRESS"
_ON = {"1", "on", "true", "yes"}
_OFF = {"0", "off", "false", "no"}


def disable(progress: bool | None) -> bool | None:
    """tqdm's ``disable=`` for a ``progress`` argument (``None``: tqdm decides by whether the output is a TTY)."""
    if progress is not None:
        return not progress
    value = os.environ.get(ENV, "").strip().lower()
    if value in _ON:
        return False
    if value in _OFF:
        return True
    if value:
        raise ValueError(f"{ENV}={os.environ[ENV]!r}; use 1 (bars on), 0 (off), or leave it unset (bars on a terminal)")
    return None
