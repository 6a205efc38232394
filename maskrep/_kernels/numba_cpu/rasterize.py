"""Polygons rasterised into boxes by pycocotools' rule or the centre rule (reference:
:func:`maskrep.ops.rasterize_in_boxes`)."""

from __future__ import annotations

import math

import numba
import numpy as np

from .. import coco_polygon

__all__ = ["rasterize_polygons_kernel"]


_grid_coord = numba.njit(cache=True, inline="always")(coco_polygon.grid_coord)
_edge_crossing_row = numba.njit(cache=True)(coco_polygon.edge_crossing_row)
_columns_spanned = numba.njit(cache=True, inline="always")(coco_polygon.columns_spanned)


@numba.njit(cache=True)
def _fill_coco_polygon(gx, gy, m, toggles, out):
    """OR one polygon (its ``m`` upscaled integer vertices in ``gx``, ``gy``) into ``out`` (H, W) by
    pycocotools' rule: XOR each column crossing into ``toggles`` (H + 1, W), zero on entry, then
    scan the touched columns top-down with running parity (what decoding pycocotools' RLE does,
    its crossings being even per column), leaving ``toggles`` zeroed again."""
    height, width = out.shape
    lo_col, hi_col = width, -1
    for k in range(m):
        k1 = k + 1 if k + 1 < m else 0
        first, last = _columns_spanned(gx[k], gx[k1], width)
        for c in range(first, last + 1):
            row = _edge_crossing_row(gx[k], gy[k], gx[k1], gy[k1], c, height)
            if row >= 0:
                toggles[row, c] ^= 1
                lo_col = min(lo_col, c)
                hi_col = max(hi_col, c)
    for c in range(lo_col, hi_col + 1):
        parity = 0
        for r in range(height):
            parity ^= toggles[r, c]
            toggles[r, c] = 0
            if parity:
                out[r, c] = True
        toggles[height, c] = 0


@numba.njit(cache=True)
def _fill_center_polygon(vx, vy, m, out):
    """OR one polygon (its ``m`` float vertices) into ``out`` (H, W): pixel centres inside by
    scanline parity."""
    height, width = out.shape
    toggles = np.zeros(width + 1, dtype=np.int64)
    for r in range(height):
        py = r + 0.5
        toggles[:] = 0
        hit = False
        for k in range(m):
            k1 = k + 1 if k + 1 < m else 0
            ya, yb = vy[k], vy[k1]
            if (ya > py) != (yb > py):
                xa, xb = vx[k], vx[k1]
                xc = xa + (py - ya) * (xb - xa) / (yb - ya)
                col = math.floor(xc - 0.5) + 1
                col = min(max(col, 0), width)
                toggles[col] += 1
                hit = True
        if hit:
            parity = 0
            for c in range(width):
                parity += toggles[c]
                if parity & 1:
                    out[r, c] = True


@numba.njit(cache=True, parallel=True)
def rasterize_polygons_kernel(verts, poly_start, inst_start, transforms, coco_rule, out):
    """Scan-convert every instance's polygons into its (H, W) grid in one call.

    verts: (V, 2) float64 (x, y) of all polygons back to back; poly_start: (P + 1,) offsets of each
    polygon in ``verts``; inst_start: (N + 1,) offsets of each instance's polygons; transforms:
    (N, 4) float64 (x0, y0, sx, sy), a vertex maps to ((x - x0) sx, (y - y0) sy); out: (N, H, W)
    bool, zeroed. The arithmetic of ``maskrep.ops.polygons.fill_polygon`` (identical output).
    """
    n, height, width = out.shape
    for i in numba.prange(n):
        x0, y0, sx, sy = transforms[i, 0], transforms[i, 1], transforms[i, 2], transforms[i, 3]
        longest = 0
        for p in range(inst_start[i], inst_start[i + 1]):
            longest = max(longest, poly_start[p + 1] - poly_start[p])
        if longest == 0:
            continue
        if coco_rule:
            gx = np.empty(longest, dtype=np.int64)
            gy = np.empty(longest, dtype=np.int64)
            toggles = np.zeros((height + 1, width), dtype=np.uint8)
            for p in range(inst_start[i], inst_start[i + 1]):
                a, m = poly_start[p], poly_start[p + 1] - poly_start[p]
                for k in range(m):
                    gx[k] = _grid_coord((verts[a + k, 0] - x0) * sx)
                    gy[k] = _grid_coord((verts[a + k, 1] - y0) * sy)
                _fill_coco_polygon(gx, gy, m, toggles, out[i])
        else:
            vx = np.empty(longest)
            vy = np.empty(longest)
            for p in range(inst_start[i], inst_start[i + 1]):
                a, m = poly_start[p], poly_start[p + 1] - poly_start[p]
                for k in range(m):
                    vx[k] = (verts[a + k, 0] - x0) * sx
                    vy[k] = (verts[a + k, 1] - y0) * sy
                _fill_center_polygon(vx, vy, m, out[i])
    return out
