"""Datasets (``load_dataset``) and the device-resident batch pipeline (``DeviceBatches``).

``load_dataset`` is imported lazily so that the pipeline can be used (and tested)
without touching any dataset code.
"""
from patchinit.data.pipeline import DeviceBatches, epoch_generator, hflip, random_crop  # noqa: F401

_LAZY = {"load_dataset", "Dataset", "DatasetError"}


def __getattr__(name):
    if name in _LAZY:
        from patchinit.data import datasets

        return getattr(datasets, name)
    raise AttributeError(f"module 'patchinit.data' has no attribute {name!r}")
