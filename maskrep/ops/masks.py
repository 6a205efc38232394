"""Box-frame mask operations: rasterise or crop into boxes, paste back, IoU.

These are the references (written for clarity); fast paths are checked against them.

Coordinates: masks are indexed (row, col); polygons and boxes are (x, y). Pixel (r, c) covers
[c, c+1) x [r, r+1). A box (x0, y0, x1, y1) stretched to an S x S crop has cell (i, j) centred at
(x0 + (j + 0.5) w / S, y0 + (i + 0.5) h / S): the RoIAlign ``aligned=True`` convention. This module
is where (x, y) and (row, col) meet.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .. import _config
from .._array import is_tensor, like, to_numpy
from .._kernels import choose_backend, device_of
from .polygons import as_polygon, check_rule, fill_polygon

__all__ = [
    "MASK_THRESHOLD",
    "binarize",
    "crop_masks_in_boxes",
    "mask_counts",
    "mask_iou",
    "mask_iou_pairwise",
    "masks_to_boxes",
    "paste_masks",
    "polygons_to_masks",
    "rasterize_in_boxes",
]


#: The one mask threshold: a pixel is foreground where its probability is >= MASK_THRESHOLD.
MASK_THRESHOLD = 0.5


def binarize(probs, threshold: float = MASK_THRESHOLD):
    """``probs >= threshold``: the one comparison that turns probabilities into a mask (any array kind).

    >>> binarize(np.array([0.2, 0.5, 0.7]))
    array([False,  True,  True])
    """
    return probs >= threshold


def _check_boxes(boxes: np.ndarray, n: int | None = None) -> np.ndarray:
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must be (N, 4) xyxy, got shape {boxes.shape}")
    if n is not None and boxes.shape[0] != n:
        raise ValueError(f"expected {n} boxes, got {boxes.shape[0]}")
    if not np.isfinite(boxes).all():
        raise ValueError("boxes contain non-finite values")
    return boxes


def _flatten_polygons(polygons: Sequence[Sequence]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Instances' polygon lists -> all vertices (V, 2) float64, polygon offsets (P + 1,), instance
    offsets (N + 1,). Validates like :func:`as_polygon`, in bulk."""
    flat, counts = [], np.zeros(len(polygons) + 1, dtype=np.int64)
    for i, polys in enumerate(polygons):
        counts[i + 1] = len(polys)
        flat.extend(polys)
    arrays = [p if isinstance(p, np.ndarray) and p.ndim == 2 else as_polygon(p) for p in flat]
    lengths = np.fromiter((len(a) for a in arrays), dtype=np.int64, count=len(arrays))
    verts = np.concatenate(arrays).astype(np.float64, copy=False) if arrays else np.zeros((0, 2))
    if verts.ndim != 2 or verts.shape[1] != 2:
        raise ValueError(f"polygons must be flat [x0, y0, ...] lists or (P, 2) arrays, got vertices {verts.shape}")
    if (lengths < 3).any():
        raise ValueError(f"a polygon needs at least 3 vertices (6 numbers), got {int(lengths.min())}")
    if not np.isfinite(verts).all():
        raise ValueError("a polygon has non-finite coordinates")
    poly_start = np.zeros(len(arrays) + 1, dtype=np.int64)
    np.cumsum(lengths, out=poly_start[1:])
    return np.ascontiguousarray(verts), poly_start, np.cumsum(counts)


def _box_transforms(boxes, size: int) -> np.ndarray:
    """(N, 4) float64 (x0, y0, sx, sy) mapping image (x, y) to an S x S crop of each box.

    The side and the scale S / max(side, MIN_BOX_SIDE) are computed in the dtype of ``boxes``, as
    detectron2's ``crop_and_resize`` does with its (float32) boxes, so float32 boxes give its
    crops exactly; float64 boxes give the float64 mapping.
    """
    b = to_numpy(boxes)
    if not np.issubdtype(b.dtype, np.floating):
        b = b.astype(np.float64)
    _check_boxes(b)
    side = np.maximum(b[:, 2:] - b[:, :2], b.dtype.type(_config.MIN_BOX_SIDE))  # (N, 2) w, h
    scale = b.dtype.type(size) / side  # (N, 2)
    return np.concatenate([b[:, :2], scale], axis=1).astype(np.float64)


