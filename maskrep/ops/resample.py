"""Up-sampling on the grids FCOS-family mask branches use."""

from __future__ import annotations

import torch

__all__ = ["aligned_bilinear", "cell_centres", "cell_offset"]


def _axis_weights(n: int, factor: int, dtype, device) -> torch.Tensor:
    """(factor * n, n) interpolation matrix: output o reads the input at clamp((o - factor // 2) / factor, 0, n - 1)."""
    o = torch.arange(factor * n, dtype=torch.float64, device=device)
    p = ((o - factor // 2) / factor).clamp(0, n - 1)  # input coordinate of each output
    lo = p.floor().long()
    hi = (lo + 1).clamp(max=n - 1)
    frac = p - lo
    w = torch.zeros(factor * n, n, dtype=torch.float64, device=device)
    w[torch.arange(factor * n), lo] += 1 - frac
    w[torch.arange(factor * n), hi] += frac
    return w.to(dtype)


def aligned_bilinear(x: torch.Tensor, factor: int) -> torch.Tensor:
    """CondInst's / EmbedMask's bilinear up-sampling by an integer ``factor``: (..., H, W) -> (..., f H, f W).

    Output index o along an axis of n cells reads the input bilinearly at
    clamp((o - f // 2) / f, 0, n - 1): the input cell centres keep their places on the finer grid
    (cell i of a stride-s map sits at i s + s // 2). This is what AdelaiDet's implementation
    computes by replicate-padding, interpolating with ``align_corners=True`` to f n + 1 points,
    padding f // 2 at the start and cropping (docs/methods.md §8.5); here it is two separable
    interpolation matrices, so it is exact, differentiable and works for maps of one cell.

    Examples
    --------
    >>> import torch
    >>> aligned_bilinear(torch.tensor([[0.0, 4.0]]), 2)  # a (1, 2) map -> (2, 4)
    tensor([[0., 0., 2., 4.],
            [0., 0., 2., 4.]])
    """
    if int(factor) != factor or factor < 1:
        raise ValueError(f"factor must be a positive integer, got {factor}")
    if factor == 1:
        return x
    h, w = x.shape[-2:]
    wy = _axis_weights(h, factor, x.dtype, x.device)  # (f H, H)
    wx = _axis_weights(w, factor, x.dtype, x.device)  # (f W, W)
    return torch.einsum("ph,...hw,qw->...pq", wy, x, wx)  # (..., f H, f W)


def cell_offset(stride: int) -> int:
    """The pixel a stride-``stride`` map cell stands for, in its block: cell i is pixel i s + s // 2.

    The one grid convention of image-frame maps: ground truth is point-sampled there
    (:meth:`maskrep.structures.InstanceMasks.to_bitmap`), :func:`aligned_bilinear` puts cell i there
    when up-sampling, and a cell's centre in image coordinates is i s + s // 2 + 0.5
    (:func:`cell_centres`).
    """
    return int(stride) // 2


def cell_centres(n: int, stride, *, dtype=torch.float32, device=None) -> torch.Tensor:
    """(n,) image coordinates of the centres of a stride-``stride`` map's cells: i s + s // 2 + 0.5.

    >>> cell_centres(3, 4)
    tensor([ 2.5000,  6.5000, 10.5000])
    """
    offset = int(stride) // 2 if float(stride).is_integer() else float(stride) / 2 - 0.5
    return torch.arange(n, dtype=dtype, device=device) * stride + (offset + 0.5)
