"""Mask, polygon, RLE and box operations on numpy arrays and torch tensors."""

from .boxes import box_area, box_iou, box_xywh_to_xyxy, box_xyxy_to_xywh, generalized_box_iou
from .masks import (
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
from .rle import mask_to_rle, rle_area, rle_to_mask
from .roi import roi_align, rois_from_boxes

__all__ = [
    "batched_nms",
    "box_area",
    "box_iou",
    "box_xywh_to_xyxy",
    "box_xyxy_to_xywh",
    "crop_masks_in_boxes",
    "generalized_box_iou",
    "mask_iou",
    "mask_iou_pairwise",
    "mask_to_rle",
    "masks_to_boxes",
    "nms",
    "paste_masks",
    "polygon_area",
    "polygons_to_mask",
    "polygons_to_masks",
    "rasterize_in_boxes",
    "rle_area",
    "rle_to_mask",
    "roi_align",
    "rois_from_boxes",
]
