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


# ---- RLE -----------------------------------------------------------------------------------------


@numba.njit(cache=True, inline="always")
def _emit(runs, slot, limit, count, start, current, p, bit):
    """Pixel ``p`` (column-major) has value ``bit``: close the current run there when it changes.
    Returns the new (count, start, current, ok); ok is False when the slot has no room left."""
    if bit == current:
        return count, start, current, True
    if count >= limit:
        return count, start, current, False
    runs[slot + count] = p - start
    return count + 1, p, bit, True


@numba.njit(cache=True)
def _cell_classes(crop, threshold):
    """Each bilinear cell of a crop padded with zeros: 1 when every pixel it can give is >= threshold,
    0 when every one is below, 2 when the pixels must be computed. Cell [a, b] lies between crop rows
    a - 1, a and columns b - 1, b (a, b = 0 .. S). Returns (classes (S + 1, S + 1) int8, above, below).

    A pasted value is a convex mix of the cell's four corners, computed with a few roundings: it lies
    within 1e-12 of the corners' range (relative to the crop's largest magnitude, far more than the
    roundings can move it), so values all >= ``above`` give pixels all on, values all < ``below``
    pixels all off. A crop holding NaN or inf (where a zero weight times inf is NaN) has every cell
    computed, and NaN margins that no value clears.
    """
    size = crop.shape[0]
    pad = np.zeros((size + 2, size + 2))
    big = 1.0
    finite = True
    for a in range(size):
        for b in range(size):
            v = crop[a, b]
            pad[a + 1, b + 1] = v
            if not math.isfinite(v):
                finite = False
            elif abs(v) > big:
                big = abs(v)
    out = np.empty((size + 1, size + 1), dtype=np.int8)
    if not finite:
        out[:] = 2
        return out, math.nan, math.nan
    above = threshold + 1e-12 * big  # a cell's smallest corner at least this: all pixels on
    below = threshold - 1e-12 * big  # its largest corner under this: all off
    lo = np.empty(size + 2)
    hi = np.empty(size + 2)
    for a in range(size + 1):
        for b in range(size + 2):  # each column's two corners of the cell row
            u, v = pad[a, b], pad[a + 1, b]
            lo[b] = min(v, u)
            hi[b] = max(u, v)
        for b in range(size + 1):
            cell_lo = min(lo[b + 1], lo[b])
            cell_hi = max(hi[b + 1], hi[b])
            out[a, b] = 1 if cell_lo >= above else (0 if cell_hi < below else 2)
    return out, above, below


