"""RoIAlign in plain torch, by ``grid_sample`` (no compiled ops).

Semantics are those of the detectron2 / torchvision kernel (docs/methods.md §8.1): sample points in
pixel-index coordinates, samples outside [-1, H] x [-1, W] read 0, the rest are clamped into the
map and read bilinearly, each output cell is the mean of its g_h x g_w samples. Three details make
``grid_sample`` exact (docs/methods.md §8.2): coordinates mapped with align_corners=False, clamping plus
``padding_mode='border'``, and a validity mask taken on the raw coordinates.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["multilevel_roi_align", "roi_align", "roi_levels", "rois_from_boxes"]


def rois_from_boxes(boxes: list[torch.Tensor]) -> torch.Tensor:
    """Per-image box lists -> (K, 5) rois ``(batch_index, x0, y0, x1, y1)``."""
    parts = [torch.cat([b.new_full((len(b), 1), float(i)), b], dim=1) for i, b in enumerate(boxes)]
    if not parts:
        return torch.zeros((0, 5))
    return torch.cat(parts, dim=0)


def _axis_samples(start, length, bins: int, grid: int):
    """(K,) starts and lengths -> (K, bins * grid) sample coordinates (docs/methods.md §8.1)."""
    step = length / bins
    b = torch.arange(bins, dtype=start.dtype, device=start.device)
    g = (torch.arange(grid, dtype=start.dtype, device=start.device) + 0.5) / grid
    offs = (b[:, None] + g[None, :]).reshape(-1)  # (bins * grid,)
    return start[:, None] + offs[None, :] * step[:, None]


def _normalise(coord, size: int):
    """Clamp to [0, size - 1] and map pixel-index coordinates to grid_sample's [-1, 1]."""
    return (2.0 * coord.clamp(0.0, size - 1) + 1.0) / size - 1.0


def _sample_group(feat, rois, out_h, out_w, gh, gw, scale, aligned):
    """RoIAlign of rois that share one (gh, gw) sampling grid -> (K, C, out_h, out_w)."""
    _, c, h, w = feat.shape
    off = 0.5 if aligned else 0.0
    x0 = rois[:, 1] * scale - off
    y0 = rois[:, 2] * scale - off
    rw = rois[:, 3] * scale - off - x0
    rh = rois[:, 4] * scale - off - y0
    if not aligned:
        rw, rh = rw.clamp(min=1.0), rh.clamp(min=1.0)
    ys = _axis_samples(y0, rh, out_h, gh)  # (K, out_h * gh)
    xs = _axis_samples(x0, rw, out_w, gw)  # (K, out_w * gw)
    valid = ((ys >= -1) & (ys <= h))[:, :, None] & ((xs >= -1) & (xs <= w))[:, None, :]
    k = len(rois)
    out = feat.new_zeros((k, c, out_h * gh, out_w * gw))
    gy, gx = _normalise(ys, h), _normalise(xs, w)
    batch_idx = rois[:, 0].long()
    for b in torch.unique(batch_idx).tolist():
        sel = (batch_idx == b).nonzero().squeeze(1)
        n = len(sel)
        grid = torch.stack(torch.broadcast_tensors(gx[sel][:, None, :], gy[sel][:, :, None]), dim=-1)
        grid = grid.reshape(1, n * out_h * gh, out_w * gw, 2).to(feat.dtype)
        sampled = F.grid_sample(feat[b : b + 1], grid, mode="bilinear", padding_mode="border", align_corners=False)
        out[sel] = sampled.reshape(c, n, out_h * gh, out_w * gw).transpose(0, 1)
    out = out * valid[:, None].to(out.dtype)
    return F.avg_pool2d(out, kernel_size=(gh, gw), stride=(gh, gw))


