"""COCO run-length encoding: paste straight to RLE, decode, IoU on runs, polygons to RLE
(references in :mod:`maskrep.ops.rle`)."""

from __future__ import annotations

import math

import numba
import numpy as np

from .paste import _axis_taps, _reach, _tap
from .rasterize import _columns_spanned, _edge_crossing_row, _grid_coord

__all__ = [
    "decode_rles_kernel",
    "encode_runs_kernel",
    "paste_rle_kernel",
    "polygon_rle_bounds",
    "polygons_to_rle_kernel",
    "rle_counts_kernel",
    "rle_iou_kernel",
]


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
def _decode_one(chars, pos, end, height, ends, base, geometry, status):
    """One pycocotools string ``chars[pos:end]`` -> run ends at ``ends[base:]`` and the mask's
    geometry row (all zeros when empty); returns the number of runs. ``status`` gets the runs' total
    and flags: 1 a negative run, 2 a character outside pycocotools' alphabet, 4 a string cut in the
    middle of a value."""
    flags = 0
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
            if c < 0 or c > 63:
                flags |= 2
            x |= (c & 0x1F) << (5 * k)
            more = (c & 0x20) != 0
            pos += 1
            k += 1
            if not more and (c & 0x10):
                x |= np.int64(-1) << (5 * k)
        if more:
            flags |= 4
        if m > 2:
            x += prev2
        if x < 0:
            flags |= 1
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
    status[0] = at
    status[1] = flags
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
def _decode_workers(chars, char_start, heights, ends, nruns, geometry, status):
    for i in numba.prange(len(heights)):
        nruns[i] = _decode_one(chars, char_start[i], char_start[i + 1], heights[i], ends, char_start[i],
                               geometry[i], status[i])


@numba.njit(cache=True)
def decode_rles_kernel(chars, char_start, heights):
    """N pycocotools strings back to back (``chars[char_start[i]:char_start[i + 1]]``, masks of
    ``heights[i]`` rows) -> ``(ends, nruns, geometry, status)``: mask i's run ends at
    ``ends[char_start[i]:]`` (a string of L characters holds at most L runs), their number, its
    (GEOMETRY,) geometry row, and (its runs' total, flags of :func:`_decode_one`)."""
    n = len(heights)
    ends = np.empty(char_start[n], dtype=np.int64)
    nruns = np.empty(n, dtype=np.int64)
    geometry = np.empty((n, GEOMETRY), dtype=np.int64)
    status = np.empty((n, 2), dtype=np.int64)
    _decode_workers(chars, char_start, heights, ends, nruns, geometry, status)
    return ends, nruns, geometry, status


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
