"""numba CPU kernels. Each mirrors a reference in maskrep.ops / maskrep.assembly.

Kernels whose reference is numpy float64 (paste, rasterise, IoU counts) use the same arithmetic in
the same order, so their output is identical. The assembly kernels reproduce torch references
within the tolerances of ``maskrep._kernels.tolerances``. All are compiled on first use and
cached on disk (``cache=True``), so an import never compiles.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from . import coco_polygon

# ---- paste -----------------------------------------------------------------------------------------


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


# ---- rasterise ---------------------------------------------------------------------------------

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


# ---- IoU -----------------------------------------------------------------------------------------


@numba.njit(cache=True, parallel=True)
def mask_counts_kernel(a, b, inter, area_a, area_b):
    """Element-wise counts of (N, L) bool stacks: |a & b|, |a|, |b| per row."""
    n, length = a.shape
    for i in numba.prange(n):
        ni = 0
        na = 0
        nb = 0
        for j in range(length):
            x = a[i, j]
            y = b[i, j]
            ni += x & y
            na += x
            nb += y
        inter[i] = ni
        area_a[i] = na
        area_b[i] = nb


@numba.njit(cache=True, inline="always")
def _popcount64(x):
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    # sum the eight byte counts with shifts (no wrapping multiply, so plain Python agrees too)
    x = x + (x >> np.uint64(8))
    x = x + (x >> np.uint64(16))
    x = x + (x >> np.uint64(32))
    return x & np.uint64(0x7F)


@numba.njit(cache=True, parallel=True)
def pairwise_inter_kernel(words_a, words_b, inter):
    """|a_i & b_j| for bit-packed (N, W) and (M, W) uint64 rows -> inter (N, M) int64."""
    n, m, nw = words_a.shape[0], words_b.shape[0], words_a.shape[1]
    for i in numba.prange(n):
        for j in range(m):
            acc = np.uint64(0)
            for w in range(nw):
                acc += _popcount64(words_a[i, w] & words_b[j, w])
            inter[i, j] = acc


@numba.njit(cache=True, parallel=True)
def popcount_rows_kernel(words, out):
    for i in numba.prange(words.shape[0]):
        acc = np.uint64(0)
        for w in range(words.shape[1]):
            acc += _popcount64(words[i, w])
        out[i] = acc


# ---- assembly (inference) ------------------------------------------------------------------------


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
def _inside(pix, stride, lo, hi):
    centre = (pix + 0.5) * stride
    return lo <= centre < hi


@numba.njit(cache=True, parallel=True)
def embedding_coupling_kernel(pixel, inst, margins, boxes, stride, out):
    """EmbedMask inside boxes: out[n, r, c] = exp(-sum_d phi[n, d] (p[d, r, c] - q[n, d])^2) where the
    cell centre ((c + .5) s, (r + .5) s) is in box n, else 0. pixel (D, H, W); inst, margins (N, D)."""
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
            cy = (r + 0.5) * stride
            if not (y0 <= cy < y1):
                continue
            ylo, yhi, ly = _box_tap(cy, y0, y1, s)
            for c in range(w):
                cx = (c + 0.5) * stride
                if not (x0 <= cx < x1):
                    continue
                xlo, xhi, lx = _box_tap(cx, x0, x1, s)
                v = ((1 - ly) * ((1 - lx) * a[ylo, xlo] + lx * a[ylo, xhi])
                     + ly * ((1 - lx) * a[yhi, xlo] + lx * a[yhi, xhi]))
                out[i, r, c] = 1.0 / (1.0 + math.exp(-v)) / (1.0 + math.exp(-saliency[r, c]))