@numba.njit(cache=True)
def _paste_runs(crop, x0, y0, x1, y1, height, width, threshold, runs, slot, limit):
    """One crop pasted into an (H, W) image as COCO run lengths (column-major, zeros first), written
    to ``runs[slot:slot + limit]``. Returns (number of runs, ok); ok is False when they do not fit.

    The pixels are the paste kernel's (``paste_masks_kernel``: the same taps, the same arithmetic, the
    same comparison), computed only where they can straddle the threshold. A column's rows fall in
    groups that share their two crop rows; a group whose bilinear cell (``_cell_classes``) is wholly
    above or below the threshold is one stretch, and consecutive such groups of a cell column are
    merged once per mask. In a straddling cell, a column whose two interpolated crop rows clear the
    threshold on one side is one stretch too; only the rest is computed pixel by pixel. The work per
    column is a few stretches plus the pixels along the mask's edge, not every pixel of the box.
    """
    total = height * width
    size = crop.shape[0]
    count, start, current, ok = 0, 0, 0, True
    c_lo, c_hi, r_lo, r_hi = 0, 0, 0, 0
    if x1 > x0 and y1 > y0:
        c_lo, c_hi = _reach(x0, x1, size, width)
        r_lo, r_hi = _reach(y0, y1, size, height)
    if c_hi > c_lo and r_hi > r_lo:
        scale_x = size / (x1 - x0)
        scale_y = size / (y1 - y0)
        cls, above, below = _cell_classes(crop, threshold)
        # rows grouped by their upper crop row ry (-2: both taps outside the crop, exact zeros)
        nrow = r_hi - r_lo
        wy0 = np.empty(nrow)
        wy1 = np.empty(nrow)
        group_row = np.empty(nrow + 1, dtype=np.int64)
        group_k = np.empty(nrow, dtype=np.int64)
        ngroup = 0
        for r in range(r_lo, r_hi):
            ry, a0, a1 = _axis_taps(r, y0, scale_y)
            wy0[r - r_lo] = a0
            wy1[r - r_lo] = a1
            if ry < -1 or ry > size - 1:
                ry = -2
            if ngroup == 0 or ry != group_k[ngroup - 1]:
                group_k[ngroup] = ry
                group_row[ngroup] = r
                ngroup += 1
        group_row[ngroup] = r_hi
        # per cell column b (crop columns b - 1, b), its stretches: (first group, kind), kind 2 computed;
        # cell column size + 1 stands for columns whose taps both fall outside the crop (all zero)
        nseg = np.zeros(size + 2, dtype=np.int64)
        seg_group = np.empty((size + 2, ngroup), dtype=np.int64)
        seg_kind = np.empty((size + 2, ngroup), dtype=np.int8)
        for b in range(size + 2):
            m = 0
            for g in range(ngroup):
                k = group_k[g]
                kind = 0 if b == size + 1 or k == -2 else cls[k + 1, b]
                if m == 0 or kind == 2 or kind != seg_kind[b, m - 1]:
                    seg_group[b, m] = g
                    seg_kind[b, m] = kind
                    m += 1
            nseg[b] = m
        for c in range(c_lo, c_hi):
            base = c * height
            rx, wx0, wx1 = _axis_taps(c, x0, scale_x)
            b = size + 1 if rx < -1 or rx > size - 1 else rx + 1
            if r_lo > 0:
                count, start, current, ok = _emit(runs, slot, limit, count, start, current, base, 0)
            for s in range(nseg[b]):
                if not ok:
                    break
                g = seg_group[b, s]
                kind = seg_kind[b, s]
                if kind == 2:
                    k = group_k[g]
                    top = wx0 * _tap(crop, k, rx, size) + wx1 * _tap(crop, k, rx + 1, size)
                    bottom = wx0 * _tap(crop, k + 1, rx, size) + wx1 * _tap(crop, k + 1, rx + 1, size)
                    if top >= above and bottom >= above:
                        kind = 1
                    elif top < below and bottom < below:
                        kind = 0
                    else:
                        for r in range(group_row[g], group_row[g + 1]):
                            bit = 1 if wy0[r - r_lo] * top + wy1[r - r_lo] * bottom >= threshold else 0
                            count, start, current, ok = _emit(runs, slot, limit, count, start, current,
                                                              base + r, bit)
                            if not ok:
                                break
                        continue
                count, start, current, ok = _emit(runs, slot, limit, count, start, current,
                                                  base + group_row[g], kind)
            if ok and r_hi < height:  # the rows below the reach are 0
                count, start, current, ok = _emit(runs, slot, limit, count, start, current, base + r_hi, 0)
            if not ok:
                break
        if ok and c_hi * height < total:  # the columns right of the reach are 0
            count, start, current, ok = _emit(runs, slot, limit, count, start, current, c_hi * height, 0)
    if ok:  # the last run (an empty mask's only one)
        if count >= limit:
            ok = False
        else:
            runs[slot + count] = total - start
            count += 1
    return count, ok


@numba.njit(cache=True, inline="always")
def _encode_runs(runs, base, count, chars, out):
    """pycocotools' compressed string of ``runs[base:base + count]`` written at ``chars[out:]``
    (6-bit groups, ASCII 48-111, each run but the first three as the difference to the run two
    before); returns its length."""
    pos = 0
    for j in range(count):
        x = np.int64(runs[base + j])
        if j > 2:
            x -= np.int64(runs[base + j - 2])
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            if c & 0x10:
                more = x != -1
            else:
                more = x != 0
            if more:
                c |= 0x20
            chars[out + pos] = c + 48
            pos += 1
    return pos


