"""numba CPU kernels. Each mirrors a reference in maskrep.ops with the same float64 arithmetic, so
results are identical, not merely close (tests/ops/test_kernels.py)."""

from __future__ import annotations

import math

import numba


@numba.njit(cache=True, inline="always")
def _tap(crop, r, c, size):
    if r < 0 or r >= size or c < 0 or c >= size:
        return 0.0
    return crop[r, c]


@numba.njit(cache=True, inline="always")
def _axis_taps(pixel, lo, scale):
    """Lower crop index and the two bilinear weights for image pixel ``pixel`` along one axis
    (the arithmetic of ``maskrep.ops.masks._paste_axis``)."""
    coord = (pixel + 0.5 - lo) * scale - 0.5
    base = math.floor(coord)
    frac = coord - base
    return base, 1.0 - frac, frac


@numba.njit(cache=True, parallel=True)
def paste_masks_kernel(probs, boxes, height, width, threshold, out_values, out_masks, use_threshold):
    """Paste (N, S, S) float64 crops into (N, H, W), visiting only pixels a crop can reach.

    Writes ``out_masks`` (value >= threshold) when ``use_threshold``, else ``out_values``.
    """
    n, size = probs.shape[0], probs.shape[1]
    for i in numba.prange(n):
        x0, y0, x1, y1 = boxes[i, 0], boxes[i, 1], boxes[i, 2], boxes[i, 3]
        if not (x1 > x0 and y1 > y0):
            continue
        half_w = (x1 - x0) / (2 * size)
        half_h = (y1 - y0) / (2 * size)
        c_lo = max(0, math.floor(x0 - half_w - 0.5))
        c_hi = min(width, math.ceil(x1 + half_w) + 1)
        r_lo = max(0, math.floor(y0 - half_h - 0.5))
        r_hi = min(height, math.ceil(y1 + half_h) + 1)
        scale_x = size / (x1 - x0)
        scale_y = size / (y1 - y0)
        crop = probs[i]
        for r in range(r_lo, r_hi):
            ry, wy0, wy1 = _axis_taps(r, y0, scale_y)
            for c in range(c_lo, c_hi):
                rx, wx0, wx1 = _axis_taps(c, x0, scale_x)
                top = wx0 * _tap(crop, ry, rx, size) + wx1 * _tap(crop, ry, rx + 1, size)
                bottom = wx0 * _tap(crop, ry + 1, rx, size) + wx1 * _tap(crop, ry + 1, rx + 1, size)
                value = wy0 * top + wy1 * bottom
                if use_threshold:
                    out_masks[i, r, c] = value >= threshold
                else:
                    out_values[i, r, c] = value
