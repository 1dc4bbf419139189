"""patchinit: initialise CNN filters with patches taken from the training images.

Modules (one job each):

- :mod:`patchinit.data`      datasets, cache, download, device-resident batches
- :mod:`patchinit.patches`   images or activation maps -> patch arrays
- :mod:`patchinit.cluster`   reduction, k-means, entropy, pattern formation
- :mod:`patchinit.init`      ``patch_init_`` and the random baselines; method A and B recipes
- :mod:`patchinit.models`    ``build_model(name, num_classes)``
- :mod:`patchinit.supermask` edge-popup layers
- :mod:`patchinit.train`     the training loop
- :mod:`patchinit.results`   the content-addressed results store
- :mod:`patchinit.stats`     paired tests
"""

__version__ = "0.1.0"
