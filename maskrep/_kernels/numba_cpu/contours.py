"""Contours, polygon simplification and the contour codecs' polygon fill (references in
:mod:`maskrep.ops.contours`, :mod:`maskrep.codecs.contour`)."""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = ["outer_contour_kernel", "polygon_logits_kernel", "simplify_polygon_kernel", "trace_loop_kernel"]


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
