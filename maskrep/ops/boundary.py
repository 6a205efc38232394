"""Mask boundaries: RefineMask's boundary band (a training region and a merge region) and the boundary
F-score that measures how well a predicted contour follows the true one."""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from .._array import to_numpy

__all__ = ["boundary_band", "boundary_fscore"]


def boundary_band(masks: torch.Tensor, width: int) -> torch.Tensor:
    """RefineMask's boundary region of binary maps: pixels with enough of the other label nearby.

    Parameters
    ----------
    masks : Tensor of shape (N, H, W), bool or {0, 1}
    width : d; the window is (2d + 1) x (2d + 1).

    Returns
    -------
    Tensor of shape (N, H, W), bool: a foreground pixel whose window holds more than a tenth of
    background, or a background pixel whose window holds more than a tenth of foreground
    (RefineMask, arXiv:2104.08569; docs/methods.md §7.4). As in RefineMask's code the window is zero
    padded for the foreground test only: a foreground pixel within d of the map's border counts
    the outside as background (so the border of a box full of object is boundary), a background
    pixel counts the outside as background too.

    Examples
    --------
    >>> import torch
    >>> m = torch.zeros(1, 5, 7, dtype=torch.bool); m[0, 1:4, 1:5] = True
    >>> boundary_band(m, 1)[0].int()
    tensor([[1, 1, 1, 1, 1, 1, 0],
            [1, 1, 1, 1, 1, 1, 0],
            [1, 1, 0, 0, 1, 1, 0],
            [1, 1, 1, 1, 1, 1, 0],
            [1, 1, 1, 1, 1, 1, 0]], dtype=torch.int32)
    """
    if masks.dim() != 3:
        raise ValueError(f"masks must be (N, H, W), got shape {tuple(masks.shape)}")
    k = 2 * width + 1
    m = masks.to(torch.float32)[:, None]  # (N, 1, H, W)
    window = torch.ones(1, 1, k, k, dtype=m.dtype, device=m.device)
    padded = F.pad(m, (width,) * 4, value=0.0)
    fg_around = F.conv2d(padded, window)  # (N, 1, H, W) foreground in the zero-padded window
    bg_around = F.conv2d(1.0 - padded, window)  # background in the window, the outside counted as foreground
    # count / K^2 > 0.1, in integers: 10 count > K^2
    pos = (m > 0) & (10 * (k * k - fg_around) > k * k)
    neg = (m == 0) & (10 * (k * k - bg_around) > k * k)
    return (pos | neg)[:, 0]


def _contour(mask: np.ndarray) -> np.ndarray:
    """Foreground pixels with a 4-neighbour outside the mask (the image's outside counts as outside)."""
    padded = np.pad(mask, 1)
    inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~inner


def boundary_fscore(pred, gt, *, tolerance: float | None = None) -> float:
    """Boundary F-score of one predicted mask against the true one (Perazzi et al., DAVIS 2016).

    Parameters
    ----------
    pred, gt : ndarray or Tensor of shape (H, W), bool
    tolerance : float, optional
        How far (pixels) a contour pixel may be from the other contour and still match; by default
        0.8% of the image diagonal, DAVIS's setting.

    Returns
    -------
    float: 2 P R / (P + R), P the share of predicted contour pixels within ``tolerance`` of the true
    contour, R the share of true contour pixels within it of the predicted one; 1 when both masks are
    empty, 0 when one is.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.zeros((20, 20), bool); a[5:15, 5:15] = True
    >>> b = np.zeros((20, 20), bool); b[5:15, 6:16] = True
    >>> boundary_fscore(a, a), round(boundary_fscore(a, b, tolerance=0), 3), boundary_fscore(a, b, tolerance=1)
    (1.0, 0.5, 1.0)
    """
    from scipy.ndimage import distance_transform_edt

    p, g = to_numpy(pred).astype(bool), to_numpy(gt).astype(bool)
    if p.shape != g.shape or p.ndim != 2:
        raise ValueError(f"pred and gt must be (H, W) of one shape, got {p.shape} and {g.shape}")
    if tolerance is None:
        tolerance = 0.008 * float(np.hypot(*p.shape))
    cp, cg = _contour(p), _contour(g)
    if not cp.any() and not cg.any():
        return 1.0
    if not cp.any() or not cg.any():
        return 0.0
    near_g = distance_transform_edt(~cg) <= tolerance  # pixels within tolerance of the true contour
    near_p = distance_transform_edt(~cp) <= tolerance
    precision = float((cp & near_g).sum() / cp.sum())
    recall = float((cg & near_p).sum() / cg.sum())
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)

