"""pycocotools' polygon rule, one edge and one column at a time.

Plain Python on scalars, compiled twice: by ``numba.njit`` for the CPU kernel and by
``numba.cuda.jit(device=True)`` for the GPU kernel, so both run the same source.
The vectorised reference that walks the whole boundary, as pycocotools does, is
``maskrep.ops.polygons._coco_crossings``; the two formulations are checked against each other
and against pycocotools.

The rule (pycocotools ``rleFrPoly``): vertices are scaled by 5 and truncated to integers
(C's ``(int)`` cast, toward zero); each edge is walked one integer step at a time along its
longer axis, the other coordinate rounded as ``(int)(start + slope * t + .5)``; wherever two
consecutive boundary points straddle the vertical line between upscaled columns 5c + 2 and
5c + 3 (the centre of image column c), the column gets a crossing at row
ceil((min(v) - 2) / 5), clamped to [0, H]; pixels of column c are inside where an odd number of
the column's crossings lie at or above them.
"""

from __future__ import annotations

#: Sub-pixel grid of pycocotools' boundary walk.
UPSCALE = 5


def grid_coord(value):
    """A vertex coordinate on the 1/5-pixel grid: C's ``(int)(5 * value + .5)`` (truncation)."""
    return int(UPSCALE * value + 0.5)


def edge_crossing_row(xa, ya, xb, yb, col, height):
    """The crossing row the edge (xa, ya) -> (xb, yb) (upscaled integer vertices) gives column
    ``col``, or -1 when its boundary points do not straddle the column's centre line.

    Self-contained (no calls to other functions of this module) so that numba can compile it for
    either target. The walk's minor coordinate at step t is C's ``(int)(start + slope * t + .5)``.
    """
    dx = abs(xb - xa)
    dy = abs(yb - ya)
    line = UPSCALE * col + 2  # the points straddle line + 0.5
    if dx >= dy:
        if dx == 0:
            return -1
        if xa > xb:
            xa, ya, xb, yb = xb, yb, xa, ya
        if line < xa or line + 1 > xb:
            return -1
        slope = (yb - ya) / dx
        t = line - xa
        vmin = min(int(ya + slope * t + 0.5), int(ya + slope * (t + 1) + 0.5))
    else:
        if ya > yb:
            xa, ya, xb, yb = xb, yb, xa, ya
        slope = (xb - xa) / dy
        # u(t) is monotone in t with unit steps: find the first t on the far side of the line and
        # check that its predecessor is the near neighbour
        rising = slope >= 0
        lo, hi = 0, dy + 1
        while lo < hi:
            mid = (lo + hi) // 2
            u = int(xa + slope * mid + 0.5)
            if (u >= line + 1) if rising else (u <= line):
                hi = mid
            else:
                lo = mid + 1
        if lo == 0 or lo > dy:
            return -1
        if int(xa + slope * (lo - 1) + 0.5) != (line if rising else line + 1):
            return -1
        vmin = ya + lo - 1
    row = -((2 - vmin) // UPSCALE)  # ceil((vmin - 2) / 5)
    return min(max(row, 0), height)


def columns_spanned(xa, xb, width):
    """Image columns [first, last] whose centre line the edge between upscaled abscissae xa and
    xb may straddle (a superset: the walk's rounding can move a point by one unit)."""
    lo = min(xa, xb) - 1
    hi = max(xa, xb) + 1
    first = max(-((2 - lo) // UPSCALE), 0)  # ceil((lo - 2) / 5)
    last = min((hi - 3) // UPSCALE, width - 1)
    return first, last