def _rasterize_cuda(polygons, like_boxes, transforms, height, width, rule):
    from .._kernels.numba_cuda import rasterize_cuda, to_device

    verts, poly_start, inst_start = _flatten_polygons(polygons)
    args = (verts, poly_start, inst_start, transforms)
    coco = rule == "coco"
    if is_tensor(like_boxes):
        import torch

        dev = like_boxes.device
        args = tuple(torch.from_numpy(a).to(dev) for a in args)
        out = torch.zeros((len(polygons), height, width), dtype=torch.bool, device=dev)
        rasterize_cuda(*(to_device(a) for a in args), coco, to_device(out))
        return out
    out = np.zeros((len(polygons), height, width), dtype=bool)
    return rasterize_cuda(*args, coco, out)


def _rasterize(polygons, transforms: np.ndarray, height: int, width: int, rule: str, backend: str, like_boxes=None):
    """Every instance's polygons, mapped by its transform (x0, y0, sx, sy), into (N, H, W) bool."""
    check_rule(rule)
    chosen = choose_backend(backend, device_of(like_boxes))
    if chosen == "cuda":
        return _rasterize_cuda(polygons, like_boxes, transforms, height, width, rule)
    out = np.zeros((len(polygons), height, width), dtype=bool)
    if chosen == "numba":
        from .._kernels.numba_cpu import rasterize_polygons_kernel

        verts, poly_start, inst_start = _flatten_polygons(polygons)
        return rasterize_polygons_kernel(verts, poly_start, inst_start, transforms, rule == "coco", out)
    for i, (polys, (x0, y0, sx, sy)) in enumerate(zip(polygons, transforms)):
        for polygon in polys:
            v = as_polygon(polygon)
            v = np.stack([(v[:, 0] - x0) * sx, (v[:, 1] - y0) * sy], axis=1)  # (P, 2) output frame
            fill_polygon(v, height, width, out=out[i], rule=rule)
    return out


def rasterize_in_boxes(polygons: Sequence[Sequence], boxes, size: int, *, rule: str = "coco", backend: str = "auto"):
    """Rasterise each instance's polygons into its box, stretched to a size x size grid.

    Parameters
    ----------
    polygons : list of length N of lists of polygons
        Each polygon is flat ``[x0, y0, x1, y1, ...]`` or (P, 2), in image coordinates.
    boxes : ndarray or Tensor of shape (N, 4)
        xyxy, image pixels. Sides under ``_config.MIN_BOX_SIDE`` are treated as that side. The
        side and scale are computed in this dtype (float32 boxes give detectron2's crops).
    size : int
        S, the crop side.
    rule : {"coco", "center"}
        "coco" (default): pycocotools' polygon rule on the box-frame polygon, so crops equal
        detectron2's ``PolygonMasks.crop_and_resize`` (what MEInst's matrices were fitted on);
        "center": exact pixel-centre sampling (:mod:`maskrep.ops.polygons`).
    backend : {"auto", "reference", "numba", "cuda"}
        "numba" scan-converts the whole batch in one compiled call (identical output); "cuda"
        runs one GPU thread per cell and returns a CUDA tensor when ``boxes`` is one. "auto"
        follows ``boxes``.

    Returns
    -------
    ndarray of shape (N, S, S), bool

    Examples
    --------
    >>> import numpy as np
    >>> square = [[2.0, 2.0, 6.0, 2.0, 6.0, 6.0, 2.0, 6.0]]
    >>> rasterize_in_boxes([square], np.array([[0.0, 0.0, 8.0, 8.0]]), 4).astype(int)[0]
    array([[0, 0, 0, 0],
           [0, 1, 1, 0],
           [0, 1, 1, 0],
           [0, 0, 0, 0]])
    """
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    transforms = _box_transforms(boxes, size)
    if len(transforms) != len(polygons):
        raise ValueError(f"expected {len(polygons)} boxes, got {len(transforms)}")
    return _rasterize(polygons, transforms, size, size, rule, backend, like_boxes=boxes)


def polygons_to_masks(polygons: Sequence[Sequence], height: int, width: int, *, rule: str = "coco",
                      backend: str = "auto") -> np.ndarray:
    """Each instance's polygons (image coordinates) as a full-image mask: (N, H, W) bool.

    The batch form of :func:`maskrep.ops.polygons_to_mask` (same rules, one compiled call).

    Examples
    --------
    >>> polygons_to_masks([[[1, 1, 3, 1, 3, 3, 1, 3]], [[0, 0, 1, 0, 1, 1]]], 4, 4).sum(axis=(1, 2))
    array([4, 0])
    """
    transforms = np.tile(np.array([[0.0, 0.0, 1.0, 1.0]]), (len(polygons), 1))
    return _rasterize(polygons, transforms, int(height), int(width), rule, backend)


