"""Parity tolerances of every fast path against its reference, in one place.

``0.0`` means bit-identical: the kernel does the reference's float64 arithmetic in the same order.
Otherwise the kernel sums or multiplies in another order than torch, and the bound is on the
largest absolute difference, for float64 inputs of unit scale.
"""

TOLERANCES = {
    "paste_masks": 0.0,  # values and thresholded masks
    "rasterize_in_boxes": 0.0,
    "mask_counts": 0.0,
    "mask_iou_pairwise": 0.0,
    "unit_product": 1e-12,
    "embedding_coupling": 1e-12,
    "blend": 1e-12,
    "shape_saliency": 1e-12,
    # float32 inputs through a float64 kernel vs the float32 torch path
    "float32": 1e-5,
}