@numba.njit(cache=True, parallel=True)
def _paste_rle_workers(probs, boxes, height, width, threshold, slot_start, order, threads, runs, chars,
                       nchars, overflow):
    """The parallel part of ``paste_rle_kernel``: masks ``order[t::threads]`` on worker t."""
    n = len(order)
    for t in numba.prange(threads):
        for k in range(t, n, threads):
            i = order[k]
            slot = slot_start[i]
            count, ok = _paste_runs(probs[i], boxes[i, 0], boxes[i, 1], boxes[i, 2], boxes[i, 3], height, width,
                                    threshold, runs, slot, slot_start[i + 1] - slot)
            if ok:
                nchars[i] = _encode_runs(runs, slot, count, chars, 7 * slot)
            overflow[i] = not ok


@numba.njit(cache=True)
def paste_rle_kernel(probs, boxes, height, width, threshold, runs_per_column, threads):
    """Paste (N, S, S) crops into (H, W) images as pycocotools' compressed RLE strings, never
    writing the masks: ``(chars, offsets, overflow)``, mask i's string ``chars[offsets[i]:offsets[i + 1]]``.

    Each mask gets room for ``runs_per_column`` runs per column it reaches; a mask whose runs do not
    fit sets ``overflow[i]`` and gets an empty string (the caller redoes it with room for every pixel).
    The masks are dealt to ``threads`` workers (``numba.get_num_threads()``), largest first. The
    set-up and the gathering stay out of the parallel function: there every array expression would
    start a parallel region of its own.
    """
    n, size = probs.shape[0], probs.shape[1]
    slot_start = np.zeros(n + 1, dtype=np.int64)
    for i in range(n):
        ncol = 0
        x0, x1 = boxes[i, 0], boxes[i, 2]
        if x1 > x0:
            c_lo, c_hi = _reach(x0, x1, size, width)
            ncol = max(c_hi - c_lo, 0)
        slot_start[i + 1] = slot_start[i] + ncol * runs_per_column + 4
    runs = np.empty(slot_start[n], dtype=np.int64)
    chars = np.empty(7 * slot_start[n], dtype=np.uint8)  # a run (< 2**32) takes at most 7 characters
    nchars = np.zeros(n, dtype=np.int64)
    overflow = np.zeros(n, dtype=np.bool_)
    order = np.argsort(slot_start[:-1] - slot_start[1:])  # sizes differ widely: largest first
    _paste_rle_workers(probs, boxes, height, width, threshold, slot_start, order, max(min(threads, n), 1), runs,
                       chars, nchars, overflow)
    offsets = np.zeros(n + 1, dtype=np.int64)
    for i in range(n):
        offsets[i + 1] = offsets[i] + nchars[i]
    out = np.empty(offsets[n], dtype=np.uint8)
    for i in range(n):
        out[offsets[i] : offsets[i + 1]] = chars[7 * slot_start[i] : 7 * slot_start[i] + nchars[i]]
    return out, offsets, overflow


@numba.njit(cache=True)
def encode_runs_kernel(runs, slot_start, nruns, char_start, chars, nchars):
    """pycocotools' compressed string of each mask's runs: ``chars[char_start[i]:...]``, its length
    in ``nchars[i]`` (``_encode_runs``)."""
    for i in range(len(nruns)):
        nchars[i] = _encode_runs(runs, slot_start[i], nruns[i], chars, char_start[i])


# A decoded mask: its run ends (cumulative positions, column-major) and its geometry, one row of
# GEOMETRY columns: foreground positions [first, last), rows [top, bottom], columns [left, right], area.
_FIRST, _LAST, _TOP, _BOTTOM, _LEFT, _RIGHT, _AREA = range(7)
GEOMETRY = 7


@numba.njit(cache=True, inline="always")
def _floor_div(a, b, inv):
    """a // b for 0 <= a < 2**52 and b >= 1, from a multiply by inv = 1 / b and one correction."""
    q = np.int64(a * inv)
    if q * b > a:
        q -= 1
    elif (q + 1) * b <= a:
        q += 1
    return q


