"""BlendMask's blender (arXiv:2001.00309; docs/methods.md §4.2) and CRMask's rank-k attentions (docs/methods.md §3.3)."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from .._array import as_tensor, np64
from ..codecs.svd import compose_units
from ..ops.roi import roi_align
from ._dispatch import from_kernel, image_groups, use_numba

__all__ = ["blend", "blend_pooled", "unit_attentions", "unit_product"]


def unit_product(u, s, v, *, eps: float = 1e-6, backend: str = "auto"):
    """CRMask's decoder Û diag(s) V̂ᵀ with unit-norm columns: u, v (..., m, k), s (..., k) -> (..., m, m).

    The torch path is :func:`maskrep.codecs.svd.compose_units` (differentiable); numba for CPU
    inputs without gradient.
    """
    was_numpy = not torch.is_tensor(u)
    u, s, v = as_tensor(u), as_tensor(s), as_tensor(v)
    if use_numba(backend, u, s, v):
        from .._kernels.numba_cpu import compose_units_kernel

        m, k = u.shape[-2:]
        lead = u.shape[:-2]
        uu, vv, ss = np64(u.reshape(-1, m, k)), np64(v.reshape(-1, m, k)), np64(s.reshape(-1, k))
        out = torch.zeros((uu.shape[0], m, m), dtype=torch.float64).numpy()
        compose_units_kernel(uu, ss, vv, float(eps), out)
        return from_kernel(out.reshape(*lead, m, m), u, was_numpy)
    out = compose_units(u, s, v, eps=eps)
    return out.numpy() if was_numpy else out


def unit_attentions(top_feats: torch.Tensor, num_bases: int, size: int, rank: int, *, eps: float = 1e-6,
                    s_activation: str = "exp", backend: str = "auto") -> torch.Tensor:
    """CRMask-in-BlendMask attentions from per-location codes.

    top_feats: (N, K(2mk + k)) laid out as U (K, m, k), V (K, m, k), S (K, k), basis-major
    (348 numbers at K=4, m=14, k=3). Returns (N, K, m, m) attention logits, rank <= k each.
    """
    n = top_feats.shape[0]
    kmk = num_bases * size * rank
    if top_feats.shape[1] != 2 * kmk + num_bases * rank:
        raise ValueError(f"top_feats must have K(2mk + k) = {2 * kmk + num_bases * rank} channels, "
                         f"got {top_feats.shape[1]}")
    u = top_feats[:, :kmk].reshape(n, num_bases, size, rank)
    v = top_feats[:, kmk : 2 * kmk].reshape(n, num_bases, size, rank)
    s = top_feats[:, 2 * kmk :].reshape(n, num_bases, rank)
    if s_activation == "exp":
        s = s.exp()
    elif s_activation != "none":
        raise ValueError(f"s_activation must be 'exp' or 'none', got {s_activation!r}")
    return unit_product(u, s, v, eps=eps, backend=backend)


def blend(bases, attentions, boxes, im_inds=None, *, mask_size: int = 56, spatial_scale: float = 0.25,
          sampling_ratio: int = 1, backend: str = "auto"):
    """BlendMask's blender: per instance, RoIAlign the bases in its box, up-sample its attentions,
    softmax them over the K bases, and take the weighted sum.

    Parameters
    ----------
    bases : (B, K, H, W) basis maps (stride 1/spatial_scale).
    attentions : (N, K, M, M) attention logits.
    boxes : (N, 4) xyxy image pixels.
    im_inds : (N,) image of each instance (None: all in image 0).
    mask_size : R, the output side (56 in BlendMask).
    sampling_ratio : RoIAlign samples per bin side (BlendMask: 1, exact in the numba kernel too).

    Returns
    -------
    (N, R, R) mask logits (the kind of ``bases``); differentiable on the torch path.
    """
    was_numpy = not torch.is_tensor(bases)
    bs, at, bx = as_tensor(bases), as_tensor(attentions), as_tensor(boxes)
    im = as_tensor(im_inds).long() if im_inds is not None else None
    n, k = at.shape[:2]
    if bs.dim() != 4 or at.dim() != 4 or bs.shape[1] != k:
        raise ValueError(f"bases must be (B, K, H, W) and attentions (N, K, M, M) with the same K, "
                         f"got {tuple(bs.shape)} and {tuple(at.shape)}")
    if use_numba(backend, bs, at, bx) and sampling_ratio == 1:
        from .._kernels.numba_cpu import blend_kernel

        out = torch.zeros((n, mask_size, mask_size), dtype=torch.float64).numpy()
        for b, idx in image_groups(im, n):
            sel = idx.numpy()
            part = out[sel]
            blend_kernel(np64(bs[b]), np64(at[idx]), np64(bx[idx]), float(spatial_scale), part)
            out[sel] = part
        return from_kernel(out, bs, was_numpy)
    batch = im.to(bx.dtype) if im is not None else bx.new_zeros(n)
    rois = torch.cat([batch[:, None], bx], dim=1)
    pooled = roi_align(bs, rois, mask_size, spatial_scale=spatial_scale, sampling_ratio=sampling_ratio,
                       aligned=True)  # (N, K, R, R)
    out = blend_pooled(pooled, at)
    return out.numpy() if was_numpy else out


def blend_pooled(pooled: torch.Tensor, attentions: torch.Tensor) -> torch.Tensor:
    """The blender's second half: (N, K, R, R) bases already pooled in each box and (N, K, M, M)
    attention logits -> (N, R, R) mask logits (attentions up-sampled bilinearly, align_corners=False,
    softmax over K, weighted sum). BlendMask's training pools the bases once per GT box and indexes
    the pooled maps by each positive's GT."""
    r = pooled.shape[-1]
    weights = F.interpolate(attentions, size=(r, r), mode="bilinear", align_corners=False).softmax(dim=1)
    return (pooled * weights).sum(dim=1)
