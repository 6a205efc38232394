"""Mask IoU counts (reference: :func:`maskrep.ops.mask_iou`, :func:`maskrep.ops.mask_iou_pairwise`)."""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["mask_counts_kernel", "pairwise_inter_kernel", "popcount_rows_kernel"]


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
