"""patchinit: initialise CNN filters with patches taken from the training images.

The user API, on your own model (its other layers, the head included, stay as you made them)::

    import patchinit as pi

    train = pi.load_dataset("mnist", "train")                  # uint8 (N, H, W, C) images, int labels
    pi.method_a_init_(model, train.images, layers=["0"], **pi.MNIST)        # Lehmann & Ebner
    pi.patches_init_(model, train.images, train.labels, layers=["0", "3"])  # Rencoret's PatchesInit

Modules (one job each): :mod:`~patchinit.spec` the typed run spec; :mod:`~patchinit.protocols` the
papers' protocols and chapter grids; :mod:`~patchinit.data` datasets and device-resident batches;
:mod:`~patchinit.patches` patch sources; :mod:`~patchinit.cluster` reduction and k-means;
:mod:`~patchinit.init` the patch engine, its two recipes and the random baselines;
:mod:`~patchinit.models` the papers' networks; :mod:`~patchinit.supermask` edge-popup layers;
:mod:`~patchinit.train` the one training loop; :mod:`~patchinit.results` the results store;
:mod:`~patchinit.fill` filling it with grids; :mod:`~patchinit.stats` and :mod:`~patchinit.claims`
the tests and the verdicts.
"""

__version__ = "0.1.0"

# Each name is imported on first use (PEP 562), so that ``import patchinit.models`` (say) loads the
# models alone, not the trainer and the store beside them.  The trainer's ``train`` is not among them:
# ``patchinit.train`` is its package (``from patchinit.train import train``).
_API = {
    "load_dataset": "patchinit.data", "DeviceBatches": "patchinit.data",
    "method_a_init_": "patchinit.init", "patches_init_": "patchinit.init", "patch_init_": "patchinit.init",
    "baseline_init_": "patchinit.init", "MethodAOptions": "patchinit.init", "MethodBConfig": "patchinit.init",
    "MNIST": "patchinit.init", "CIFAR": "patchinit.init",
    "build_model": "patchinit.models", "to_supermask_": "patchinit.supermask",
    "train_many": "patchinit.train", "TrainConfig": "patchinit.train",
    "RunSpec": "patchinit.spec", "ResultsStore": "patchinit.results",
}
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        import importlib

        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'patchinit' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_API])