def _roi_align_weights(start: float, length: float, size: int, extent: int) -> np.ndarray:
    """(size, extent) matrix: row k averages the adaptive-ratio bilinear samples of bin k.

    One axis of RoIAlign (aligned=True): ``start``/``length`` are the box's continuous start and
    length along the axis, ``extent`` the mask's pixel count along it (detectron2 semantics, §8.1).
    """
    weights = np.zeros((size, extent), dtype=np.float64)
    grid = math.ceil(length / size)  # adaptive samples per bin (sampling_ratio=0)
    if grid <= 0 or extent == 0:
        return weights
    bin_len = length / size
    for k in range(size):
        for g in range(grid):
            y = start - 0.5 + k * bin_len + (g + 0.5) * bin_len / grid  # pixel-index coordinates
            if y < -1.0 or y > extent:
                continue
            y = max(y, 0.0)
            lo = int(y)
            if lo >= extent - 1:
                weights[k, extent - 1] += 1.0
            else:
                frac = y - lo
                weights[k, lo] += 1.0 - frac
                weights[k, lo + 1] += frac
    return weights / grid


def crop_masks_in_boxes(masks, boxes, *, size: int, threshold: float = MASK_THRESHOLD):
    """Crop bitmaps to their boxes and resample to size x size (RoIAlign aligned=True, adaptive).

    Parameters
    ----------
    masks : ndarray or Tensor of shape (N, H, W), bool
    boxes : ndarray or Tensor of shape (N, 4), xyxy
    size : int
    threshold : float
        Cells whose averaged value is >= threshold are foreground.

    Returns
    -------
    (N, S, S) bool, the same kind as ``masks``.

    Notes
    -----
    RoIAlign is separable: the averaged samples of bin (i, j) equal ``Ay[i] @ mask @ Ax[j]``
    with one interpolation matrix per axis.
    """
    masks_np = to_numpy(masks)
    if masks_np.ndim != 3:
        raise ValueError(f"masks must be (N, H, W), got shape {masks_np.shape}")
    boxes_np = _check_boxes(to_numpy(boxes, np.float64), masks_np.shape[0])
    n, h, w = masks_np.shape
    out = np.zeros((n, size, size), dtype=bool)
    for i in range(n):
        x0, y0, x1, y1 = boxes_np[i]
        ay = _roi_align_weights(y0, y1 - y0, size, h)  # (S, H)
        ax = _roi_align_weights(x0, x1 - x0, size, w)  # (S, W)
        rows = np.flatnonzero(ay.any(0))
        cols = np.flatnonzero(ax.any(0))
        if rows.size == 0 or cols.size == 0:
            continue
        r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        sub = masks_np[i, r0:r1, c0:c1].astype(np.float64)
        values = ay[:, r0:r1] @ sub @ ax[:, c0:c1].T  # (S, S)
        out[i] = binarize(values, threshold)
    return like(out, masks)


def _paste_axis(n_pix: int, lo: float, hi: float, size: int):
    """Bilinear taps along one image axis for a crop of ``size`` cells spanning [lo, hi).

    Returns indices (n_pix,) of the lower tap in a crop padded by two zero cells on each side, and
    the weights (n_pix,) of the lower and upper taps. Taps that fall outside the crop land on the
    zero padding, so they contribute nothing.
    """
    scale = size / (hi - lo)
    coord = (np.arange(n_pix, dtype=np.float64) + 0.5 - lo) * scale - 0.5  # crop pixel index
    base = np.floor(coord)
    frac = coord - base
    index = np.clip(base, -2, size).astype(np.int64) + 2  # into the zero-padded crop
    return index, 1.0 - frac, frac


