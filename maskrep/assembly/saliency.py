"""CenterMask's local shape x global saliency (arXiv:2004.04446; docs/methods.md §6)."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from .._array import as_tensor, np64
from ..ops.resample import cell_centres
from ._dispatch import from_kernel, image_groups, use_numba
from .embedding import box_cells

__all__ = ["shape_saliency"]


def shape_saliency(shapes, saliency, boxes, im_inds=None, *, stride: float = 4.0, backend: str = "auto"):
    """M_n = sigmoid(resize(shape_n, box_n)) * sigmoid(saliency) inside box n, 0 outside.

    Parameters
    ----------
    shapes : (N, S, S) local shape logits.
    saliency : (B, 1, H, W) global saliency logits (class-agnostic) at ``stride``.
    boxes : (N, 4) xyxy image pixels.
    im_inds : (N,) image of each instance (None: all in image 0).

    Returns
    -------
    (N, H, W) probabilities on the saliency grid (the kind of ``saliency``).

    The resize samples the shape bilinearly at each cell centre in box-normalised coordinates,
    (x_c - x0) / (x1 - x0) * S - 0.5 with x_c = c s + s // 2 + .5 (the centre of the pixel cell c
    stands for, where the ground truth is sampled: :func:`maskrep.ops.resample.cell_centres`), clamped to the shape's edge cells: what
    ``F.interpolate(shape, box size, align_corners=False)`` followed by a crop does, for every
    instance at once. A cell is inside box n when its centre is in [x0, x1) x [y0, y1).
    """
    was_numpy = not torch.is_tensor(saliency)
    sh, sal, bx = as_tensor(shapes), as_tensor(saliency), as_tensor(boxes)
    im = as_tensor(im_inds).long() if im_inds is not None else None
    if sh.dim() != 3 or sh.shape[1] != sh.shape[2]:
        raise ValueError(f"shapes must be (N, S, S), got {tuple(sh.shape)}")
    if sal.dim() != 4 or sal.shape[1] != 1:
        raise ValueError(f"saliency must be (B, 1, H, W), got {tuple(sal.shape)}")
    n, s = sh.shape[:2]
    h, w = sal.shape[-2:]
    if use_numba(backend, sh, sal, bx):
        from .._kernels.numba_cpu import shape_saliency_kernel

        out = torch.zeros((n, h, w), dtype=torch.float64).numpy()
        for b, idx in image_groups(im, n):
            sel = idx.numpy()
            part = out[sel]
            shape_saliency_kernel(np64(sh[idx]), np64(sal[b, 0]), np64(bx[idx]), float(stride), part)
            out[sel] = part
        return from_kernel(out, sal, was_numpy)
    dtype = torch.promote_types(sh.dtype, torch.float32)
    bxf = bx.to(dtype)
    ys = cell_centres(h, stride, dtype=dtype, device=sh.device)
    xs = cell_centres(w, stride, dtype=dtype, device=sh.device)
    gy = ((ys[None] - bxf[:, 1:2]) / (bxf[:, 3:4] - bxf[:, 1:2]) * s - 0.5).clamp(0, s - 1)  # (N, H)
    gx = ((xs[None] - bxf[:, 0:1]) / (bxf[:, 2:3] - bxf[:, 0:1]) * s - 0.5).clamp(0, s - 1)  # (N, W)
    grid = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), dim=-1)  # (N, H, W, 2)
    grid = (2 * grid + 1) / s - 1
    local = F.grid_sample(sh[:, None].to(dtype), grid, mode="bilinear", padding_mode="border",
                          align_corners=False)[:, 0]
    batch = im if im is not None else torch.zeros(n, dtype=torch.long, device=sh.device)
    glob = torch.sigmoid(sal[batch, 0].to(dtype))
    valid = box_cells(bxf, h, w, stride) & ((bxf[:, 2] > bxf[:, 0]) & (bxf[:, 3] > bxf[:, 1]))[:, None, None]
    out = torch.sigmoid(local) * glob * valid
    return out.numpy() if was_numpy else out.to(sal.dtype)
