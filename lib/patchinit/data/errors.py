"""Exceptions raised while finding, downloading, decoding or caching a dataset.

Every loader failure is a :class:`DatasetError`, so callers can catch one type.
The subclasses say *what kind* of problem it was, because the fix differs: a
missing dataset needs a download or a different root, a corrupt file needs a
fresh copy, a count mismatch needs ``strict=False`` if the subset is deliberate.
"""
from __future__ import annotations


class DatasetError(Exception):
    """Base class of every error raised by :mod:`patchinit.data` loaders."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """No supported source of the dataset exists under the data root."""


class CorruptDataError(DatasetError):
    """A file, archive member or image could not be read (truncated or damaged)."""


class LayoutError(DatasetError):
    """The files exist but are not arranged or formatted the way the format requires."""


class CountMismatchError(DatasetError):
    """The number of images (or classes, or image size) differs from the known size."""


class DownloadError(DatasetError):
    """Fetching an official archive failed (network, HTTP status, unwritable root)."""


class ChecksumError(DownloadError):
    """A downloaded file's checksum differs from the published one."""
