"""Mask contours: the boundary of a binary mask as closed polygons (marching squares).

The contour passes through the midpoints between neighbouring pixel centres of different value,
so every foreground pixel centre lies inside it and every background centre outside: filling the
contour at pixel centres (even-odd) gives the mask back. Diagonal foreground neighbours are joined
(8-connected foreground). Points are (x, y) in pixel units, pixel (r, c) covering [c, c+1) x [r, r+1).

Loops are oriented so that an outer boundary has positive shoelace area ``polygon_signed_area``
(in these x-right, y-down coordinates) and a hole's boundary negative.
"""

from __future__ import annotations

import numpy as np

from .._array import to_numpy
from .._kernels import choose_backend

__all__ = ["mask_contours", "outer_contours", "polygon_signed_area"]


def polygon_signed_area(points: np.ndarray) -> float:
    """Shoelace area of a closed (P, 2) polygon; positive for this module's outer boundaries."""
    x, y = points[:, 0], points[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


# Each 2 x 2 cell of pixel centres (corners tl, tr, br, bl) is walked clockwise on screen through
# its edges top, right, bottom, left. An edge whose value drops (1 -> 0) is an exit, one whose value
# rises an entry; every entry is joined to the nearest exit before it in that order (a saddle cell
# joins its two foreground corners). A boundary edge is an exit of one cell and an entry of its
# neighbour, so the joins chain into closed loops.
def _cell_joins(tl: int, tr: int, br: int, bl: int) -> list[tuple[int, int]]:
    corners = (tl, tr, br, bl)
    kind = []  # per edge k (from corner k to corner k+1): +1 exit, -1 entry, 0 none
    for k in range(4):
        a, b = corners[k], corners[(k + 1) % 4]
        kind.append(0 if a == b else (1 if a else -1))
    joins = []
    for k in range(4):
        if kind[k] == -1:
            j = (k - 1) % 4
            while kind[j] != 1:
                j = (j - 1) % 4
            joins.append((k, j))
    return joins


#: (16, 2, 2) int64: per cell case (tl + 2 tr + 4 br + 8 bl), up to two (entry edge, exit edge)
#: joins, -1 where absent. Edges: 0 top, 1 right, 2 bottom, 3 left.
CELL_JOINS = np.full((16, 2, 2), -1, dtype=np.int64)
for _case in range(16):
    for _k, (_a, _b) in enumerate(_cell_joins(_case & 1, (_case >> 1) & 1, (_case >> 2) & 1, (_case >> 3) & 1)):
        CELL_JOINS[_case, _k] = (_a, _b)


def _edge_id(i: int, j: int, edge: int, h: int, w: int) -> int:
    """Id of one edge of cell (i, j) of the zero-padded (h + 2, w + 2) grid."""
    if edge == 0:
        return i * (w + 1) + j  # horizontal edge between padded (i, j) and (i, j + 1)
    if edge == 2:
        return (i + 1) * (w + 1) + j
    base = (h + 2) * (w + 1)
    return base + i * (w + 2) + (j if edge == 3 else j + 1)  # vertical edge between (i, j) and (i + 1, j)


def _edge_point(e: int, h: int, w: int) -> tuple[float, float]:
    """(x, y) of an edge's midpoint: halfway between two pixel centres."""
    base = (h + 2) * (w + 1)
    if e < base:
        i, j = divmod(e, w + 1)
        return float(j), i - 0.5
    i, j = divmod(e - base, w + 2)
    return j - 0.5, float(i)


def mask_contours(mask) -> list[np.ndarray]:
    """Every boundary loop of one mask (outer boundaries and holes), the plain reference.

    Parameters
    ----------
    mask : (H, W) bool

    Returns
    -------
    list of (P, 2) float64 (x, y) loops (the first point not repeated), in the order their first edge
    is met scanning the cells row by row; outer boundaries with positive signed area, holes negative.

    Examples
    --------
    >>> m = np.zeros((3, 3), bool); m[1, 1] = True
    >>> mask_contours(m)[0].tolist()
    [[1.5, 1.0], [2.0, 1.5], [1.5, 2.0], [1.0, 1.5]]
    """
    m = np.asarray(to_numpy(mask), dtype=bool)
    if m.ndim != 2:
        raise ValueError(f"mask must be (H, W), got shape {m.shape}")
    h, w = m.shape
    g = np.pad(m, 1).astype(np.int64)
    nxt: dict[int, int] = {}
    order: list[int] = []
    for i in range(h + 1):
        for j in range(w + 1):
            case = g[i, j] + 2 * g[i, j + 1] + 4 * g[i + 1, j + 1] + 8 * g[i + 1, j]
            for a, b in CELL_JOINS[case]:
                if a >= 0:
                    start = _edge_id(i, j, int(a), h, w)
                    nxt[start] = _edge_id(i, j, int(b), h, w)
                    order.append(start)
    loops, seen = [], set()
    for start in order:
        if start in seen:
            continue
        loop, e = [], start
        while e not in seen:
            seen.add(e)
            loop.append(_edge_point(e, h, w))
            e = nxt[e]
        # walked backwards from its first edge: outer loops positive
        loops.append(np.array([loop[0], *loop[:0:-1]], dtype=np.float64))
    return loops


def outer_contours(masks, *, backend: str = "auto") -> list[np.ndarray]:
    """The outer boundary of each mask's largest part: holes and smaller parts left out.

    Parameters
    ----------
    masks : (N, H, W) bool
    backend : {"auto", "reference", "numba"}

    Returns
    -------
    list of N (P_i, 2) float64 (x, y) loops with positive signed area, (0, 2) for an empty mask. Of
    several parts, the one whose outer boundary encloses the largest area (the first met on a tie).

    Examples
    --------
    >>> m = np.zeros((1, 4, 6), bool); m[0, 1:3, 1:3] = True; m[0, 1, 5] = True
    >>> outer_contours(m)[0].shape, polygon_signed_area(outer_contours(m)[0])
    ((8, 2), 3.5)
    """
    arr = np.asarray(to_numpy(masks), dtype=bool)
    if arr.ndim != 3:
        raise ValueError(f"masks must be (N, H, W), got shape {arr.shape}")
    n = arr.shape[0]
    if choose_backend(backend) != "numba":
        out = []
        for m in arr:
            loops = [p for p in mask_contours(m) if polygon_signed_area(p) > 0]
            out.append(max(loops, key=polygon_signed_area) if loops else np.zeros((0, 2)))  # max keeps the first
        return out
    from .._kernels.numba_cpu import outer_contour_kernel, trace_loop_kernel

    best_start = np.full(n, -1, dtype=np.int64)
    best_len = np.zeros(n, dtype=np.int64)
    outer_contour_kernel(np.ascontiguousarray(arr), CELL_JOINS, best_start, best_len)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(best_len, out=offsets[1:])
    points = np.zeros((int(offsets[-1]), 2), dtype=np.float64)
    trace_loop_kernel(np.ascontiguousarray(arr), CELL_JOINS, best_start, offsets, points)
    return [points[offsets[i] : offsets[i + 1]] for i in range(n)]