@numba.njit(cache=True)
def _decode_one(chars, pos, end, height, ends, base, geometry):
    """One pycocotools string ``chars[pos:end]`` -> run ends at ``ends[base:]`` and the mask's
    geometry row (all zeros when empty); returns the number of runs."""
    m = 0
    prev1 = np.int64(0)  # the last two run lengths (each run is coded against the one two back)
    prev2 = np.int64(0)
    at = np.int64(0)
    first, last, top, bottom, area = -1, 0, height, -1, 0
    col_start = np.int64(0)  # where the column of the last foreground run began
    inv = 1.0 / max(height, 1)
    while pos < end:
        x = np.int64(0)
        k = 0
        more = True
        while more and pos < end:  # a string cut short ends its last run, never reads past it
            c = np.int64(chars[pos]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = (c & 0x20) != 0
            pos += 1
            k += 1
            if not more and (c & 0x10):
                x |= np.int64(-1) << (5 * k)
        if m > 2:
            x += prev2
        prev2 = prev1
        prev1 = x
        if m % 2 == 1 and x > 0:  # a foreground run [at, at + x)
            if first < 0:
                first = at
            last = at + x
            if at - col_start >= height:  # a later column: its start, by a multiply (no division per run)
                col_start = _floor_div(at, height, inv) * height
            if last - col_start > height:  # it wraps into the next column: every row
                top = 0
                bottom = height - 1
            else:
                top = min(top, at - col_start)
                bottom = max(bottom, last - 1 - col_start)
            area += x
        at += x
        ends[base + m] = at
        m += 1
    if first < 0:
        geometry[:] = 0
    else:
        geometry[_FIRST] = first
        geometry[_LAST] = last
        geometry[_TOP] = top
        geometry[_BOTTOM] = bottom
        geometry[_LEFT] = first // height
        geometry[_RIGHT] = (last - 1) // height
        geometry[_AREA] = area
    return m


@numba.njit(cache=True, parallel=True)
def _decode_workers(chars, char_start, heights, ends, nruns, geometry):
    for i in numba.prange(len(heights)):
        nruns[i] = _decode_one(chars, char_start[i], char_start[i + 1], heights[i], ends, char_start[i],
                               geometry[i])


@numba.njit(cache=True)
def decode_rles_kernel(chars, char_start, heights):
    """N pycocotools strings back to back (``chars[char_start[i]:char_start[i + 1]]``, masks of
    ``heights[i]`` rows) -> ``(ends, nruns, geometry)``: mask i's run ends at ``ends[char_start[i]:]``
    (a string of L characters holds at most L runs), their number, its (GEOMETRY,) geometry row."""
    n = len(heights)
    ends = np.empty(char_start[n], dtype=np.int64)
    nruns = np.empty(n, dtype=np.int64)
    geometry = np.empty((n, GEOMETRY), dtype=np.int64)
    _decode_workers(chars, char_start, heights, ends, nruns, geometry)
    return ends, nruns, geometry


@numba.njit(cache=True, inline="always")
def _disjoint(ga, gb):
    """True when two masks certainly share no pixel: one is empty, or their boxes or spans part."""
    return (ga[_AREA] == 0 or gb[_AREA] == 0 or ga[_LAST] <= gb[_FIRST] or gb[_LAST] <= ga[_FIRST]
            or ga[_RIGHT] < gb[_LEFT] or gb[_RIGHT] < ga[_LEFT] or ga[_BOTTOM] < gb[_TOP] or gb[_BOTTOM] < ga[_TOP])


@numba.njit(cache=True)
def _intersection(ends, sa, na, sb, nb, ga, gb):
    """Foreground pixels two masks share: their foreground runs (odd runs, [ends[k - 1], ends[k]))
    merged as two sorted interval lists, over the positions where both have foreground only (each
    list entered by binary search)."""
    lo = max(ga[_FIRST], gb[_FIRST])
    hi = min(ga[_LAST], gb[_LAST])
    ka = np.searchsorted(ends[sa : sa + na], lo, side="right") | 1  # the first foreground run ending after lo
    kb = np.searchsorted(ends[sb : sb + nb], lo, side="right") | 1
    inter = 0
    while ka < na and kb < nb:
        a0 = ends[sa + ka - 1]
        a1 = ends[sa + ka]
        b0 = ends[sb + kb - 1]
        b1 = ends[sb + kb]
        if a0 >= hi or b0 >= hi:
            break
        inter += max(min(a1, b1) - max(a0, b0), 0)
        a_first = a1 <= b1  # the interval that ends first is done with (branch-free: no pattern to predict)
        ka += 2 * a_first
        kb += 2 * (1 - a_first)
    return inter


@numba.njit(cache=True, parallel=True)
def rle_iou_kernel(ends, start, nruns, geometry, n, crowd, inter_out, iou_out):
    """Pairwise intersections and pycocotools' IoU of masks 0..n-1 (a) against n.. (b), decoded by
    ``decode_rles_kernel``. Crowd regions of b divide by the area of a alone; a pair that cannot
    overlap (``_disjoint``) gives 0, as pycocotools skips pairs whose boxes do not overlap."""
    m = len(crowd)
    for i in numba.prange(n):
        ga = geometry[i]
        for j in range(m):
            gb = geometry[n + j]
            if _disjoint(ga, gb):
                continue
            inter = _intersection(ends, start[i], nruns[i], start[n + j], nruns[n + j], ga, gb)
            inter_out[i, j] = inter
            union = ga[_AREA] if crowd[j] else ga[_AREA] + gb[_AREA] - inter
            iou_out[i, j] = inter / union


@numba.njit(cache=True, parallel=True)
def rle_counts_kernel(ends, start, nruns, geometry, inter_out, area_a_out, area_b_out):
    """Element-wise: mask i against mask n + i (n = len(inter_out)) -> their intersection and areas."""
    n = len(inter_out)
    for i in numba.prange(n):
        ga = geometry[i]
        gb = geometry[n + i]
        area_a_out[i] = ga[_AREA]
        area_b_out[i] = gb[_AREA]
        if not _disjoint(ga, gb):
            inter_out[i] = _intersection(ends, start[i], nruns[i], start[n + i], nruns[n + i], ga, gb)


@numba.njit(cache=True)
def _crossing_bound(verts, a, b, width):
    """An upper bound on one polygon's column crossings (pycocotools' rule)."""
    m = b - a
    total = 0
    for k in range(m):
        k1 = k + 1 if k + 1 < m else 0
        first, last = _columns_spanned(_grid_coord(verts[a + k, 0]), _grid_coord(verts[a + k1, 0]), width)
        total += max(last - first + 1, 0)
    return total


@numba.njit(cache=True, parallel=True)
def polygon_rle_bounds(verts, poly_start, inst_start, width, bounds):
    """Per instance, an upper bound on the runs of its RLE (two per crossing, plus two)."""
    for i in numba.prange(len(inst_start) - 1):
        total = 0
        for p in range(inst_start[i], inst_start[i + 1]):
            total += _crossing_bound(verts, poly_start[p], poly_start[p + 1], width)
        bounds[i] = 2 * total + 2


@numba.njit(cache=True, parallel=True)
def polygons_to_rle_kernel(verts, poly_start, inst_start, height, width, slot_start, runs, nruns):
    """Each instance's polygons (image coordinates) straight to COCO run lengths by pycocotools'
    rule: a polygon's column crossings, as column-major positions c * H + row, sorted and paired
    into foreground intervals (what decoding pycocotools' RLE does); the instance is the union of its
    polygons' intervals, merged, then written as runs, zeros first."""
    total_pixels = height * width
    for i in numba.prange(len(inst_start) - 1):
        bound = 0
        for p in range(inst_start[i], inst_start[i + 1]):
            bound += _crossing_bound(verts, poly_start[p], poly_start[p + 1], width)
        starts = np.empty(bound // 2 + 1, dtype=np.int64)
        ends = np.empty(bound // 2 + 1, dtype=np.int64)
        ninterval = 0
        for p in range(inst_start[i], inst_start[i + 1]):
            a, b = poly_start[p], poly_start[p + 1]
            m = b - a
            positions = np.empty(_crossing_bound(verts, a, b, width), dtype=np.int64)
            count = 0
            gx = np.empty(m, dtype=np.int64)
            gy = np.empty(m, dtype=np.int64)
            for k in range(m):
                gx[k] = _grid_coord(verts[a + k, 0])
                gy[k] = _grid_coord(verts[a + k, 1])
            for k in range(m):
                k1 = k + 1 if k + 1 < m else 0
                first, last = _columns_spanned(gx[k], gx[k1], width)
                for c in range(first, last + 1):
                    row = _edge_crossing_row(gx[k], gy[k], gx[k1], gy[k1], c, height)
                    if row >= 0:
                        positions[count] = c * height + row
                        count += 1
            positions = np.sort(positions[:count])
            for j in range(0, count - 1, 2):
                if positions[j + 1] > positions[j]:
                    starts[ninterval] = positions[j]
                    ends[ninterval] = positions[j + 1]
                    ninterval += 1
        order = np.argsort(starts[:ninterval], kind="mergesort")
        slot = slot_start[i]
        n = 0
        pos = 0  # end of what is written so far
        cur_s, cur_e = -1, -1
        for q in range(ninterval):
            s, e = starts[order[q]], ends[order[q]]
            if cur_e >= s:  # overlapping or touching: one interval
                cur_e = max(cur_e, e)
                continue
            if cur_s >= 0:
                runs[slot + n] = cur_s - pos
                runs[slot + n + 1] = cur_e - cur_s
                n += 2
                pos = cur_e
            cur_s, cur_e = s, e
        if cur_s >= 0:
            runs[slot + n] = cur_s - pos
            runs[slot + n + 1] = cur_e - cur_s
            n += 2
            pos = cur_e
        if pos < total_pixels or n == 0:
            runs[slot + n] = total_pixels - pos
            n += 1
        nruns[i] = n


# ---- contours (reference: maskrep.ops.contours) ------------------------------------------------------

@numba.njit(cache=True, inline="always")
def _contour_edge(i, j, edge, h, w):
    if edge == 0:
        return i * (w + 1) + j
    if edge == 2:
        return (i + 1) * (w + 1) + j
    base = (h + 2) * (w + 1)
    return base + i * (w + 2) + (j if edge == 3 else j + 1)


@numba.njit(cache=True, inline="always")
def _contour_point(e, h, w):
    base = (h + 2) * (w + 1)
    if e < base:
        i, j = e // (w + 1), e % (w + 1)
        return float(j), i - 0.5
    i, j = (e - base) // (w + 2), (e - base) % (w + 2)
    return j - 0.5, float(i)


@numba.njit(cache=True, inline="always")
def _padded(mask, i, j, h, w):
    """Value of the zero-padded grid at (i, j): mask[i - 1, j - 1] inside, 0 on the border."""
    if i < 1 or j < 1 or i > h or j > w:
        return 0
    return 1 if mask[i - 1, j - 1] else 0


@numba.njit(cache=True)
def _contour_links(mask, joins, nxt):
    """Fill ``nxt`` (edge -> next edge along the boundary, -1 elsewhere) for one mask."""
    h, w = mask.shape
    nxt[:] = -1
    for i in range(h + 1):
        for j in range(w + 1):
            case = (_padded(mask, i, j, h, w) + 2 * _padded(mask, i, j + 1, h, w)
                    + 4 * _padded(mask, i + 1, j + 1, h, w) + 8 * _padded(mask, i + 1, j, h, w))
            for k in range(2):
                a = joins[case, k, 0]
                if a >= 0:
                    nxt[_contour_edge(i, j, a, h, w)] = _contour_edge(i, j, joins[case, k, 1], h, w)


@numba.njit(cache=True, parallel=True)
def outer_contour_kernel(masks, joins, best_start, best_len):
    """Per mask, the first edge (in the cells' scan order) and length of the loop of largest
    positive area once walked backwards: the outer boundary of the largest part."""
    n, h, w = masks.shape
    n_edges = (h + 2) * (w + 1) + (h + 1) * (w + 2)
    for m in numba.prange(n):
        nxt = np.empty(n_edges, dtype=np.int64)
        _contour_links(masks[m], joins, nxt)
        seen = np.zeros(n_edges, dtype=np.bool_)
        best_area = 0.0
        for i in range(h + 1):
            for j in range(w + 1):
                case = (_padded(masks[m], i, j, h, w) + 2 * _padded(masks[m], i, j + 1, h, w)
                        + 4 * _padded(masks[m], i + 1, j + 1, h, w) + 8 * _padded(masks[m], i + 1, j, h, w))
                for k in range(2):
                    a = joins[case, k, 0]
                    if a < 0:
                        continue
                    start = _contour_edge(i, j, a, h, w)
                    if seen[start]:
                        continue
                    twice_area = 0.0  # of the forward walk; the backward walk has its negative
                    count = 0
                    e = start
                    x0, y0 = _contour_point(e, h, w)
                    while not seen[e]:
                        seen[e] = True
                        x1, y1 = _contour_point(nxt[e], h, w)
                        twice_area += x0 * y1 - x1 * y0
                        x0, y0 = x1, y1
                        count += 1
                        e = nxt[e]
                    if -twice_area / 2 > best_area:
                        best_area = -twice_area / 2
                        best_start[m] = start
                        best_len[m] = count


@numba.njit(cache=True, parallel=True)
def trace_loop_kernel(masks, joins, best_start, offsets, points):
    """Write each mask's chosen loop, walked backwards from its first edge, to ``points[offsets[m]:]``."""
    n, h, w = masks.shape
    n_edges = (h + 2) * (w + 1) + (h + 1) * (w + 2)
    for m in numba.prange(n):
        count = offsets[m + 1] - offsets[m]
        if count == 0:
            continue
        nxt = np.empty(n_edges, dtype=np.int64)
        _contour_links(masks[m], joins, nxt)
        e = best_start[m]
        for k in range(count):  # forward position k goes to backward position (count - k) % count
            x, y = _contour_point(e, h, w)
            slot = offsets[m] + (count - k) % count
            points[slot, 0] = x
            points[slot, 1] = y
            e = nxt[e]


@numba.njit(cache=True, inline="always")
def _triangle_area(loop, p, q, r):
    return abs((loop[p, 0] - loop[q, 0]) * (loop[r, 1] - loop[q, 1])
               - (loop[r, 0] - loop[q, 0]) * (loop[p, 1] - loop[q, 1])) * 0.5


@numba.njit(cache=True)
def simplify_polygon_kernel(loop, count, keep):
    """Visvalingam-Whyatt down to ``count`` vertices (reference: maskrep.codecs.contour
    .simplify_polygon): repeatedly drop the live vertex of least triangle area, lowest index on ties."""
    p = loop.shape[0]
    prev = np.empty(p, dtype=np.int64)
    nxt = np.empty(p, dtype=np.int64)
    area = np.empty(p, dtype=np.float64)
    for i in range(p):
        prev[i] = i - 1 if i > 0 else p - 1
        nxt[i] = i + 1 if i + 1 < p else 0
        keep[i] = True
    for i in range(p):
        area[i] = _triangle_area(loop, prev[i], i, nxt[i])
    remaining = p
    while remaining > count:
        best = -1
        for i in range(p):
            if keep[i] and (best < 0 or area[i] < area[best]):
                best = i
        keep[best] = False
        remaining -= 1
        a, b = prev[best], nxt[best]
        nxt[a] = b
        prev[b] = a
        area[a] = _triangle_area(loop, prev[a], a, nxt[a])
        area[b] = _triangle_area(loop, prev[b], b, nxt[b])


@numba.njit(cache=True, parallel=True)
def polygon_logits_kernel(verts, size, sharpness, out):
    """Soft fill of closed polygons (reference: maskrep.codecs.contour.polygon_logits): per pixel
    centre, sharpness x the distance to the nearest boundary segment, positive inside (even-odd)."""
    n, p = verts.shape[0], verts.shape[1]
    for i in numba.prange(n * size):
        m, row = i // size, i % size
        qy = row + 0.5
        for col in range(size):
            qx = col + 0.5
            best = np.inf
            inside = False
            for k in range(p):
                ax, ay = verts[m, k, 0], verts[m, k, 1]
                k1 = k + 1 if k + 1 < p else 0
                bx, by = verts[m, k1, 0], verts[m, k1, 1]
                dx, dy = bx - ax, by - ay
                len2 = max(dx * dx + dy * dy, 1e-12)
                t = ((qx - ax) * dx + (qy - ay) * dy) / len2
                t = min(max(t, 0.0), 1.0)
                ex, ey = qx - ax - t * dx, qy - ay - t * dy
                best = min(best, ex * ex + ey * ey)
                if (ay > qy) != (by > qy) and qx < ax + (qy - ay) * dx / dy:
                    inside = not inside
            dist = math.sqrt(best + 1e-12)
            out[m, row, col] = sharpness * (dist if inside else -dist)