def roi_align(
    features: torch.Tensor,
    rois: torch.Tensor,
    output_size: int | tuple[int, int],
    *,
    spatial_scale: float = 1.0,
    sampling_ratio: int = 0,
    aligned: bool = True,
) -> torch.Tensor:
    """RoIAlign by ``grid_sample``, differentiable in the features (and the box coordinates).

    Parameters
    ----------
    features : (B, C, H, W) float tensor.
    rois : (K, 5) ``(batch_index, x0, y0, x1, y1)`` in image pixels, or (K, 4) boxes when B == 1.
    output_size : PH x PW (an int means square).
    spatial_scale : feature cells per image pixel (1/stride).
    sampling_ratio : samples per bin side; <= 0 is the kernel's adaptive ceil(h/PH) x ceil(w/PW),
        done exactly by grouping RoIs that share a grid (one ``grid_sample`` per group and image).
    aligned : shift by half a pixel (detectron2 ROIAlignV2); False is the legacy behaviour.

    Returns
    -------
    (K, C, PH, PW), the dtype of ``features`` (grids are built in at least float32).
    """
    if features.dim() != 4:
        raise ValueError(f"features must be (B, C, H, W), got shape {tuple(features.shape)}")
    if rois.dim() != 2 or rois.shape[1] not in (4, 5):
        raise ValueError(f"rois must be (K, 5) or (K, 4), got shape {tuple(rois.shape)}")
    if rois.shape[1] == 4:
        if features.shape[0] != 1:
            raise ValueError("(K, 4) boxes need a batch of one feature map; pass (K, 5) rois")
        rois = torch.cat([rois.new_zeros((len(rois), 1)), rois], dim=1)
    out_h, out_w = (output_size, output_size) if isinstance(output_size, int) else output_size
    k, c = rois.shape[0], features.shape[1]
    orig_dtype = features.dtype
    work = torch.promote_types(orig_dtype, torch.float32)
    feat, rois = features.to(work), rois.to(device=features.device, dtype=work)
    if k == 0:
        return features.new_zeros((0, c, out_h, out_w))
    if sampling_ratio > 0:
        return _sample_group(feat, rois, out_h, out_w, sampling_ratio, sampling_ratio, spatial_scale, aligned).to(
            orig_dtype
        )
    # adaptive: per-RoI grid sizes, exact by grouping
    off = 0.5 if aligned else 0.0
    with torch.no_grad():  # the kernel's own arithmetic, so ceil() agrees with it
        rw = (rois[:, 3] * spatial_scale - off) - (rois[:, 1] * spatial_scale - off)
        rh = (rois[:, 4] * spatial_scale - off) - (rois[:, 2] * spatial_scale - off)
        if not aligned:
            rw, rh = rw.clamp(min=1.0), rh.clamp(min=1.0)
        gw = torch.ceil(rw / out_w).long().tolist()
        gh = torch.ceil(rh / out_h).long().tolist()
    out = feat.new_zeros((k, c, out_h, out_w))
    groups: dict[tuple[int, int], list[int]] = {}
    for i, key in enumerate(zip(gh, gw)):
        groups.setdefault(key, []).append(i)
    for (g_h, g_w), idx in groups.items():
        if g_h <= 0 or g_w <= 0:  # empty box: no samples, zeros (docs/methods.md §8.1)
            continue
        sel = torch.as_tensor(idx, device=feat.device)
        out[sel] = _sample_group(feat, rois[sel], out_h, out_w, g_h, g_w, spatial_scale, aligned)
    return out.to(orig_dtype)


def roi_levels(rois: torch.Tensor, num_levels: int, *, finest_scale: float = 56.0) -> torch.Tensor:
    """The pyramid level each RoI reads, mmdetection's rule (RefineMask's ``SingleRoIExtractor``):
    floor(log2(sqrt(w h) / finest_scale + 1e-6)), clamped to [0, num_levels - 1] (level 0 = the
    finest feature map given). rois: (K, 5) -> (K,) int64."""
    scale = torch.sqrt((rois[:, 3] - rois[:, 1]) * (rois[:, 4] - rois[:, 2]))
    return torch.floor(torch.log2(scale / finest_scale + 1e-6)).clamp(0, num_levels - 1).long()


def multilevel_roi_align(features: list[torch.Tensor], rois: torch.Tensor, output_size: int | tuple[int, int], *,
                         strides, finest_scale: float = 56.0, sampling_ratio: int = 0,
                         aligned: bool = True) -> torch.Tensor:
    """RoIAlign from a feature pyramid: each RoI from the level :func:`roi_levels` assigns it.

    Parameters
    ----------
    features : list of length L of (B, C, H_l, W_l), finest first.
    rois : (K, 5) ``(batch_index, x0, y0, x1, y1)`` image pixels.
    strides : the L levels' strides (the spatial scale of level l is 1 / strides[l]).
    finest_scale, sampling_ratio, aligned : see :func:`roi_levels` and :func:`roi_align`
        (RefineMask: 56, adaptive sampling, aligned).

    Returns
    -------
    (K, C, PH, PW): one :func:`roi_align` call per level on that level's RoIs.
    """
    if len(features) != len(strides):
        raise ValueError(f"{len(features)} feature maps but {len(strides)} strides")
    out_h, out_w = (output_size, output_size) if isinstance(output_size, int) else output_size
    levels = roi_levels(rois, len(features), finest_scale=finest_scale)
    out = features[0].new_zeros((len(rois), features[0].shape[1], out_h, out_w))
    for lvl, (feat, stride) in enumerate(zip(features, strides)):
        sel = torch.nonzero(levels == lvl).squeeze(1)
        if len(sel):
            out[sel] = roi_align(feat, rois[sel], (out_h, out_w), spatial_scale=1.0 / stride,
                                 sampling_ratio=sampling_ratio, aligned=aligned)
    return out
