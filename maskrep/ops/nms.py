"""Non-maximum suppression in plain torch, vectorised and exactly greedy (docs/methods.md §8.6).

Greedy NMS: visit boxes by descending score, keep a box unless a kept, higher-scored box overlaps
it with IoU strictly greater than the threshold. Here that is the fixed point of
``keep_j = not any_i (keep_i and S_ij)`` with ``S_ij = [i before j] and [IoU_ij > t]``: suppression
only flows down the order, so after t rounds the first t entries are final, and the iteration
stops at the greedy answer in a handful of N x N boolean mat-vecs instead of one host sync per
kept box.
"""

from __future__ import annotations

import torch

from .boxes import box_iou

__all__ = ["batched_nms", "nms"]


def _suppression(boxes: torch.Tensor, threshold: float, labels: torch.Tensor | None) -> torch.Tensor:
    """(N, N) bool: row i suppresses column j (i earlier in the order)."""
    iou = box_iou(boxes, boxes)
    s = (iou > threshold).triu_(diagonal=1)
    if labels is not None:
        s &= labels[:, None] == labels[None, :]
    return s


def _fixed_point(s: torch.Tensor) -> torch.Tensor:
    n = s.shape[0]
    keep = torch.ones(n, dtype=torch.bool, device=s.device)
    sf = s.to(torch.float32)
    for _ in range(n + 1):
        new = (keep.to(torch.float32) @ sf) == 0
        if torch.equal(new, keep):
            break
        keep = new
    return keep


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor | None, iou_threshold: float):
    """Class-aware NMS: boxes only suppress boxes of the same label.

    boxes: (N, 4) xyxy; scores: (N,); labels: (N,) int or None for class-agnostic.
    Returns the kept indices (into the inputs), by descending score; ties keep input order (stable sort).
    Empty boxes (zero area) give IoU 0 and never suppress.
    """
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must be (N, 4) xyxy, got shape {tuple(boxes.shape)}")
    if scores.shape != boxes.shape[:1]:
        raise ValueError(f"scores must be ({len(boxes)},), got shape {tuple(scores.shape)}")
    if len(boxes) == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    order = torch.sort(scores, descending=True, stable=True).indices
    b = boxes[order].float() if boxes.dtype in (torch.float16, torch.bfloat16) else boxes[order]
    lab = labels[order] if labels is not None else None
    keep = _fixed_point(_suppression(b, iou_threshold, lab))
    return order[keep]


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Class-agnostic NMS; see :func:`batched_nms`."""
    return batched_nms(boxes, scores, None, iou_threshold)
