"""COCO run-length encoding in plain numpy, byte-compatible with pycocotools.

An RLE is ``{"size": [H, W], "counts": str}``: runs over the mask read in column-major order,
starting with a (possibly empty) run of zeros, compressed into pycocotools' ASCII form. A list of
ints for ``counts`` (the uncompressed form COCO uses for crowd regions) is accepted on input.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import numpy as np

from .masks import MASK_THRESHOLD

__all__ = ["decode_counts", "encode_counts", "mask_to_rle", "paste_masks_to_rle", "polygons_to_rle", "rle_area",
           "rle_counts", "rle_intersection", "rle_iou", "rle_to_mask"]


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
    """Inverse of :func:`encode_counts`: (R,) int64 run lengths. A character outside pycocotools'
    alphabet ('0' to 'o'), a string cut in the middle of a value, or a negative run is a
    ValueError naming it."""
    if isinstance(counts, bytes):
        counts = counts.decode("ascii", errors="replace")
    runs: list[int] = []
    pos = 0
    while pos < len(counts):
        x, k, more = 0, 0, True
        while more:
            if pos >= len(counts):
                raise ValueError(f"RLE counts {_show(counts)} end in the middle of a value")
            c = ord(counts[pos]) - 48
            if not 0 <= c <= 63:
                raise ValueError(f"RLE counts {_show(counts)} hold {counts[pos]!r} at {pos}, outside pycocotools' "
                                 "alphabet ('0' to 'o')")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            pos += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(runs) > 2:
            x += runs[-2]
        if x < 0:
            raise ValueError(f"compressed RLE counts decode to a negative run ({x}) at run {len(runs)} of {_show(counts)}")
        runs.append(x)
    return np.asarray(runs, dtype=np.int64)


def _show(counts: str) -> str:
    return repr(counts if len(counts) <= 24 else counts[:20] + "...")


def check_size(size, what: str = "RLE") -> tuple[int, int]:
    """(H, W) as two non-negative ints whose product is within ``maskrep._config.MAX_IMAGE_PIXELS``;
    a ValueError naming the size otherwise, before anything is allocated."""
    from .. import _config

    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"{what} size must be [H, W], got {size!r}") from None
    if h < 0 or w < 0:
        raise ValueError(f"{what} size must be non-negative, got {[h, w]}")
    if h * w > _config.MAX_IMAGE_PIXELS:
        raise ValueError(f"{what} size {[h, w]} is {h * w:,} pixels, over the {_config.MAX_IMAGE_PIXELS:,} one image "
                         "may have (maskrep._config.MAX_IMAGE_PIXELS)")
    return h, w


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
    h, w = check_size(rle_list[0]["size"])
    out = np.zeros((len(rle_list), h, w), dtype=bool)
    for i, rle in enumerate(rle_list):
        if [int(v) for v in rle["size"]] != [h, w]:
            raise ValueError(f"RLE {i} has size {rle['size']}, expected {[h, w]}")
        runs = _counts_of(rle)
        if (runs < 0).any():
            raise ValueError(f"RLE {i}: a negative run ({int(runs.min())})")
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


# ---- operations straight on RLE: no (N, H, W) masks in memory -------------------------------------

def _decoded(rles: Sequence[dict], heights: np.ndarray, widths: np.ndarray):
    """The runs of compressed or uncompressed RLEs, decoded in one kernel call:
    ``(ends, starts, nruns, geometry)`` (``maskrep._kernels.numba_cpu.decode_rles_kernel``). What
    the reference refuses is refused here too, naming the RLE: runs that do not add up to H * W, a
    negative run, a character outside the alphabet, a string cut in a value."""
    from .._kernels.numba_cpu import decode_rles_kernel

    strings = [r["counts"] for r in rles]
    try:
        text = "".join(strings)  # the common case: every string already a str
    except TypeError:
        strings = [s.decode("ascii") if isinstance(s, bytes) else s if isinstance(s, str) else encode_counts(s)
                   for s in strings]
        text = "".join(strings)
    char_start = np.zeros(len(strings) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, strings), dtype=np.int64, count=len(strings)), out=char_start[1:])
    chars = np.frombuffer(text.encode("ascii"), dtype=np.uint8)
    ends, nruns, geometry, status = decode_rles_kernel(chars, char_start, heights)
    bad = np.flatnonzero((status[:, 1] != 0) | (status[:, 0] != heights * widths))
    if bad.size:
        i = int(bad[0])
        total, flags = (int(v) for v in status[i])
        why = ("a negative run" if flags & 1 else "a character outside pycocotools' alphabet ('0' to 'o')" if flags & 2
               else "a string cut in the middle of a value" if flags & 4
               else f"runs that add up to {total}, not H * W = {int(heights[i] * widths[i])}")
        raise ValueError(f"RLE {i} of {len(rles)} (size {[int(heights[i]), int(widths[i])]}): {why}")
    return ends, char_start[:-1], nruns, geometry


def _common_size(rles: Sequence[dict]) -> tuple[int, int]:
    """The one (H, W) a list of RLEs shares; ValueError naming the sizes when they differ."""
    first = rles[0]["size"]
    if any(r["size"] != first for r in rles):  # equal lists compare fast; a mix of list / tuple lands here
        sizes = {tuple(int(v) for v in r["size"]) for r in rles}
        if len(sizes) > 1:
            raise ValueError(f"the RLEs must share one size, got {sorted(sizes)}")
    return int(first[0]), int(first[1])


def rle_iou(rles1: Sequence[dict], rles2: Sequence[dict], iscrowd=None, *, backend: str = "auto"):
    """Pairwise IoU of two lists of RLEs, computed on the runs: (N, M) float64.

    Parameters
    ----------
    rles1, rles2 : lists of COCO RLE dicts of one size (compressed strings or uncompressed lists)
    iscrowd : (M,) bool, optional
        A crowd region of ``rles2`` is matched by the area of ``rles1``'s mask alone (COCO).

    Returns
    -------
    (N, M) float64 equal to pycocotools' ``mask.iou(rles1, rles2, iscrowd)``: 0 for disjoint or empty
    masks. "reference" decodes the masks and counts; "numba" walks the runs of each pair once.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.zeros((4, 4), bool); a[:2, :2] = True
    >>> b = np.zeros((4, 4), bool); b[:2] = True
    >>> rle_iou([mask_to_rle(a)], [mask_to_rle(b)], [False]).tolist(), rle_iou([mask_to_rle(a)], [mask_to_rle(b)], [True]).tolist()
    ([[0.5]], [[1.0]])
    """
    return _rle_pairs(rles1, rles2, iscrowd, backend)[1]


def rle_intersection(rles1: Sequence[dict], rles2: Sequence[dict], *, backend: str = "auto") -> np.ndarray:
    """Pairwise foreground pixels in common: (N, M) int64 (with :func:`rle_area`, every count IoU needs)."""
    return _rle_pairs(rles1, rles2, None, backend)[0]


def rle_counts(rles1: Sequence[dict], rles2: Sequence[dict], *, backend: str = "auto"):
    """Element-wise counts of two equally long lists of RLEs: ``rles1[i]`` against ``rles2[i]``.

    Each pair shares one size; pairs may differ (instances of different images). Returns
    ``(intersection, area1, area2)``, three (N,) int64 arrays, as :func:`maskrep.ops.mask_counts`
    gives for the decoded masks, so ``maskrep.ops.mask_iou``'s IoU follows without them.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.zeros((4, 4), bool); a[:2, :2] = True
    >>> b = np.zeros((4, 4), bool); b[:2] = True
    >>> c = np.zeros((5, 3), bool); c[1:3] = True
    >>> inter, area1, area2 = rle_counts([mask_to_rle(a), mask_to_rle(c)], [mask_to_rle(b), mask_to_rle(c)])
    >>> inter.tolist(), area1.tolist(), area2.tolist()
    ([4, 6], [4, 6], [8, 6])
    """
    from .._kernels import choose_backend

    n = len(rles1)
    if len(rles2) != n:
        raise ValueError(f"rles1 and rles2 must be equally long for element-wise counts, got {n} and {len(rles2)}")
    for i, (a, b) in enumerate(zip(rles1, rles2)):
        if [int(v) for v in a["size"]] != [int(v) for v in b["size"]]:
            raise ValueError(f"pair {i}: sizes differ, {list(a['size'])} and {list(b['size'])}")
    inter, area1, area2 = (np.zeros(n, dtype=np.int64) for _ in range(3))
    if n == 0:
        return inter, area1, area2
    if choose_backend(backend) == "numba":
        from .._kernels.numba_cpu import rle_counts_kernel

        sizes = np.array([check_size(r["size"]) for r in rles1], dtype=np.int64).reshape(-1, 2)
        heights, widths = np.tile(sizes[:, 0], 2), np.tile(sizes[:, 1], 2)
        ends, starts, nruns, geometry = _decoded([*rles1, *rles2], heights, widths)
        rle_counts_kernel(ends, starts, nruns, geometry, inter, area1, area2)
        return inter, area1, area2
    for i, (a, b) in enumerate(zip(rles1, rles2)):
        ma, mb = rle_to_mask(a), rle_to_mask(b)
        inter[i], area1[i], area2[i] = int((ma & mb).sum()), int(ma.sum()), int(mb.sum())
    return inter, area1, area2


def _rle_pairs(rles1, rles2, iscrowd, backend):
    from .._kernels import choose_backend

    n, m = len(rles1), len(rles2)
    crowd = np.zeros(m, dtype=bool) if iscrowd is None else np.asarray(iscrowd, dtype=bool).reshape(-1)
    if len(crowd) != m:
        raise ValueError(f"iscrowd must have one flag per mask of rles2 ({m}), got {len(crowd)}")
    inter = np.zeros((n, m), dtype=np.int64)
    iou = np.zeros((n, m), dtype=np.float64)
    if n == 0 and m == 0:
        return inter, iou
    both = [*rles1, *rles2]
    h, w = check_size(_common_size(both))
    if n == 0 or m == 0:
        return inter, iou
    if choose_backend(backend) == "numba":
        from .._kernels.numba_cpu import rle_iou_kernel

        ends, starts, nruns, geometry = _decoded(both, np.full(n + m, h, dtype=np.int64), np.full(n + m, w, dtype=np.int64))
        rle_iou_kernel(ends, starts, nruns, geometry, n, crowd, inter, iou)
        return inter, iou
    a, b = rle_to_mask(list(rles1)), rle_to_mask(list(rles2))
    af, bf = a.reshape(n, -1).astype(np.float64), b.reshape(m, -1).astype(np.float64)
    inter = (af @ bf.T).astype(np.int64)
    area_a, area_b = af.sum(1), bf.sum(1)
    union = np.where(crowd[None, :], area_a[:, None], area_a[:, None] + area_b[None, :] - inter)
    ok = (inter > 0) & (area_a[:, None] > 0) & (area_b[None, :] > 0)
    iou[ok] = inter[ok] / union[ok]
    return inter, iou


def _runs_to_rles(runs, slot_start, nruns, height: int, width: int) -> list[dict]:
    from .._kernels.numba_cpu import encode_runs_kernel

    bound = 7 * nruns  # a run of up to 2**32 - 1, or its difference, takes at most 7 characters
    char_start = np.zeros(len(nruns), dtype=np.int64)
    np.cumsum(bound[:-1], out=char_start[1:])
    chars = np.zeros(int(bound.sum()), dtype=np.uint8)
    nchars = np.zeros(len(nruns), dtype=np.int64)
    encode_runs_kernel(runs, slot_start, nruns, char_start, chars, nchars)
    data = chars.tobytes()
    return [{"size": [height, width], "counts": data[s : s + k].decode("ascii")}
            for s, k in zip(char_start.tolist(), nchars.tolist())]


def _runs_per_column(s: int) -> int:
    """Room for one pasted column's runs: bilinear along a column is linear between crop rows, so it
    crosses the threshold at most once per crop row (S + 1 segments); twice that, to spare."""
    return 2 * s + 8


def paste_masks_to_rle(mask_probs, boxes, image_size: tuple[int, int], *, threshold: float = MASK_THRESHOLD,
                       backend: str = "auto") -> list[dict]:
    """Paste box-frame maps into full images and return COCO RLEs, never holding the (N, H, W) masks.

    Parameters
    ----------
    mask_probs : ndarray or Tensor of shape (N, S, S)
    boxes : (N, 4) xyxy image pixels
    image_size : (H, W)
    threshold : float > 0

    Returns
    -------
    list of length N of ``{"size": [H, W], "counts": str}``, byte for byte pycocotools' encoding of
    :func:`maskrep.ops.paste_masks` (same taps, same arithmetic, same threshold). "numba" codes the
    runs straight from the crop: a bilinear cell wholly above or below the threshold is one stretch
    of each column, and only the pixels of cells the threshold crosses are computed (float32 maps are
    widened, not copied); "reference" pastes densely and encodes.

    Examples
    --------
    >>> import numpy as np
    >>> paste_masks_to_rle(np.ones((1, 2, 2)), np.array([[1.0, 1.0, 3.0, 2.0]]), (3, 4))
    [{'size': [3, 4], 'counts': '41202'}]
    """
    from .._array import to_numpy
    from .._kernels import choose_backend
    from .masks import _check_boxes, paste_masks

    if not threshold > 0:
        raise ValueError(f"threshold must be > 0 (pixels no crop reaches are 0), got {threshold}")
    probs = to_numpy(mask_probs)
    if probs.dtype not in (np.float32, np.float64):  # float32 is widened in the kernel: the same values
        probs = probs.astype(np.float64)
    if probs.ndim != 3 or probs.shape[1] != probs.shape[2]:
        raise ValueError(f"mask_probs must be (N, S, S), got shape {probs.shape}")
    boxes_np = _check_boxes(to_numpy(boxes, np.float64), probs.shape[0])
    h, w = check_size(image_size, "image")
    if choose_backend(backend) != "numba":
        return [mask_to_rle(m) for m in paste_masks(probs, boxes_np, (h, w), threshold=threshold, backend="reference")]
    import numba

    from .._kernels.numba_cpu import paste_rle_kernel

    threads = numba.get_num_threads()
    probs, boxes_np = np.ascontiguousarray(probs), np.ascontiguousarray(boxes_np)
    chars, offsets, overflow = paste_rle_kernel(probs, boxes_np, h, w, float(threshold),
                                                 _runs_per_column(probs.shape[1]), threads)
    text = chars.tobytes().decode("ascii")
    bounds = offsets.tolist()
    out = [{"size": [h, w], "counts": text[a:b]} for a, b in pairwise(bounds)]
    if overflow.any():
        for i in np.flatnonzero(overflow).tolist():  # a pathological map: redo it with room for every pixel
            one, _, _ = paste_rle_kernel(probs[i : i + 1], boxes_np[i : i + 1], h, w, float(threshold), h + 2, 1)
            out[i]["counts"] = one.tobytes().decode("ascii")
    return out


def polygons_to_rle(polygons: Sequence[Sequence], height: int, width: int, *, backend: str = "auto") -> list[dict]:
    """Each instance's polygons (image coordinates) as a COCO RLE, without rasterising the image.

    Byte for byte pycocotools' ``merge(frPyObjects(polygons, H, W))`` (its polygon rule,
    :mod:`maskrep.ops.polygons`). Returns a list of length N of ``{"size": [H, W], "counts": str}``.

    Examples
    --------
    >>> polygons_to_rle([[[1, 1, 3, 1, 3, 3, 1, 3]]], 4, 4)
    [{'size': [4, 4], 'counts': '52203'}]
    """
    from .._kernels import choose_backend
    from .masks import _flatten_polygons, polygons_to_masks

    h, w = check_size((height, width), "image")
    if choose_backend(backend) != "numba":
        return [mask_to_rle(m) for m in polygons_to_masks(polygons, h, w, backend="reference")]
    from .._kernels.numba_cpu import polygon_rle_bounds, polygons_to_rle_kernel

    verts, poly_start, inst_start = _flatten_polygons(polygons)
    n = len(polygons)
    bounds = np.zeros(n, dtype=np.int64)
    polygon_rle_bounds(verts, poly_start, inst_start, w, bounds)
    slot_start = np.zeros(n, dtype=np.int64)
    np.cumsum(bounds[:-1], out=slot_start[1:])
    runs = np.zeros(int(bounds.sum()), dtype=np.int64)
    nruns = np.zeros(n, dtype=np.int64)
    polygons_to_rle_kernel(verts, poly_start, inst_start, h, w, slot_start, runs, nruns)
    return _runs_to_rles(runs, slot_start, nruns, h, w)
