"""Paste box-frame maps into the image (reference: :func:`maskrep.ops.paste_masks`)."""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = ["paste_masks_kernel"]


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


@numba.njit(cache=True, inline="always")
def _reach(lo, hi, size, limit):
    """Image pixels [first, last) a crop spanning [lo, hi) in S cells can give a non-zero value."""
    half = (hi - lo) / (2 * size)
    return max(0, math.floor(lo - half - 0.5)), min(limit, math.ceil(hi + half) + 1)


@numba.njit(cache=True, parallel=True)
def paste_masks_kernel(probs, boxes, height, width, threshold, out_values, out_masks, use_threshold):
    """Paste (N, S, S) float64 crops into (N, H, W), visiting only the pixels a crop can reach.

    Separable: each column's x-interpolation of every crop row (``top`` / ``bottom`` of the
    reference) is computed once per mask, then each pixel mixes two of them with its row weights,
    the reference's last step. Writes ``out_masks`` (value >= threshold) when ``use_threshold``,
    else ``out_values``.
    """
    n, size = probs.shape[0], probs.shape[1]
    for i in numba.prange(n):
        x0, y0, x1, y1 = boxes[i, 0], boxes[i, 1], boxes[i, 2], boxes[i, 3]
        if not (x1 > x0 and y1 > y0):
            continue
        c_lo, c_hi = _reach(x0, x1, size, width)
        r_lo, r_hi = _reach(y0, y1, size, height)
        if c_hi <= c_lo or r_hi <= r_lo:
            continue
        scale_x = size / (x1 - x0)
        scale_y = size / (y1 - y0)
        crop = probs[i]
        ncol = c_hi - c_lo
        # xrow[k + 1, j]: crop row k (k = -1 .. S) interpolated at image column c_lo + j
        xrow = np.zeros((size + 2, ncol))
        for j in range(ncol):
            rx, wx0, wx1 = _axis_taps(c_lo + j, x0, scale_x)
            for k in range(-1, size + 1):
                xrow[k + 1, j] = wx0 * _tap(crop, k, rx, size) + wx1 * _tap(crop, k, rx + 1, size)
        for r in range(r_lo, r_hi):
            ry, wy0, wy1 = _axis_taps(r, y0, scale_y)
            if ry < -1 or ry > size - 1:  # both taps outside the crop: exact zeros
                top_row, bottom_row = -1, -1
            else:
                top_row, bottom_row = ry + 1, ry + 2
            for j in range(ncol):
                top = xrow[top_row, j] if top_row >= 0 else 0.0
                bottom = xrow[bottom_row, j] if bottom_row >= 0 else 0.0
                value = wy0 * top + wy1 * bottom
                if use_threshold:
                    out_masks[i, r, c_lo + j] = value >= threshold
                else:
                    out_values[i, r, c_lo + j] = value
