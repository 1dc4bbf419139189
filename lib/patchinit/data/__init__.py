"""Datasets (``load_dataset``) and the device-resident batch pipeline (``DeviceBatches``).

Dataset code is imported lazily so that the pipeline can be used (and tested)
without touching any decoder.
"""
from patchinit.data.pipeline import DeviceBatches, epoch_generator, hflip, random_crop  # noqa: F401

_LAZY = {
    "load_dataset": "patchinit.data.datasets",
    "Dataset": "patchinit.data.datasets",
    "channel_stats": "patchinit.data.datasets",
    "download": "patchinit.data.download",
    "DatasetError": "patchinit.data.errors",
    "DatasetNotFoundError": "patchinit.data.errors",
    "CorruptDataError": "patchinit.data.errors",
    "LayoutError": "patchinit.data.errors",
    "CountMismatchError": "patchinit.data.errors",
    "DownloadError": "patchinit.data.errors",
    "ChecksumError": "patchinit.data.errors",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'patchinit.data' has no attribute {name!r}")
