"""numba.cuda kernels for the two operations torch has no fast form of: pasting crops into images and
scan-converting polygons (into boxes or whole images). One thread per output pixel, the references' float64
arithmetic. Tested without a GPU through the CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``).

Inputs may be numpy arrays (copied to the device) or CUDA torch tensors (used in place through
``__cuda_array_interface__``).
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from .. import _config
from . import coco_polygon


@cuda.jit(device=True, inline=True)
def _tap(crop, r, c, size):
    if r < 0 or r >= size or c < 0 or c >= size:
        return 0.0
    return crop[r, c]


@cuda.jit
def _paste_kernel(probs, boxes, threshold, out):
    """out (N, H, W) bool, zeroed; grid x: columns, y: rows, z: masks."""
    c, r = cuda.grid(2)
    i = cuda.blockIdx.z
    n, h, w = out.shape
    size = probs.shape[1]
    if i >= n or r >= h or c >= w:
        return
    x0, y0, x1, y1 = boxes[i, 0], boxes[i, 1], boxes[i, 2], boxes[i, 3]
    if not (x1 > x0 and y1 > y0):
        return
    coord_x = (c + 0.5 - x0) * (size / (x1 - x0)) - 0.5
    coord_y = (r + 0.5 - y0) * (size / (y1 - y0)) - 0.5
    rx = math.floor(coord_x)
    ry = math.floor(coord_y)
    if rx < -1 or rx > size - 1 or ry < -1 or ry > size - 1:
        return  # every tap is outside the crop: the value is 0
    fx = coord_x - rx
    fy = coord_y - ry
    wx0, wx1, wy0, wy1 = 1.0 - fx, fx, 1.0 - fy, fy
    crop = probs[i]
    top = wx0 * _tap(crop, ry, rx, size) + wx1 * _tap(crop, ry, rx + 1, size)
    bottom = wx0 * _tap(crop, ry + 1, rx, size) + wx1 * _tap(crop, ry + 1, rx + 1, size)
    out[i, r, c] = (wy0 * top + wy1 * bottom) >= threshold


_grid_coord = cuda.jit(device=True)(coco_polygon.grid_coord)
_edge_crossing_row = cuda.jit(device=True)(coco_polygon.edge_crossing_row)


@cuda.jit
def _rasterize_kernel(verts, poly_start, inst_start, transforms, coco_rule, out):
    """out (N, H, W) bool, zeroed; grid x: columns, y: rows, z: instances. Per polygon, a pixel is
    inside when an odd number of crossings lie at or above it in its column (COCO rule, each edge's
    crossing found directly: ``coco_polygon.edge_crossing_row``) or at or left of it in its row
    (centre rule); instances are the union of their polygons."""
    c, r = cuda.grid(2)
    i = cuda.blockIdx.z
    n, height, width = out.shape
    if i >= n or r >= height or c >= width:
        return
    x0, y0, sx, sy = transforms[i, 0], transforms[i, 1], transforms[i, 2], transforms[i, 3]
    py = r + 0.5
    for p in range(inst_start[i], inst_start[i + 1]):
        a, b = poly_start[p], poly_start[p + 1]
        m = b - a
        parity = 0
        for k in range(m):
            k1 = k + 1 if k + 1 < m else 0
            if coco_rule:
                row = _edge_crossing_row(_grid_coord((verts[a + k, 0] - x0) * sx),
                                         _grid_coord((verts[a + k, 1] - y0) * sy),
                                         _grid_coord((verts[a + k1, 0] - x0) * sx),
                                         _grid_coord((verts[a + k1, 1] - y0) * sy), c, height)
                if 0 <= row <= r:
                    parity ^= 1
                continue
            xa = (verts[a + k, 0] - x0) * sx
            ya = (verts[a + k, 1] - y0) * sy
            xb = (verts[a + k1, 0] - x0) * sx
            yb = (verts[a + k1, 1] - y0) * sy
            if (ya > py) != (yb > py):
                xc = xa + (py - ya) * (xb - xa) / (yb - ya)
                col = min(max(math.floor(xc - 0.5) + 1, 0), width)
                if col <= c:
                    parity ^= 1
        if parity:
            out[i, r, c] = True
            return


def _launch(kernel, n, h, w, *args):
    tpb = _config.CUDA_THREADS_PER_BLOCK
    bx, by = tpb
    grid = ((w + bx - 1) // bx, (h + by - 1) // by, n)
    kernel[grid, tpb](*args)


def paste_masks_cuda(probs, boxes, height: int, width: int, threshold: float, out):
    """probs (N, S, S) float64, boxes (N, 4) float64, out (N, H, W) bool zeroed (device or host arrays)."""
    if probs.shape[0]:
        _launch(_paste_kernel, probs.shape[0], height, width, probs, boxes, float(threshold), out)
    return out


def rasterize_cuda(verts, poly_start, inst_start, transforms, coco_rule: bool, out):
    """Polygons into out (N, H, W) bool, zeroed; transforms (N, 4) float64 (x0, y0, sx, sy)."""
    n, h, w = out.shape
    if n and len(verts):
        _launch(_rasterize_kernel, n, h, w, verts, poly_start, inst_start, transforms, bool(coco_rule), out)
    return out


def to_device(x):
    """A CUDA torch tensor as a numba device array (zero copy); numpy arrays pass through."""
    if isinstance(x, np.ndarray):
        return x
    return cuda.as_cuda_array(x)
