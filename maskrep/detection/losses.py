"""Detection losses with AdelaiDet's arithmetic (docs/methods.md §1.3). All return sums; the caller normalises."""

from __future__ import annotations

import torch
from torch.nn import functional as F

__all__ = ["centerness_target", "giou_loss_ltrb", "iou_giou_ltrb", "lovasz_hinge", "sigmoid_focal_loss"]


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0):
    """Summed sigmoid focal loss. logits, targets: same shape, targets in {0, 1}."""
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss.sum()


def iou_giou_ltrb(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """IoU and GIoU, each (P,), between (P, 4) ltrb distances from the same points, with AdelaiDet's
    smoothed IoU = (I + 1)/(U + 1) (in the units of the distances)."""
    pl, pt, pr, pb = pred.unbind(1)
    tl, tt, tr, tb = target.unbind(1)
    area_p = (pl + pr) * (pt + pb)
    area_t = (tl + tr) * (tt + tb)
    inter = (torch.min(pl, tl) + torch.min(pr, tr)) * (torch.min(pt, tt) + torch.min(pb, tb))
    union = area_p + area_t - inter
    enclose = (torch.max(pl, tl) + torch.max(pr, tr)) * (torch.max(pt, tt) + torch.max(pb, tb)) + 1e-7
    iou = (inter + 1.0) / (union + 1.0)
    return iou, iou - (enclose - union) / enclose


def giou_loss_ltrb(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None):
    """Sum of (1 - GIoU) between (P, 4) ltrb distances, with IoU = (I + 1)/(U + 1) (AdelaiDet).

    ``weight``: (P,) per-sample weights (centerness targets), or None.
    """
    loss = 1 - iou_giou_ltrb(pred, target)[1]
    if weight is not None:
        loss = loss * weight
    return loss.sum()


def centerness_target(reg_targets: torch.Tensor) -> torch.Tensor:
    """(P, 4) ltrb -> (P,) sqrt(min(l,r)/max(l,r) * min(t,b)/max(t,b))."""
    if len(reg_targets) == 0:
        return reg_targets.new_zeros(0)
    lr = reg_targets[:, [0, 2]]
    tb = reg_targets[:, [1, 3]]
    c = (lr.min(1).values / lr.max(1).values) * (tb.min(1).values / tb.max(1).values)
    return torch.sqrt(c)


def lovasz_hinge(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Binary Lovász hinge per row (Berman et al., arXiv:1705.08790): (N, L) logits and {0, 1}
    labels -> (N,) losses, a convex surrogate of 1 - IoU of each row's mask.

    Errors e = 1 - z (2y - 1) sorted in decreasing order; g_j the discrete gradient of the Jaccard
    loss along that order, J_j = 1 - (Σy - cumsum(y)_j) / (Σy + cumsum(1 - y)_j), g_1 = J_1,
    g_j = J_j - J_{j-1}; loss = Σ_j ReLU(e_j) g_j. A row of no pixels gives 0.
    """
    if logits.shape[1] == 0:
        return logits.sum(1) * 0
    signs = 2 * labels.to(logits.dtype) - 1
    errors = 1 - logits * signs  # (N, L)
    errors_sorted, order = torch.sort(errors, dim=1, descending=True)
    y = torch.gather(labels.to(logits.dtype), 1, order)  # (N, L) labels in that order
    total = y.sum(1, keepdim=True)
    jaccard = 1 - (total - y.cumsum(1)) / (total + (1 - y).cumsum(1))
    grad = torch.cat([jaccard[:, :1], jaccard[:, 1:] - jaccard[:, :-1]], 1)
    return (torch.relu(errors_sorted) * grad).sum(1)
