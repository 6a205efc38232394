"""Up-sampling on the grids FCOS-family mask branches use."""

from __future__ import annotations

import torch

__all__ = ["aligned_bilinear"]


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
