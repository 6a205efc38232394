"""Assembly at inference: CRMask's units, EmbedMask's coupling, BlendMask's blender, CenterMask's
shape x saliency (references in :mod:`maskrep.assembly`)."""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = ["blend_kernel", "compose_units_kernel", "embedding_coupling_kernel", "shape_saliency_kernel"]


@numba.njit(cache=True, parallel=True)
def compose_units_kernel(u, s, v, eps, out):
    """CRMask: out[n] = Û diag(s) V̂ᵀ with unit-norm columns; u, v (N, m, k), s (N, k), out (N, m, m)."""
    n, m, k = u.shape
    for i in numba.prange(n):
        us = np.empty((m, k))  # û scaled by s
        vh = np.empty((m, k))
        for c in range(k):
            su = 0.0
            sv = 0.0
            for r in range(m):
                su += u[i, r, c] * u[i, r, c]
                sv += v[i, r, c] * v[i, r, c]
            nu = math.sqrt(su + eps)
            nv = math.sqrt(sv + eps)
            for r in range(m):
                us[r, c] = u[i, r, c] / nu * s[i, c]
                vh[r, c] = v[i, r, c] / nv
        for r in range(m):
            for q in range(m):
                acc = 0.0
                for c in range(k):
                    acc += us[r, c] * vh[q, c]
                out[i, r, q] = acc


@numba.njit(cache=True, inline="always")
def _cell_centre(i, stride):
    """Image coordinate of the centre of cell i of a stride-s map: i s + s // 2 + 0.5 (the pixel the
    cell stands for, :func:`maskrep.ops.resample.cell_centres`)."""
    half = math.floor(stride / 2) + 0.5 if stride == math.floor(stride) else stride / 2
    return i * stride + half


@numba.njit(cache=True, inline="always")
def _inside(pix, stride, lo, hi):
    centre = _cell_centre(pix, stride)
    return lo <= centre < hi


@numba.njit(cache=True, parallel=True)
def embedding_coupling_kernel(pixel, inst, margins, boxes, stride, out):
    """EmbedMask inside boxes: out[n, r, c] = exp(-sum_d phi[n, d] (p[d, r, c] - q[n, d])^2) where the
    centre of cell (r, c) (:func:`_cell_centre`) is in box n, else 0. pixel (D, H, W); inst, margins (N, D)."""
    d_, h, w = pixel.shape
    n = inst.shape[0]
    for i in numba.prange(n):
        for r in range(h):
            if not _inside(r, stride, boxes[i, 1], boxes[i, 3]):
                continue
            for c in range(w):
                if not _inside(c, stride, boxes[i, 0], boxes[i, 2]):
                    continue
                acc = 0.0
                for d in range(d_):
                    diff = pixel[d, r, c] - inst[i, d]
                    acc += margins[i, d] * diff * diff
                out[i, r, c] = math.exp(-acc)


@numba.njit(cache=True, inline="always")
def _roi_axis(coord, size):
    """One axis of the RoIAlign bilinear read (coordinate already known to be in [-1, size]):
    clamp below at 0, snap to the last cell at or past it; lower index, upper index, upper weight."""
    coord = max(coord, 0.0)
    low = int(coord)
    if low >= size - 1:
        return size - 1, size - 1, 0.0
    return low, low + 1, coord - low


@numba.njit(cache=True, inline="always")
def _bilinear_roi(img, y, x):
    """detectron2 RoIAlign bilinear read (docs/methods.md §8.1) of a (H, W) map."""
    h, w = img.shape
    if y < -1.0 or y > h or x < -1.0 or x > w:
        return 0.0
    y_lo, y_hi, ly = _roi_axis(y, h)
    x_lo, x_hi, lx = _roi_axis(x, w)
    hy = 1.0 - ly
    hx = 1.0 - lx
    return hy * hx * img[y_lo, x_lo] + hy * lx * img[y_lo, x_hi] + ly * hx * img[y_hi, x_lo] + ly * lx * img[y_hi, x_hi]


