"""COCO run-length encoding in plain numpy, byte-compatible with pycocotools.

An RLE is ``{"size": [H, W], "counts": str}``: runs over the mask read in column-major order,
starting with a (possibly empty) run of zeros, compressed into pycocotools' ASCII form. A list of
ints for ``counts`` (the uncompressed form COCO uses for crowd regions) is accepted on input.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["decode_counts", "encode_counts", "mask_to_rle", "rle_area", "rle_to_mask"]


def _runs(mask: np.ndarray) -> np.ndarray:
    """Run lengths of one (H, W) bool mask in column-major order, starting with zeros."""
    flat = np.ascontiguousarray(mask.T).reshape(-1)  # column-major order
    if flat.size == 0:
        return np.zeros(0, dtype=np.int64)
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], change, [flat.size]))
    runs = np.diff(bounds)
    if flat[0]:
        runs = np.concatenate(([0], runs))
    return runs.astype(np.int64)


def encode_counts(runs: Sequence[int]) -> str:
    """Compress run lengths into pycocotools' string (6-bit groups, delta from two runs back)."""
    chars = []
    for i, run in enumerate(runs):
        x = int(run)
        if i > 2:
            x -= int(runs[i - 2])
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = (x != -1) if (c & 0x10) else (x != 0)
            if more:
                c |= 0x20
            chars.append(chr(c + 48))
    return "".join(chars)


def decode_counts(counts: str | bytes) -> np.ndarray:
    """Inverse of :func:`encode_counts`: (R,) int64 run lengths."""
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    runs: list[int] = []
    pos = 0
    while pos < len(counts):
        x, k, more = 0, 0, True
        while more:
            c = ord(counts[pos]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            pos += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(runs) > 2:
            x += runs[-2]
        runs.append(x)
    return np.asarray(runs, dtype=np.int64)


def mask_to_rle(masks: np.ndarray) -> list[dict]:
    """Encode masks as compressed COCO RLEs.

    Parameters
    ----------
    masks : ndarray of shape (N, H, W) or (H, W), bool

    Returns
    -------
    list of length N of ``{"size": [H, W], "counts": str}`` (a single dict for a 2-D input).

    Examples
    --------
    >>> import numpy as np
    >>> m = np.zeros((3, 4), bool); m[1, 1:3] = True
    >>> mask_to_rle(m)  # runs (column-major, zeros first): 4, 1, 2, 1, 4
    {'size': [3, 4], 'counts': '41202'}
    """
    masks = np.asarray(masks)
    if masks.dtype != bool:
        raise TypeError(f"masks must be bool, got {masks.dtype}")
    single = masks.ndim == 2
    if single:
        masks = masks[None]
    if masks.ndim != 3:
        raise ValueError(f"masks must be (N, H, W) or (H, W), got shape {masks.shape}")
    h, w = masks.shape[1:]
    out = [{"size": [int(h), int(w)], "counts": encode_counts(_runs(m))} for m in masks]
    return out[0] if single else out


def _counts_of(rle: dict) -> np.ndarray:
    counts = rle["counts"]
    if isinstance(counts, (str, bytes)):
        return decode_counts(counts)
    return np.asarray(counts, dtype=np.int64)


def rle_to_mask(rles: dict | Sequence[dict]) -> np.ndarray:
    """Decode one RLE to (H, W) bool, or a list of RLEs of one size to (N, H, W) bool.

    Raises ValueError when the runs do not add up to H * W.
    """
    single = isinstance(rles, dict)
    rle_list = [rles] if single else list(rles)
    if not rle_list:
        return np.zeros((0, 0, 0), dtype=bool)
    h, w = (int(v) for v in rle_list[0]["size"])
    out = np.zeros((len(rle_list), h, w), dtype=bool)
    for i, rle in enumerate(rle_list):
        if [int(v) for v in rle["size"]] != [h, w]:
            raise ValueError(f"RLE {i} has size {rle['size']}, expected {[h, w]}")
        runs = _counts_of(rle)
        if runs.sum() != h * w:
            raise ValueError(f"RLE {i}: runs add up to {int(runs.sum())}, expected H * W = {h * w}")
        values = np.zeros(runs.size, dtype=bool)
        values[1::2] = True
        flat = np.repeat(values, runs)  # column-major
        out[i] = flat.reshape(w, h).T
    return out[0] if single else out


def rle_area(rle: dict) -> int:
    """Foreground pixel count of one RLE, without decoding it."""
    return int(_counts_of(rle)[1::2].sum())
