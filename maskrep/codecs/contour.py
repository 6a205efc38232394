"""Contour codecs: a mask as its outer boundary, not as a grid of pixels.

* ``polar``: distances along K fixed rays from the mask's centre, in the manner of PolarMask
  (Xie et al., "PolarMask: Single Shot Instance Segmentation with Polar Representation",
  arXiv:1909.13226). K + 2 numbers.
* ``contour``: the outer boundary as K vertices in box-normalised coordinates (2K numbers), placed
  at equal arc length ("uniform"), kept where the shape turns ("adaptive", Visvalingam-Whyatt
  simplification), or as the K lowest-frequency Fourier descriptors of the closed curve ("fourier").

Both trace the crop's boundary (:func:`maskrep.ops.outer_contours`: the outer boundary of the largest
part, through the midpoints between pixel centres), so what they keep is a polygon with sub-pixel
vertices: it can be filled at any resolution, including straight into the full image at the
instance's box (:meth:`ContourCodecBase.paste_rle`, pycocotools' polygon rule, the rule COCO's
ground truth is made with). Neither can express a hole or a second part: a hole is filled, and of
several parts only the one of largest area is kept.

Coordinates: a crop covers its box as S x S pixels; vertex (x, y) in crop pixels is
(x0 + x / S * (x1 - x0), y0 + y / S * (y1 - y0)) in the image. Codes are in box units (crop pixels
divided by S), so one code means one shape whatever S it was traced at.
"""

from __future__ import annotations

import heapq
import math

import numpy as np
import torch

from .._array import to_numpy
from .._kernels import choose_backend
from ..ops.contours import outer_contours
from ..ops.masks import MASK_THRESHOLD
from .base import CodecModule, MaskCodec, check_int

__all__ = ["ContourCodec", "PolarCodec", "polygon_logits", "simplify_polygon"]

#: logit per crop pixel of signed distance in the soft (differentiable) fill
SHARPNESS = 2.0


# ---- geometry on one (P, 2) loop ----------------------------------------------------------------------

def _centroid(loop: np.ndarray) -> np.ndarray:
    """Area centroid of a closed polygon with positive area; the vertex mean if degenerate."""
    x, y = loop[:, 0], loop[:, 1]
    xn, yn = np.roll(x, -1), np.roll(y, -1)
    cross = x * yn - xn * y
    area = cross.sum() / 2
    if abs(area) < 1e-12:
        return loop.mean(0)
    return np.array([((x + xn) * cross).sum(), ((y + yn) * cross).sum()]) / (6 * area)


