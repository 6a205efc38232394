"""Mask, polygon, RLE and box operations on numpy arrays and torch tensors."""

from .boundary import boundary_band, boundary_fscore
from .boxes import box_area, box_iou, box_xywh_to_xyxy, box_xyxy_to_xywh, generalized_box_iou
from .contours import mask_contours, outer_contours, polygon_signed_area
from .masks import (
    MASK_THRESHOLD,
    binarize,
    crop_masks_in_boxes,
    mask_iou,
    mask_iou_pairwise,
    masks_to_boxes,
    paste_masks,
    polygons_to_masks,
    rasterize_in_boxes,
)
from .nms import batched_nms, nms
from .polygons import polygon_area, polygons_to_mask
from .resample import aligned_bilinear
from .rle import (
    mask_to_rle,
    paste_masks_to_rle,
    polygons_to_rle,
    rle_area,
    rle_counts,
    rle_intersection,
    rle_iou,
    rle_to_mask,
)
from .roi import multilevel_roi_align, roi_align, roi_levels, rois_from_boxes

__all__ = [
    "MASK_THRESHOLD",
    "aligned_bilinear",
    "batched_nms",
    "binarize",
    "boundary_band",
    "boundary_fscore",
    "box_area",
    "box_iou",
    "box_xywh_to_xyxy",
    "box_xyxy_to_xywh",
    "crop_masks_in_boxes",
    "generalized_box_iou",
    "mask_contours",
    "mask_iou",
    "mask_iou_pairwise",
    "mask_to_rle",
    "masks_to_boxes",
    "multilevel_roi_align",
    "nms",
    "outer_contours",
    "paste_masks",
    "paste_masks_to_rle",
    "polygon_area",
    "polygon_signed_area",
    "polygons_to_mask",
    "polygons_to_masks",
    "polygons_to_rle",
    "rasterize_in_boxes",
    "rle_area",
    "rle_counts",
    "rle_intersection",
    "rle_iou",
    "rle_to_mask",
    "roi_align",
    "roi_levels",
    "rois_from_boxes",
]
