"""Box utilities for numpy arrays and torch tensors alike. Boxes are xyxy in pixels, (N, 4)."""

from __future__ import annotations

import numpy as np

from .._array import is_tensor

__all__ = ["box_area", "box_iou", "box_xywh_to_xyxy", "box_xyxy_to_xywh", "generalized_box_iou"]


def _xp(x):
    if is_tensor(x):
        import torch

        return torch
    return np


def box_xywh_to_xyxy(boxes):
    """(N, 4) COCO xywh -> (N, 4) xyxy; same kind as the input."""
    xp = _xp(boxes)
    x, y, w, h = boxes[..., 0], boxes[..., 1], boxes[..., 2], boxes[..., 3]
    return xp.stack([x, y, x + w, y + h], -1)


def box_xyxy_to_xywh(boxes):
    """(N, 4) xyxy -> (N, 4) COCO xywh; same kind as the input."""
    xp = _xp(boxes)
    x0, y0, x1, y1 = boxes[..., 0], boxes[..., 1], boxes[..., 2], boxes[..., 3]
    return xp.stack([x0, y0, x1 - x0, y1 - y0], -1)


def box_area(boxes):
    """(N, 4) -> (N,) area; degenerate boxes have area 0."""
    w = (boxes[..., 2] - boxes[..., 0]).clip(min=0)
    h = (boxes[..., 3] - boxes[..., 1]).clip(min=0)
    return w * h


def _inter_union(boxes1, boxes2):
    xp = _xp(boxes1)
    lt = xp.maximum(boxes1[:, None, :2], boxes2[None, :, :2])  # (N, M, 2)
    rb = xp.minimum(boxes1[:, None, 2:], boxes2[None, :, 2:])  # (N, M, 2)
    wh = (rb - lt).clip(min=0)
    inter = wh[..., 0] * wh[..., 1]  # (N, M)
    union = box_area(boxes1)[:, None] + box_area(boxes2)[None, :] - inter
    return inter, union


def box_iou(boxes1, boxes2):
    """Pairwise IoU, (N, 4) x (M, 4) -> (N, M). A pair with zero union has IoU 0."""
    inter, union = _inter_union(boxes1, boxes2)
    return inter / union.clip(min=1e-12) * (union > 0)


def generalized_box_iou(boxes1, boxes2):
    """Pairwise GIoU, (N, 4) x (M, 4) -> (N, M), in [-1, 1] (Rezatofighi et al., arXiv:1902.09630)."""
    xp = _xp(boxes1)
    inter, union = _inter_union(boxes1, boxes2)
    iou = inter / union.clip(min=1e-12) * (union > 0)
    lt = xp.minimum(boxes1[:, None, :2], boxes2[None, :, :2])
    rb = xp.maximum(boxes1[:, None, 2:], boxes2[None, :, 2:])
    wh = (rb - lt).clip(min=0)
    hull = wh[..., 0] * wh[..., 1]  # (N, M) smallest enclosing box
    return iou - (hull - union) / hull.clip(min=1e-12) * (hull > 0)
