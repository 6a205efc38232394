"""numba.cuda kernels for the two operations torch has no fast form of: pasting crops into images and
scan-converting polygons into boxes. One thread per output pixel, the references' float64
arithmetic. Tested without a GPU through the CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``).

Inputs may be numpy arrays (copied to the device) or CUDA torch tensors (used in place through
``__cuda_array_interface__``).
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from .. import _config


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


@cuda.jit
def _rasterize_kernel(verts, poly_start, inst_start, boxes, snap, min_side, out):
    """out (N, S, S) bool, zeroed; grid x: columns, y: rows, z: instances. Per polygon, the cell is
    inside when an odd number of its row's edge crossings lie at or left of it (the scanline toggles
    of the reference, counted per cell); instances are the union of their polygons."""
    c, r = cuda.grid(2)
    i = cuda.blockIdx.z
    n, size = out.shape[0], out.shape[1]
    if i >= n or r >= size or c >= size:
        return
    x0, y0 = boxes[i, 0], boxes[i, 1]
    sx = size / max(boxes[i, 2] - boxes[i, 0], min_side)
    sy = size / max(boxes[i, 3] - boxes[i, 1], min_side)
    py = r + 0.5
    for p in range(inst_start[i], inst_start[i + 1]):
        a, b = poly_start[p], poly_start[p + 1]
        m = b - a
        parity = 0
        for k in range(m):
            k1 = k + 1 if k + 1 < m else 0
            xa = (verts[a + k, 0] - x0) * sx
            ya = (verts[a + k, 1] - y0) * sy
            xb = (verts[a + k1, 0] - x0) * sx
            yb = (verts[a + k1, 1] - y0) * sy
            if snap > 0:
                xa = math.floor(xa * snap + 0.5) / snap
                ya = math.floor(ya * snap + 0.5) / snap
                xb = math.floor(xb * snap + 0.5) / snap
                yb = math.floor(yb * snap + 0.5) / snap
            if (ya > py) != (yb > py):
                xc = xa + (py - ya) * (xb - xa) / (yb - ya)
                col = min(max(math.floor(xc - 0.5) + 1, 0), size)
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


def rasterize_cuda(verts, poly_start, inst_start, boxes, size: int, snap: float, min_side: float, out):
    n = boxes.shape[0]
    if n and len(verts):
        _launch(_rasterize_kernel, n, size, size, verts, poly_start, inst_start, boxes, float(snap),
                float(min_side), out)
    return out


def to_device(x):
    """A CUDA torch tensor as a numba device array (zero copy); numpy arrays pass through."""
    if isinstance(x, np.ndarray):
        return x
    return cuda.as_cuda_array(x)