def _ray_hits(loop: np.ndarray, centre: np.ndarray, angles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per ray from ``centre`` at ``angles`` (radians, 0 = +x, increasing clockwise on screen), the
    distance to the farthest boundary crossing (0 when the ray misses) and the crossing's arc
    position along the loop (in segments: index + fraction)."""
    a = loop
    d = np.roll(loop, -1, axis=0) - a  # (P, 2) segment vectors
    r = np.stack([np.cos(angles), np.sin(angles)], 1)  # (K, 2)
    ac = a - centre  # (P, 2)
    denom = r[:, None, 0] * d[None, :, 1] - r[:, None, 1] * d[None, :, 0]  # (K, P): r x d
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (ac[None, :, 0] * d[None, :, 1] - ac[None, :, 1] * d[None, :, 0]) / denom  # along the ray
        u = (ac[None, :, 0] * r[:, None, 1] - ac[None, :, 1] * r[:, None, 0]) / denom  # along the segment
    hit = (denom != 0) & (t >= 0) & (u >= 0) & (u < 1)
    t = np.where(hit, t, -1.0)
    best = np.argmax(t, axis=1)  # (K,)
    dist = np.maximum(t[np.arange(len(angles)), best], 0.0)
    pos = best + np.where(hit[np.arange(len(angles)), best], u[np.arange(len(angles)), best], 0.0)
    return dist, pos


def _top_position(loop: np.ndarray) -> float:
    """Arc position (segments) where the ray straight up from the centroid leaves the shape: the
    codes' fixed starting point, so that one shape always gives one code."""
    _, pos = _ray_hits(loop, _centroid(loop), np.array([-np.pi / 2]))
    return float(pos[0])


def _resample(loop: np.ndarray, count: int, start: float) -> np.ndarray:
    """``count`` points at equal arc length along the closed loop, the first at arc position ``start``."""
    seg = np.linalg.norm(np.roll(loop, -1, axis=0) - loop, axis=1)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    total = cum[-1]
    i = int(start) % len(loop)
    s0 = cum[i] + (start - int(start)) * seg[i]
    s = (s0 + total * np.arange(count) / count) % total
    k = np.clip(np.searchsorted(cum, s, side="right") - 1, 0, len(loop) - 1)
    frac = np.where(seg[k] > 0, (s - cum[k]) / np.where(seg[k] > 0, seg[k], 1), 0.0)
    return loop[k] + frac[:, None] * (np.roll(loop, -1, axis=0)[k] - loop[k])


def _triangle_area(p: np.ndarray, q: np.ndarray, r: np.ndarray) -> float:
    return abs((p[0] - q[0]) * (r[1] - q[1]) - (r[0] - q[0]) * (p[1] - q[1])) * 0.5


def simplify_polygon(loop: np.ndarray, count: int, *, backend: str = "auto") -> np.ndarray:
    """Visvalingam-Whyatt: drop the vertex whose triangle with its neighbours has the least area,
    again and again, until ``count`` remain; (count, 2), in the loop's order from its lowest kept index.

    The vertices that carry the shape (corners, tips) stay; those along straight or gently curved
    stretches go first. Ties go to the lower index. A loop of ``count`` vertices or fewer is
    resampled at equal arc length instead. "reference" keeps a heap, "numba" rescans (same result).
    """
    from .._kernels import choose_backend

    loop = np.ascontiguousarray(loop, dtype=np.float64)
    p = len(loop)
    if p <= count:
        return _resample(loop, count, 0.0) if p else np.zeros((count, 2))
    if choose_backend(backend) == "numba":
        from .._kernels.numba_cpu import simplify_polygon_kernel

        keep = np.zeros(p, dtype=np.bool_)
        simplify_polygon_kernel(loop, count, keep)
        return loop[keep]
    prev, nxt = list(range(-1, p - 1)), [*range(1, p), 0]
    prev[0] = p - 1
    alive = [True] * p
    area = [_triangle_area(loop[prev[i]], loop[i], loop[nxt[i]]) for i in range(p)]
    heap = [(area[i], i) for i in range(p)]
    heapq.heapify(heap)
    remaining = p
    while remaining > count:
        a, i = heapq.heappop(heap)
        if not alive[i] or a != area[i]:
            continue  # a stale entry
        alive[i] = False
        remaining -= 1
        pi, ni = prev[i], nxt[i]
        nxt[pi], prev[ni] = ni, pi
        for j in (pi, ni):
            area[j] = _triangle_area(loop[prev[j]], loop[j], loop[nxt[j]])
            heapq.heappush(heap, (area[j], j))
    return loop[np.array(alive)]


# ---- the soft fill: polygons -> logits, differentiable in the vertices ------------------------------

def polygon_logits(vertices: torch.Tensor, size: int, *, sharpness: float = SHARPNESS, chunk: int = 64) -> torch.Tensor:
    """Fill closed polygons softly: logit = sharpness x signed distance (crop pixels) of each pixel
    centre to the boundary, positive inside (even-odd rule at pixel centres).

    vertices : (N, P, 2) (x, y) in crop pixels. Returns (N, S, S) logits; thresholding the sigmoid at
    0.5 fills the polygon at pixel centres. Differentiable in ``vertices`` (the distance; the
    inside test only picks the sign, and the distance is 0 where it flips).
    """
    n = vertices.shape[0]
    dtype, device = vertices.dtype, vertices.device
    c = torch.arange(size, dtype=dtype, device=device) + 0.5
    py, px = torch.meshgrid(c, c, indexing="ij")
    pts = torch.stack([px.reshape(-1), py.reshape(-1)], -1)  # (S*S, 2)
    out = []
    for start in range(0, n, chunk):
        a = vertices[start : start + chunk]  # (n, P, 2)
        b = torch.roll(a, -1, dims=1)
        d = b - a
        pa = pts[None, :, None, :] - a[:, None, :, :]  # (n, S*S, P, 2)
        len2 = (d * d).sum(-1).clamp_min(1e-12)[:, None, :]  # (n, 1, P)
        t = ((pa * d[:, None]).sum(-1) / len2).clamp(0, 1)
        diff = pa - t[..., None] * d[:, None]
        dist = torch.sqrt((diff * diff).sum(-1).amin(-1) + 1e-12)  # (n, S*S)
        ay, by = a[:, None, :, 1], b[:, None, :, 1]
        qx, qy = pts[None, :, None, 0], pts[None, :, None, 1]
        straddle = (ay > qy) != (by > qy)
        dy = torch.where(straddle, by - ay, torch.ones_like(by - ay))
        x_cross = a[:, None, :, 0] + (qy - ay) * (b[:, None, :, 0] - a[:, None, :, 0]) / dy
        inside = ((straddle & (qx < x_cross)).sum(-1) % 2) == 1
        out.append((torch.where(inside, dist, -dist) * sharpness).reshape(-1, size, size))
    if not out:
        return vertices.new_zeros((0, size, size))
    return torch.cat(out)


# ---- the codecs ----------------------------------------------------------------------------------------

class ContourModule(CodecModule):
    """Torch form of the contour codecs: decodes codes to polygons, then fills them softly."""

    logit_space = True

    def __init__(self, codec: ContourCodecBase):
        super().__init__()
        self.codec, self.mask_size = codec, codec.mask_size

    def encode(self, masks: torch.Tensor) -> torch.Tensor:
        codes = self.codec.encode_numpy(masks.detach().cpu().numpy())
        return torch.from_numpy(codes).to(masks.device)

    def polygons(self, codes: torch.Tensor) -> torch.Tensor:
        """(N, D) -> (N, P, 2) vertices in box units (differentiable)."""
        return self.codec.polygons_torch(codes)

    def decode_logits(self, codes: torch.Tensor) -> torch.Tensor:
        verts = self.polygons(codes) * self.mask_size  # (N, P, 2) crop pixels
        if verts.requires_grad or verts.device.type != "cpu" or choose_backend("auto") != "numba":
            return polygon_logits(verts, self.mask_size)
        from .._kernels.numba_cpu import polygon_logits_kernel  # no gradient wanted: the same values, faster

        v = verts.detach().numpy().astype(np.float64)
        out = np.empty((len(v), self.mask_size, self.mask_size))
        polygon_logits_kernel(np.ascontiguousarray(v), self.mask_size, SHARPNESS, out)
        return torch.from_numpy(out).to(codes.dtype)

    def activate(self, values: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(values)


class ContourCodecBase(MaskCodec):
    """Shared by the contour codecs: encoding goes through the traced outer boundary (numpy),
    decoding through a polygon (torch, differentiable), and pasting fills the polygon in the image."""

    capabilities = frozenset({"paste"})

    def encode_numpy(self, masks: np.ndarray) -> np.ndarray:
        """(N, S, S) bool -> (N, D) float32 codes."""
        loops = outer_contours(masks)
        out = np.zeros((len(loops), self.code_length), dtype=np.float32)
        for i, loop in enumerate(loops):
            if len(loop):
                out[i] = self._encode_loop(loop / self.mask_size)
            else:
                out[i] = self._empty_code()
        return out

    def _encode_loop(self, loop: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _empty_code(self) -> np.ndarray:
        return np.full(self.code_length, 0.5)

    def polygons_torch(self, codes: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def decode_polygons(self, codes) -> np.ndarray:
        """(N, D) codes -> (N, P, 2) float64 polygon vertices in box units ([0, 1] spans the box)."""
        t = torch.as_tensor(to_numpy(codes, np.float64))
        if t.ndim != 2 or t.shape[1] != self.code_length:
            raise ValueError(f"codes must be (N, {self.code_length}), got shape {tuple(t.shape)}")
        return self.polygons_torch(t).numpy()

    def paste_rle(self, codes, boxes, image_size: tuple[int, int], *, threshold: float = MASK_THRESHOLD) -> list[dict]:
        """The decoded polygons filled straight into the full image (pycocotools' polygon rule), as
        COCO RLEs; no S x S map is resampled. ``threshold`` is not used (a polygon has no values)."""
        from ..ops.rle import polygons_to_rle

        polys = self.decode_polygons(codes)  # (N, P, 2) box units
        b = to_numpy(boxes, np.float64).reshape(-1, 4)
        if len(b) != len(polys):
            raise ValueError(f"boxes must be ({len(polys)}, 4), got shape {b.shape}")
        image = b[:, None, :2] + polys * (b[:, None, 2:] - b[:, None, :2])
        return polygons_to_rle([[p] for p in image], *image_size)

    def _build_module(self) -> ContourModule:
        return ContourModule(self)


class PolarCodec(ContourCodecBase):
    """Polar representation (PolarMask): code = (cx, cy, d_1, ..., d_K) in box units, the centre and
    the distances from it to the boundary along K rays at angles 2 pi k / K (k = 0: along +x, then
    clockwise on screen).

    Encoding: the centre is the area centroid of the outer boundary of the crop's largest part;
    along each ray the distance is to the farthest boundary crossing (PolarMask keeps the
    largest distance too), 0 when the ray misses. Decoding joins the K ray ends into a polygon.

    What it cannot express: anything but a star-shaped region around its centre. A hole is filled;
    a second part is dropped; a concavity a ray crosses twice is filled up to the far crossing.

    Deliberate differences from PolarMask: the centre is the largest part's centroid (PolarMask: the
    mask's mass centre, which can fall outside a part), and the rays are spaced evenly in the box's
    frame (box units), not in image pixels, so a code does not depend on the box's aspect.

    Parameters
    ----------
    mask_size : S, the crop the boundary is traced on.
    rays : K, the number of rays (PolarMask: 36); the code has K + 2 numbers.

    Examples
    --------
    >>> m = np.zeros((1, 32, 32), bool); m[0, 8:24, 4:28] = True
    >>> codec = PolarCodec(mask_size=32, rays=8)
    >>> code = codec.encode(m)
    >>> [round(float(v), 3) for v in code[0, :4]]  # centre, then the rays along +x and at 45 degrees
    [0.5, 0.5, 0.375, 0.354]
    >>> round(float((codec.decode(code)[0] >= 0.5).sum() / m.sum()), 3)  # 8 rays: an octagon inside
    0.833
    """

    name = "polar"

    def __init__(self, *, mask_size: int = 64, rays: int = 36):
        mask_size = check_int("mask_size", mask_size, 2)
        rays = check_int("rays", rays, 3)
        super().__init__(mask_size=mask_size, rays=rays)
        self.rays = rays
        self.angles = 2 * np.pi * np.arange(rays) / rays

    @property
    def code_length(self) -> int:
        return self.rays + 2

    def _encode_loop(self, loop: np.ndarray) -> np.ndarray:
        centre = _centroid(loop)
        dist, _ = _ray_hits(loop, centre, self.angles)
        return np.concatenate([centre, dist])

    def _empty_code(self) -> np.ndarray:
        return np.concatenate([[0.5, 0.5], np.zeros(self.rays)])

    def polygons_torch(self, codes: torch.Tensor) -> torch.Tensor:
        ang = torch.as_tensor(self.angles, dtype=codes.dtype, device=codes.device)
        direction = torch.stack([torch.cos(ang), torch.sin(ang)], -1)  # (K, 2)
        return codes[:, None, :2] + codes[:, 2:, None] * direction  # (N, K, 2)


CONTOUR_MODES = ("adaptive", "uniform", "fourier")


class ContourCodec(ContourCodecBase):
    """The outer boundary as a closed curve of D numbers (box units).

    Parameters
    ----------
    mask_size : int
        S, the crop the boundary is traced on (finer: more exact vertices).
    dim : int
        D, even: K = D / 2 vertices, or D / 2 complex Fourier coefficients.
    mode : {"adaptive", "uniform", "fourier"}
        "adaptive" (default): K of the traced vertices, those that carry the shape
        (:func:`simplify_polygon`); "uniform": K points at equal arc length; "fourier": the closed
        curve z(t) = x(t) + i y(t), resampled at equal arc length, as its K lowest-frequency
        Fourier coefficients (frequencies 0, 1, -1, 2, -2, ...; real and imaginary parts), decoded
        to a polygon of max(4K, 64) points.

    Every mode starts the curve where the ray straight up from the centroid leaves the shape and
    runs clockwise on screen, so one shape gives one code. What it cannot express: a hole (filled)
    or a second part (only the part of largest area is kept).

    Examples
    --------
    >>> m = np.zeros((1, 16, 16), bool); m[0, 4:12, 2:14] = True
    >>> codec = ContourCodec(mask_size=16, dim=8)
    >>> codec.decode_polygons(codec.encode(m))[0] * 16  # the rectangle's corners (traced half a pixel in)
    array([[ 2.5,  4. ],
           [13.5,  4. ],
           [13.5, 12. ],
           [ 2.5, 12. ]])
    """

    name = "contour"

    def __init__(self, *, mask_size: int = 64, dim: int = 60, mode: str = "adaptive"):
        mask_size = check_int("mask_size", mask_size, 2)
        dim = check_int("dim", dim, 6)
        if dim % 2:
            raise ValueError(f"dim must be even (x and y per vertex, or real and imaginary parts), got {dim}")
        if mode not in CONTOUR_MODES:
            raise ValueError(f"mode must be one of {', '.join(CONTOUR_MODES)}, got {mode!r}")
        super().__init__(mask_size=mask_size, dim=dim, mode=mode)
        self.dim, self.mode, self.k = dim, mode, dim // 2
        self.samples = max(4 * self.k, 64)  # points of the resampled curve, for "fourier"
        freqs = [0]
        for f in range(1, self.k):
            freqs += [f, -f]
        self.freqs = np.array(freqs[: self.k])

    @property
    def code_length(self) -> int:
        return self.dim

    def _encode_loop(self, loop: np.ndarray) -> np.ndarray:
        start = _top_position(loop)
        if self.mode == "uniform":
            pts = _resample(loop, self.k, start)
        elif self.mode == "adaptive":
            pts = simplify_polygon(loop, self.k)
            top = loop[int(start) % len(loop)] + (start % 1) * (loop[(int(start) + 1) % len(loop)] - loop[int(start) % len(loop)])
            first = int(np.argmin(((pts - top) ** 2).sum(1)))
            pts = np.roll(pts, -first, axis=0)
        else:
            curve = _resample(loop, self.samples, start)
            spectrum = np.fft.fft(curve[:, 0] + 1j * curve[:, 1]) / self.samples
            coeffs = spectrum[self.freqs % self.samples]
            pts = np.stack([coeffs.real, coeffs.imag], 1)
        return pts.reshape(-1)

    def _empty_code(self) -> np.ndarray:
        if self.mode == "fourier":  # the curve's mean at the box centre, no extent
            return np.concatenate([[0.5, 0.5], np.zeros(self.dim - 2)])
        return super()._empty_code()

    def polygons_torch(self, codes: torch.Tensor) -> torch.Tensor:
        pairs = codes.reshape(codes.shape[0], self.k, 2)
        if self.mode != "fourier":
            return pairs
        t = torch.arange(self.samples, dtype=codes.dtype, device=codes.device) / self.samples
        phase = 2 * math.pi * torch.as_tensor(self.freqs, dtype=codes.dtype, device=codes.device)[:, None] * t  # (K, Q)
        cos, sin = torch.cos(phase), torch.sin(phase)
        re, im = pairs[..., 0], pairs[..., 1]  # (N, K)
        x = re @ cos - im @ sin  # Re(sum c_f e^{i phase})
        y = re @ sin + im @ cos
        return torch.stack([x, y], -1)  # (N, Q, 2)

