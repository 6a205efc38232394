"""EmbedMask's embedding coupling (arXiv:1912.01954; docs/methods.md §5.1)."""

from __future__ import annotations

import math

import numpy as np
import torch

from .._array import as_tensor, np64
from ..ops.resample import cell_centres
from ._dispatch import from_kernel, image_groups, use_numba

__all__ = ["PRIOR_MARGIN", "embedding_coupling", "margin_bias"]

#: EmbedMask's prior margin delta: a pixel at embedding distance delta gets probability 0.5.
PRIOR_MARGIN = 2.0


def margin_bias(prior_margin: float = PRIOR_MARGIN) -> float:
    """ln(phi0) with phi0 = ln 2 / delta^2: the margin conv's bias init (-1.753 at delta = 2)."""
    return math.log(math.log(2.0) / prior_margin**2)


def box_cells(boxes: torch.Tensor, height: int, width: int, stride: float) -> torch.Tensor:
    """(N, H, W) bool: cells whose centre (c s + s // 2 + .5, r s + s // 2 + .5) lies in [x0, x1) x [y0, y1).

    The centre is that of the pixel the cell stands for (:func:`maskrep.ops.resample.cell_centres`).
    """
    ys = cell_centres(height, stride, dtype=boxes.dtype, device=boxes.device)
    xs = cell_centres(width, stride, dtype=boxes.dtype, device=boxes.device)
    iny = (ys[None] >= boxes[:, 1:2]) & (ys[None] < boxes[:, 3:4])  # (N, H)
    inx = (xs[None] >= boxes[:, 0:1]) & (xs[None] < boxes[:, 2:3])  # (N, W)
    return iny[:, :, None] & inx[:, None, :]


def embedding_coupling(pixel_embed, inst_embed, margins, im_inds=None, boxes=None, *, stride: float = 8.0,
                       chunk: int = 128, backend: str = "auto"):
    """P_n(i) = exp(-sum_d phi_nd (p_id - q_nd)^2), EmbedMask's Gaussian coupling.

    Parameters
    ----------
    pixel_embed : (B, D, H, W) pixel embeddings p.
    inst_embed : (N, D) instance embeddings q.
    margins : (N,) or (N, D) margins phi > 0 (a scalar margin applies to every dimension).
    im_inds : (N,) image of each instance (None: all in image 0).
    boxes : optional (N, 4) xyxy image pixels; cells whose centre (:func:`box_cells`) is outside get 0.
    stride : image pixels per map cell (for ``boxes``).
    chunk : instances per step of the torch path (memory: chunk x H x W).
    backend : "auto" | "reference" | "numba"; numba only for CPU inputs without gradient.

    Returns
    -------
    (N, H, W) probabilities, the kind and dtype of ``pixel_embed``. Differentiable on the torch path,
    which never builds the (N, D, H, W) difference: it expands the square into two matrix products,
    sum_d phi p^2 - 2 sum_d (phi q) p + sum_d phi q^2, and clamps the exponent at <= 0.
    """
    was_numpy = not torch.is_tensor(pixel_embed)
    p, q, phi = as_tensor(pixel_embed), as_tensor(inst_embed), as_tensor(margins)
    im = as_tensor(im_inds).long() if im_inds is not None else None
    bx = as_tensor(boxes) if boxes is not None else None
    if p.dim() != 4 or q.dim() != 2 or q.shape[1] != p.shape[1]:
        raise ValueError(f"pixel_embed must be (B, D, H, W) and inst_embed (N, D), got {tuple(p.shape)}, {tuple(q.shape)}")
    n, d = q.shape
    if phi.dim() == 1:
        phi = phi[:, None].expand(n, d)
    if phi.shape != (n, d):
        raise ValueError(f"margins must be (N,) or (N, D) = ({n}, {d}), got {tuple(phi.shape)}")
    _, _, h, w = p.shape
    if use_numba(backend, p, q, phi, bx):
        from .._kernels.numba_cpu import embedding_coupling_kernel

        out = torch.zeros((n, h, w), dtype=torch.float64).numpy()
        boxes_np = np64(bx) if bx is not None else None
        for b, idx in image_groups(im, n):
            if len(idx) == 0:
                continue
            sel = idx.numpy()
            part = out[sel]
            ib = boxes_np[sel] if boxes_np is not None else _everywhere(len(sel))
            embedding_coupling_kernel(np64(p[b]), np64(q[idx]), np64(phi[idx]), ib, float(stride), part)
            out[sel] = part
        return from_kernel(out, p, was_numpy)
    out = p.new_zeros((n, h, w))
    for b, idx in image_groups(im, n):
        pb = p[b].reshape(d, h * w)  # (D, HW)
        for s in range(0, len(idx), chunk):
            sel = idx[s : s + chunk]
            f = phi[sel]
            expo = (f @ (pb * pb) - 2 * (f * q[sel]) @ pb + (f * q[sel] * q[sel]).sum(1, keepdim=True))
            prob = torch.exp(-expo.clamp(min=0)).reshape(-1, h, w)
            if bx is not None:
                prob = prob * box_cells(bx[sel].to(prob.dtype), h, w, stride)
            out = out.index_copy(0, sel.to(out.device), prob)
    return out.numpy() if was_numpy else out


def _everywhere(n: int) -> np.ndarray:
    """(n, 4) boxes that contain every cell: no restriction."""
    return np.tile(np.array([[-1e30, -1e30, 1e30, 1e30]]), (n, 1))
