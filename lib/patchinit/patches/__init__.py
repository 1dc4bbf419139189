"""Images (or activation maps) -> patch arrays.

Every source returns a :class:`PatchSet`: ``patches`` ``(n, C, h, w)`` channels
first (the layout of a conv filter), with aligned ``image_index`` and top-left
``positions``.  Images come in as ``(N, H, W, C)`` uint8; activation maps as
``(N, C, H, W)`` with ``channels_last=False``.  New sources (selective-search
boxes, activation maps) go in their own submodule and reduce to
:func:`cut_patches`; re-export their public functions here.
"""
from patchinit.patches.base import PatchSet, as_image_array, as_rng, cut_patches, patch_array  # noqa: F401
from patchinit.patches.filters import count_nonblack, filter_informative, informative_mask  # noqa: F401
from patchinit.patches.grid import grid_patches, grid_positions, patches_per_image  # noqa: F401
from patchinit.patches.sampling import subsample, subsample_indices  # noqa: F401
from patchinit.patches.sift import clamped_top_left, keypoint_centres, make_sift, sift_patches  # noqa: F401
from patchinit.patches.boxes import box_positions, sample_box_patches, selective_search_boxes, selective_search_many  # noqa: F401
from patchinit.patches.activations import activation_patches, layer_input, window_patches  # noqa: F401
