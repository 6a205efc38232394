"""Polygon rasterisation, written for clarity: the reference for the fast kernels.

Convention (docs/conventions.md): pixel (row r, col c) covers [c, c+1) x [r, r+1) and is foreground
when its centre (c + 0.5, r + 0.5) lies inside the polygon (even-odd rule, one polygon at a time);
an instance with several polygons is their union, as COCO means it. Points and polygons are (x, y).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["as_polygon", "fill_polygon", "polygon_area", "polygons_to_mask"]


def as_polygon(polygon) -> np.ndarray:
    """One polygon as a float64 (P, 2) array of (x, y) vertices.

    Accepts a flat COCO list ``[x0, y0, x1, y1, ...]`` or a (P, 2) array. Raises ValueError for an
    odd count, fewer than 3 vertices or non-finite values.
    """
    arr = np.asarray(polygon, dtype=np.float64)
    if arr.ndim == 1:
        if arr.size % 2:
            raise ValueError(f"a flat polygon needs an even count of numbers, got {arr.size}")
        arr = arr.reshape(-1, 2)  # (P, 2)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"a polygon must be flat [x0, y0, ...] or (P, 2), got shape {arr.shape}")
    if arr.shape[0] < 3:
        raise ValueError(f"a polygon needs at least 3 vertices (6 numbers), got {arr.shape[0]}")
    if not np.isfinite(arr).all():
        raise ValueError("a polygon has non-finite coordinates")
    return arr


def fill_polygon(vertices: np.ndarray, height: int, width: int, out: np.ndarray | None = None) -> np.ndarray:
    """Rasterise one polygon at pixel centres by scanline parity; OR it into ``out``.

    Parameters
    ----------
    vertices : ndarray of shape (P, 2), float64
        (x, y) in the pixel frame of the output grid.
    height, width : int
    out : ndarray of shape (height, width), bool, optional
        Filled in place (union) when given.

    Returns
    -------
    ndarray of shape (height, width), bool
    """
    if out is None:
        out = np.zeros((height, width), dtype=bool)
    if height == 0 or width == 0:
        return out
    x0, y0 = vertices[:, 0], vertices[:, 1]  # (P,)
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)  # (P,) edge ends
    py = np.arange(height, dtype=np.float64) + 0.5  # (H,) row centres
    # An edge crosses row r when exactly one end is above its centre (half-open, so vertices on a
    # scanline are counted once).
    crosses = (y0[None, :] > py[:, None]) != (y1[None, :] > py[:, None])  # (H, P)
    rows, edges = np.nonzero(crosses)
    if rows.size == 0:
        return out
    xa, ya, xb, yb = x0[edges], y0[edges], x1[edges], y1[edges]
    x_cross = xa + (py[rows] - ya) * (xb - xa) / (yb - ya)  # (E,) crossing abscissae
    # Pixel c is right of the crossing when c + 0.5 > x, i.e. c >= floor(x - 0.5) + 1.
    first_col = np.clip(np.floor(x_cross - 0.5) + 1, 0, width).astype(np.int64)
    toggles = np.zeros((height, width + 1), dtype=np.int64)
    np.add.at(toggles, (rows, first_col), 1)
    inside = (np.cumsum(toggles[:, :width], axis=1) & 1).astype(bool)  # (H, W)
    out |= inside
    return out


def polygons_to_mask(polygons: Sequence, height: int, width: int) -> np.ndarray:
    """Union of an instance's polygons (image coordinates) as an (H, W) bool mask."""
    mask = np.zeros((height, width), dtype=bool)
    for polygon in polygons:
        fill_polygon(as_polygon(polygon), height, width, out=mask)
    return mask


def polygon_area(polygon) -> float:
    """Absolute shoelace area of one polygon, in square pixels."""
    v = as_polygon(polygon)
    x, y = v[:, 0], v[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2.0)
