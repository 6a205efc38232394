"""numba CPU kernels, one module per family, each mirroring a reference in maskrep.ops / maskrep.assembly.

Kernels whose reference is numpy float64 (paste, rasterise, IoU counts) use the same arithmetic in
the same order, so their output is identical. The assembly kernels reproduce torch references
within the tolerances of ``maskrep._kernels.tolerances``. All are compiled on first use and
cached on disk (``cache=True``), so an import never compiles.
"""

from .assembly import blend_kernel, compose_units_kernel, embedding_coupling_kernel, shape_saliency_kernel
from .contours import outer_contour_kernel, polygon_logits_kernel, simplify_polygon_kernel, trace_loop_kernel
from .iou import mask_counts_kernel, pairwise_inter_kernel, popcount_rows_kernel
from .paste import paste_masks_kernel
from .rasterize import rasterize_polygons_kernel
from .rle import (
    decode_rles_kernel,
    encode_runs_kernel,
    paste_rle_kernel,
    polygon_rle_bounds,
    polygons_to_rle_kernel,
    rle_counts_kernel,
    rle_iou_kernel,
)

__all__ = [
    "blend_kernel",
    "compose_units_kernel",
    "decode_rles_kernel",
    "embedding_coupling_kernel",
    "encode_runs_kernel",
    "mask_counts_kernel",
    "outer_contour_kernel",
    "pairwise_inter_kernel",
    "paste_masks_kernel",
    "paste_rle_kernel",
    "polygon_logits_kernel",
    "polygon_rle_bounds",
    "polygons_to_rle_kernel",
    "popcount_rows_kernel",
    "rasterize_polygons_kernel",
    "rle_counts_kernel",
    "rle_iou_kernel",
    "shape_saliency_kernel",
    "simplify_polygon_kernel",
    "trace_loop_kernel",
]