@numba.njit(cache=True, inline="always")
def _upsample_tap(dst, src_size, dst_size):
    """torch bilinear resize, align_corners=False: lower index, upper index, upper weight."""
    src = (dst + 0.5) * src_size / dst_size - 0.5
    src = max(src, 0.0)
    lo = int(src)
    hi = lo + 1 if lo < src_size - 1 else lo
    return lo, hi, src - lo


@numba.njit(cache=True, parallel=True)
def blend_kernel(bases, attn, boxes, spatial_scale, out):
    """BlendMask blender for one image: bases (K, H, W), attn (N, K, M, M), boxes (N, 4) image px ->
    out (N, R, R) logits. RoIAlign aligned=True with one sample per bin, bilinear up-sampling of the
    attentions (align_corners=False), softmax over K, weighted sum."""
    k_, m = attn.shape[1], attn.shape[2]
    n, res = out.shape[0], out.shape[1]
    for i in numba.prange(n):
        xs = boxes[i, 0] * spatial_scale - 0.5
        ys = boxes[i, 1] * spatial_scale - 0.5
        bw = (boxes[i, 2] * spatial_scale - 0.5 - xs) / res
        bh = (boxes[i, 3] * spatial_scale - 0.5 - ys) / res
        logits = np.empty(k_)
        for py in range(res):
            y = ys + py * bh + 0.5 * bh
            ylo, yhi, ly = _upsample_tap(py, m, res)
            for px in range(res):
                x = xs + px * bw + 0.5 * bw
                xlo, xhi, lx = _upsample_tap(px, m, res)
                top = -np.inf
                for k in range(k_):
                    a = attn[i, k]
                    v0 = a[ylo, xlo] + lx * (a[ylo, xhi] - a[ylo, xlo])
                    v1 = a[yhi, xlo] + lx * (a[yhi, xhi] - a[yhi, xlo])
                    logits[k] = v0 + ly * (v1 - v0)
                    top = max(top, logits[k])
                z = 0.0
                acc = 0.0
                for k in range(k_):
                    e = math.exp(logits[k] - top)
                    z += e
                    acc += e * _bilinear_roi(bases[k], y, x)
                out[i, py, px] = acc / z


@numba.njit(cache=True, inline="always")
def _box_tap(centre, lo, hi, size):
    """Shape-grid taps for an image coordinate in a box [lo, hi) stretched over ``size`` cells,
    clamped to the edge cells: lower index, upper index, upper weight."""
    g = (centre - lo) / (hi - lo) * size - 0.5
    g = min(max(g, 0.0), size - 1.0)
    low = int(g)
    return low, min(low + 1, size - 1), g - low


@numba.njit(cache=True, parallel=True)
def shape_saliency_kernel(shapes, saliency, boxes, stride, out):
    """CenterMask: out[n, r, c] = sigmoid(shape_n resized to box n)(r, c) * sigmoid(saliency[r, c]) for
    cells whose centre is inside box n, else 0. shapes (N, S, S) logits, saliency (H, W) logits."""
    s = shapes.shape[1]
    h, w = saliency.shape
    n = shapes.shape[0]
    for i in numba.prange(n):
        x0, y0, x1, y1 = boxes[i, 0], boxes[i, 1], boxes[i, 2], boxes[i, 3]
        if not (x1 > x0 and y1 > y0):
            continue
        a = shapes[i]
        for r in range(h):
            cy = _cell_centre(r, stride)
            if not (y0 <= cy < y1):
                continue
            ylo, yhi, ly = _box_tap(cy, y0, y1, s)
            for c in range(w):
                cx = _cell_centre(c, stride)
                if not (x0 <= cx < x1):
                    continue
                xlo, xhi, lx = _box_tap(cx, x0, x1, s)
                v = ((1 - ly) * ((1 - lx) * a[ylo, xlo] + lx * a[ylo, xhi])
                     + ly * ((1 - lx) * a[yhi, xlo] + lx * a[yhi, xhi]))
                out[i, r, c] = 1.0 / (1.0 + math.exp(-v)) / (1.0 + math.exp(-saliency[r, c]))