def paste_masks(mask_probs, boxes, image_size: tuple[int, int], *, threshold: float | None = MASK_THRESHOLD,
                backend: str = "auto"):
    """Paste box-frame probability maps back into full images (bilinear, zeros outside the crop).

    Parameters
    ----------
    mask_probs : ndarray or Tensor of shape (N, S, S), float in [0, 1]
    boxes : ndarray or Tensor of shape (N, 4), xyxy in image pixels
    image_size : (H, W)
    threshold : float or None
        Pixels with a pasted value >= threshold are foreground; None returns the values.
    backend : {"auto", "reference", "numba", "cuda"}
        "reference" resamples the whole image for every mask; "numba" visits only the pixels a
        crop can reach, with the same arithmetic (identical output); "cuda" runs one GPU thread
        per pixel (thresholded output; values fall back to the CPU). "auto" follows the input.

    Returns
    -------
    (N, H, W) bool (float64 values when ``threshold`` is None), the same kind as ``mask_probs``.

    Notes
    -----
    The value at pixel (r, c) is the crop sampled at ((c + 0.5 - x0) * S / (x1 - x0) - 0.5,
    (r + 0.5 - y0) * S / (y1 - y0) - 0.5) in crop pixel-index coordinates, the detectron2 /
    mmdet ``paste_masks_in_image`` rule (grid_sample, align_corners=False, zeros padding).
    A box with zero width or height pastes nothing.
    """
    chosen = choose_backend(backend, device_of(mask_probs, boxes))
    if chosen == "cuda" and threshold is not None and threshold > 0:
        return _paste_cuda(mask_probs, boxes, image_size, float(threshold))
    probs = to_numpy(mask_probs, np.float64)
    if probs.ndim != 3 or probs.shape[1] != probs.shape[2]:
        raise ValueError(f"mask_probs must be (N, S, S), got shape {probs.shape}")
    boxes_np = _check_boxes(to_numpy(boxes, np.float64), probs.shape[0])
    h, w = (int(v) for v in image_size)
    n = probs.shape[0]
    out = np.zeros((n, h, w), dtype=bool if threshold is not None else np.float64)
    # a pixel no crop reaches has value 0, so only a threshold above 0 may skip it
    if chosen in ("numba", "cuda") and (threshold is None or threshold > 0):
        from .._kernels.numba_cpu import paste_masks_kernel

        dummy_values = np.zeros((1, 1, 1)) if threshold is not None else out
        dummy_masks = out if threshold is not None else np.zeros((1, 1, 1), dtype=bool)
        paste_masks_kernel(np.ascontiguousarray(probs), np.ascontiguousarray(boxes_np), h, w,
                           0.0 if threshold is None else float(threshold), dummy_values, dummy_masks,
                           threshold is not None)
        return like(out, mask_probs)
    _paste_reference(probs, boxes_np, threshold, out)
    return like(out, mask_probs)


def _paste_reference(probs: np.ndarray, boxes_np: np.ndarray, threshold: float | None, out: np.ndarray) -> None:
    """Whole-image bilinear resampling, one mask at a time, into ``out`` (N, H, W)."""
    n, h, w = out.shape
    size = probs.shape[1]
    for i in range(n):
        x0, y0, x1, y1 = boxes_np[i]
        if not (x1 > x0 and y1 > y0):
            continue
        padded = np.pad(probs[i], 2)  # (S + 4, S + 4) zero border
        cx, wx0, wx1 = _paste_axis(w, x0, x1, size)
        cy, wy0, wy1 = _paste_axis(h, y0, y1, size)
        top = wx0 * padded[cy[:, None], cx] + wx1 * padded[cy[:, None], cx + 1]  # (H, W)
        bottom = wx0 * padded[cy[:, None] + 1, cx] + wx1 * padded[cy[:, None] + 1, cx + 1]
        values = wy0[:, None] * top + wy1[:, None] * bottom
        out[i] = binarize(values, threshold) if threshold is not None else values


def _paste_cuda(mask_probs, boxes, image_size, threshold: float):
    """numba.cuda paste: CUDA tensors stay on their device; numpy arrays go through the driver."""
    from .._kernels.numba_cuda import paste_masks_cuda, to_device

    h, w = (int(v) for v in image_size)
    if is_tensor(mask_probs):
        import torch

        probs = mask_probs.detach().to(torch.float64).contiguous()
        bx = torch.as_tensor(boxes, device=probs.device).to(torch.float64).contiguous()
        if probs.dim() != 3 or probs.shape[1] != probs.shape[2]:
            raise ValueError(f"mask_probs must be (N, S, S), got shape {tuple(probs.shape)}")
        out = torch.zeros((probs.shape[0], h, w), dtype=torch.bool, device=probs.device)
        paste_masks_cuda(to_device(probs), to_device(bx), h, w, threshold, to_device(out))
        return out
    probs = np.ascontiguousarray(mask_probs, dtype=np.float64)
    bx = _check_boxes(np.ascontiguousarray(boxes, dtype=np.float64), probs.shape[0])
    out = np.zeros((probs.shape[0], h, w), dtype=bool)
    return paste_masks_cuda(probs, bx, h, w, threshold, out)


def _as_bool_masks(masks, name: str) -> np.ndarray:
    m = to_numpy(masks)
    if m.dtype != bool:
        raise TypeError(f"{name} must be bool, got {m.dtype}")
    if m.ndim != 3:
        raise ValueError(f"{name} must be (N, H, W), got shape {m.shape}")
    return m.reshape(m.shape[0], m.shape[1] * m.shape[2])  # (N, H*W), also for N = 0


def mask_counts(masks1, masks2, *, backend: str = "auto"):
    """Element-wise pixel counts of two (N, H, W) bool stacks -> (inter, area1, area2), each (N,) int64.

    The counts behind IoU and the pooled two-class mIoU of the reconstruction evaluation.
    """
    a, b = _as_bool_masks(masks1, "masks1"), _as_bool_masks(masks2, "masks2")
    if a.shape != b.shape:
        raise ValueError(f"mask stacks differ in shape: {a.shape} vs {b.shape}")
    if choose_backend(backend) == "numba":
        from .._kernels.numba_cpu import mask_counts_kernel

        inter, area_a, area_b = (np.zeros(a.shape[0], dtype=np.int64) for _ in range(3))
        mask_counts_kernel(np.ascontiguousarray(a), np.ascontiguousarray(b), inter, area_a, area_b)
        return inter, area_a, area_b
    return (a & b).sum(1), a.sum(1), b.sum(1)


def _iou_from_counts(inter, union):
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def mask_iou(masks1, masks2, *, backend: str = "auto"):
    """Element-wise IoU of two (N, H, W) bool stacks -> (N,) float64; two empty masks give 1."""
    inter, area_a, area_b = mask_counts(masks1, masks2, backend=backend)
    return like(_iou_from_counts(inter, area_a + area_b - inter), masks1)


def _pack_rows(m: np.ndarray) -> np.ndarray:
    """(N, L) bool -> (N, ceil(L / 64)) uint64 bit rows (zero padded)."""
    packed = np.packbits(m, axis=1)
    pad = (-packed.shape[1]) % 8
    if pad:
        packed = np.pad(packed, ((0, 0), (0, pad)))
    return np.ascontiguousarray(packed).view(np.uint64)


def mask_iou_pairwise(masks1, masks2, *, backend: str = "auto"):
    """Pairwise IoU, (N, H, W) x (M, H, W) bool -> (N, M) float64; empty vs empty gives 1.

    "reference" counts with a float matrix product; "numba" on bit-packed rows with popcounts.
    """
    a, b = _as_bool_masks(masks1, "masks1"), _as_bool_masks(masks2, "masks2")
    if a.shape[1] != b.shape[1]:
        raise ValueError("mask stacks differ in H * W")
    if choose_backend(backend) == "numba":
        from .._kernels.numba_cpu import pairwise_inter_kernel, popcount_rows_kernel

        wa, wb = _pack_rows(a), _pack_rows(b)
        inter = np.zeros((a.shape[0], b.shape[0]), dtype=np.int64)
        pairwise_inter_kernel(wa, wb, inter)
        area_a, area_b = np.zeros(a.shape[0], dtype=np.int64), np.zeros(b.shape[0], dtype=np.int64)
        popcount_rows_kernel(wa, area_a)
        popcount_rows_kernel(wb, area_b)
    else:
        af, bf = a.astype(np.float64), b.astype(np.float64)
        inter = af @ bf.T  # (N, M), exact for counts below 2**53
        area_a, area_b = af.sum(1), bf.sum(1)
    union = area_a[:, None] + area_b[None, :] - inter
    return like(_iou_from_counts(inter, union), masks1)


def masks_to_boxes(masks):
    """Tight xyxy boxes of (N, H, W) bool masks -> (N, 4) float32; an empty mask gives zeros.

    A lone pixel at (row 2, col 5) has the box (5, 2, 6, 3).
    """
    m = to_numpy(masks)
    if m.ndim != 3:
        raise ValueError(f"masks must be (N, H, W), got shape {m.shape}")
    out = np.zeros((m.shape[0], 4), dtype=np.float32)
    rows_any, cols_any = m.any(2), m.any(1)  # (N, H), (N, W)
    for i in range(m.shape[0]):
        rows, cols = np.flatnonzero(rows_any[i]), np.flatnonzero(cols_any[i])
        if rows.size:
            out[i] = (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
    return like(out, masks)


