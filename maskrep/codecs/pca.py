"""MEInst: PCA mask encoding (Zhang et al., arXiv:2003.11712).

A mask crop u (S*S,) is encoded as v = (u - mean) C^T / sqrt(lambda) (whitened) and decoded as
u~ = v (sqrt(lambda) C) + mean, then sigmoid (``sigmoid=True``) or clamp to [0.01, 0.99].
With ``sigmoid=True`` the PCA runs in logit space: a binary mask becomes
u = logit(1 - eps) on the object and logit(eps) off it.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Callable, Iterable

import numpy as np
import torch

from ..distributed import all_reduce_sum
from .base import CodecModule, MaskCodec, check_int, read_npz

__all__ = ["MEAN_JITTER_LOGIT", "PCACodec", "PCAModule", "jitter_logits"]


def jitter_logits(masks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """MEInst's sigmoid target with its jitter: (N, S*S) float32 logits of (1 - eps) / eps.

    eps = max(0.05 * U[0, 1), 0.01) per element: a 20% point mass at 0.01, else U[0.01, 0.05).
    """
    x = rng.random(masks.shape, dtype=np.float32)  # in place from here: the values of
    x *= np.float32(0.05)  # log(x / (1 - x)) with x = where(masks, 1 - eps, eps), in fewer passes
    np.maximum(x, np.float32(0.01), out=x)  # eps
    np.subtract(np.float32(1), x, out=x, where=np.asarray(masks, dtype=bool))
    x /= np.float32(1) - x
    return np.log(x, out=x)


def _jitter_logit_moment(power: int) -> float:
    """E[logit(1 - eps)^power] under the jitter: a 20% point mass at eps = 0.01, U[0.01, 0.05) else."""
    grid = np.linspace(0.01, 0.05, 200001)
    uniform_part = np.trapezoid(np.log((1 - grid) / grid) ** power, grid) / 0.04
    return float(0.2 * np.log(0.99 / 0.01) ** power + 0.8 * uniform_part)


#: Foreground logit used by the deterministic encoder (background is its negative); about 3.70.
MEAN_JITTER_LOGIT = _jitter_logit_moment(1)
#: E[l^2] of the jittered logit magnitude l, for the "expected" jitter fit.
SECOND_MOMENT_JITTER_LOGIT = _jitter_logit_moment(2)

#: how the sigmoid jitter enters the fit
JITTER_MODES = ("expected", "sample", "none")


def _binary_stats(chunks: Iterable[np.ndarray], d: int, progress: Callable | None) -> tuple[int, np.ndarray, np.ndarray]:
    """(n, sum b (D,) int64, sum b b^T (D, D) int64) of (n_i, S, S) bool chunks: exact integers, the
    co-occurrences by an int8 matrix product with int32 results (``torch._int_mm``; the AMX / VNNI
    units where the processor has them), else a float32 product of 0/1 values, exact below 2**24
    rows a product. The pixel counts are the co-occurrences' diagonal (b * b = b)."""
    n, cooc = 0, np.zeros((d, d), dtype=np.int64)
    for chunk in chunks:
        b = np.ascontiguousarray(chunk.reshape(chunk.shape[0], -1))  # (n_i, D) bool
        cooc += _cooccurrences(b)
        n += b.shape[0]
        if progress is not None:
            progress(b.shape[0])
    return n, np.diagonal(cooc).copy(), cooc


def _cooccurrences(b: np.ndarray) -> np.ndarray:
    """b^T b of an (n, D) bool array as (D, D) int64, exactly (int32 sums: n < 2**31)."""
    n, d = b.shape
    t = torch.from_numpy(b.view(np.int8))
    pad_n, pad_d = -n % 8, -d % 8  # the int8 product wants multiples of 8; zero rows and columns add nothing
    if pad_n or pad_d:
        t = torch.nn.functional.pad(t, (0, pad_d, 0, pad_n))
    try:
        # the transposed view, not a transposed copy: the product reads either layout, and the copy
        # would cost as much as the product
        return torch._int_mm(t.t(), t)[:d, :d].numpy().astype(np.int64)
    except (RuntimeError, AttributeError):  # no int8 product on this build
        out = np.zeros((d, d), dtype=np.int64)
        for start in range(0, n, 2**24):  # float32 sums of 0/1 stay exact below 2**24
            f = torch.from_numpy(b[start : start + 2**24]).to(torch.float32)
            out += (f.t() @ f).numpy().astype(np.int64)
        return out


def _sampled_stats(chunks: Iterable[np.ndarray], d: int, rng: np.random.Generator, progress: Callable | None):
    """(n, sum u, sum u u^T) float64 of freshly jittered logit vectors (MEInst's one draw): float32
    products per chunk, float64 running sums."""
    n, total, outer = 0, np.zeros(d, dtype=np.float64), np.zeros((d, d), dtype=np.float64)
    for chunk in chunks:
        u = torch.from_numpy(jitter_logits(chunk.reshape(chunk.shape[0], -1), rng))  # (n_i, D) float32
        total += u.sum(0, dtype=torch.float64).numpy()
        outer += (u.t() @ u).numpy().astype(np.float64)
        n += u.shape[0]
        if progress is not None:
            progress(u.shape[0])
    return n, total, outer


class PCAModule(CodecModule):
    """Torch form of :class:`PCACodec`: buffers ``components`` (K, S*S), ``mean`` (S*S,), ``scale`` (K,)."""

    def __init__(self, components: np.ndarray, mean: np.ndarray, explained_variance: np.ndarray, *,
                 mask_size: int, whiten: bool, sigmoid: bool):
        super().__init__()
        self.mask_size, self.sigmoid = mask_size, sigmoid
        scale = np.sqrt(explained_variance) if whiten else np.ones_like(explained_variance)
        self.register_buffer("components", torch.as_tensor(components, dtype=torch.float32))
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float32))

    def targets(self, masks: torch.Tensor) -> torch.Tensor:
        """(N, S, S) bool -> (N, S*S) the vectors the PCA was fitted on (no jitter)."""
        u = masks.reshape(masks.shape[0], self.mask_size * self.mask_size).to(self.mean.dtype)  # (N, S*S)
        return (2 * u - 1) * MEAN_JITTER_LOGIT if self.sigmoid else u

    @property
    def logit_space(self) -> bool:
        return self.sigmoid

    def jittered_targets(self, masks: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """(N, S, S) bool -> (N, K) codes of freshly jittered logits: MEInst's training targets,
        redrawn at every call (eps = max(0.05 U[0, 1), 0.01) per pixel, from ``generator``)."""
        flat = masks.reshape(masks.shape[0], -1)  # (N, S*S)
        eps = (0.05 * torch.rand(flat.shape, generator=generator, device=flat.device)).clamp(min=0.01)
        x = torch.where(flat, 1 - eps, eps)
        return self.project(torch.log(x / (1 - x)).to(self.mean.dtype))

    def project(self, vectors: torch.Tensor) -> torch.Tensor:
        """(N, S*S) fitting-space vectors -> (N, K) codes."""
        return (vectors - self.mean) @ self.components.T / self.scale  # (N, K)

    def encode(self, masks: torch.Tensor) -> torch.Tensor:
        return self.project(self.targets(masks))

    def decode_logits(self, codes: torch.Tensor) -> torch.Tensor:
        u = (codes * self.scale) @ self.components + self.mean  # (N, S*S)
        return u.reshape(-1, self.mask_size, self.mask_size)  # (N, S, S)

    def activate(self, values: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(values) if self.sigmoid else values.clamp(0.01, 0.99)


class PCACodec(MaskCodec):
    """MEInst's PCA encoding, fitted exactly from a streamed covariance.

    Parameters
    ----------
    mask_size : int
        S (MEInst: 28).
    dim : int
        K, the code length (MEInst: 60).
    whiten : bool
        Divide codes by sqrt(explained variance), so each has unit variance.
    sigmoid : bool
        Fit and decode in logit space (MEInst default) instead of on the 0/1 mask.
    jitter : {"expected", "sample", "none"} or None
        How MEInst's random eps enters the fit (``sigmoid`` only). "expected" (default): its
        expectation, exactly, from the binary crops' pixel counts and co-occurrences and the
        jitter's known moments (no random numbers, and the fastest fit); "sample": one draw per
        element, as MEInst fits (seeded); "none": the mean jittered logit, no jitter. True and False
        (older files) mean "sample" and "none". None: unknown (a matrix fitted elsewhere, e.g.
        AdelaiDet's); such a codec cannot be refitted.
    seed : int or None
        Seed of the jitter generator: the same masks give the same matrix (None: unknown).

    Notes
    -----
    Fitting streams the sufficient statistics over chunks (exact integer counts of the binary crops,
    or float64 sums of sampled logits), then takes the top-K eigenvectors of the sample covariance
    (divisor n - 1, scikit-learn's convention). Under ``torchrun`` the statistics are summed over
    the processes, so each fits on its share of the masks and all get the same matrix. Each
    component's sign is fixed so that its largest-magnitude entry is positive. Memory is
    O(S^4) whatever the number of masks. Encoding is deterministic: it uses the mean jittered
    logit (:data:`MEAN_JITTER_LOGIT`), never a random draw.

    References
    ----------
    R. Zhang et al., "Mask Encoding for Single Shot Instance Segmentation", arXiv:2003.11712.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> masks = rng.random((200, 8, 8)) < 0.5
    >>> codec = PCACodec(mask_size=8, dim=10).fit(masks)
    >>> codec.encode(masks[:4]).shape
    (4, 10)
    """

    name = "pca"
    needs_fit = True

    def __init__(self, *, mask_size: int = 28, dim: int = 60, whiten: bool = True, sigmoid: bool = True,
                 jitter: str | bool | None = "expected", seed: int | None = 0):
        mask_size = check_int("mask_size", mask_size, 1)
        dim = check_int("dim", dim, 1, mask_size * mask_size)
        if isinstance(jitter, bool):
            jitter = "sample" if jitter else "none"
        if jitter is not None and jitter not in JITTER_MODES:
            raise ValueError(f"jitter must be one of {', '.join(JITTER_MODES)}, got {jitter!r}")
        seed = None if seed is None else int(seed)
        super().__init__(mask_size=mask_size, dim=int(dim), whiten=bool(whiten), sigmoid=bool(sigmoid),
                         jitter=jitter, seed=seed)
        self.dim, self.whiten, self.sigmoid = int(dim), bool(whiten), bool(sigmoid)
        self.jitter, self.seed = jitter, seed

    @property
    def code_length(self) -> int:
        return self.dim

    def _fit(self, chunks: Iterable[np.ndarray], progress: Callable | None) -> dict[str, np.ndarray]:
        if self.jitter is None or self.seed is None:
            raise ValueError("this PCA codec's fitting settings are unknown (jitter/seed None, a matrix fitted "
                             "elsewhere); build PCACodec(jitter=..., seed=...) to fit one")
        d = self.mask_size * self.mask_size
        if self.jitter == "sample" and self.sigmoid:  # a fit sharded over processes sums their statistics
            n, total, outer = _sampled_stats(chunks, d, np.random.default_rng(self.seed), progress)
            total, outer = all_reduce_sum(total), all_reduce_sum(outer)
            n = int(all_reduce_sum(np.array([n], dtype=np.int64))[0])
        else:  # exact integer statistics, summed before anything is rounded
            n, count, cooc = _binary_stats(chunks, d, progress)
            n = int(all_reduce_sum(np.array([n], dtype=np.int64))[0])
            n, total, outer = self._binary_moments(n, all_reduce_sum(count), all_reduce_sum(cooc))
        if n <= self.dim:
            raise ValueError(f"a PCA with dim={self.dim} needs more than {self.dim} masks to fit (the centred data of "
                             f"n masks has rank at most n - 1), got {n}")
        mean = total / n
        cov = (outer - n * np.outer(mean, mean)) / (n - 1)  # (S*S, S*S)
        return self._decompose(mean, cov, n)

    def _binary_moments(self, n: int, count: np.ndarray, cooc: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
        """(n, sum u, sum u u^T) in float64 from the binary crops' exact statistics: the pixel counts
        ``count`` = sum b (D,) and co-occurrences ``cooc`` = sum b b^T (D, D), both int64.

        With u = b (no sigmoid) they are the statistics. In logit space u = s l with s = 2 b - 1
        and l the jittered logit magnitude: "none" fixes l to the mean jittered logit L, "expected"
        takes the jitter's expectation over its known distribution (mean m1 = L, second moment m2):
        E[sum u] = m1 sum s and E[sum u u^T] = m1^2 sum s s^T + (m2 - m1^2) n I, the limit of
        fitting on ever more independent jitter draws (``"sample"`` draws one, as MEInst does).
        """
        count, cooc = count.astype(np.float64), cooc.astype(np.float64)
        if not self.sigmoid:
            return n, count, cooc
        sum_s = 2 * count - n  # (D,)
        sum_ss = 4 * cooc - 2 * count[:, None] - 2 * count[None, :] + n  # (D, D)
        m1 = MEAN_JITTER_LOGIT
        if self.jitter == "none":
            return n, m1 * sum_s, m1 * m1 * sum_ss
        return n, m1 * sum_s, m1 * m1 * sum_ss + (SECOND_MOMENT_JITTER_LOGIT - m1 * m1) * n * np.eye(len(count))

    def _decompose(self, mean: np.ndarray, cov: np.ndarray, n: int) -> dict[str, np.ndarray]:
        from scipy.linalg import eigh

        d = len(cov)  # only the top K eigenpairs are computed (LAPACK's subset solver), ascending
        eigvals, eigvecs = eigh(cov, subset_by_index=[d - self.dim, d - 1])
        order = np.argsort(eigvals)[::-1]
        components = eigvecs[:, order].T  # (K, S*S)
        lead = np.argmax(np.abs(components), axis=1)
        components *= np.sign(components[np.arange(self.dim), lead])[:, None]
        variance = np.maximum(eigvals[order], 0.0)
        flat = int((variance <= 1e-9 * max(float(variance.max()), 1e-300)).sum())
        if flat:
            warnings.warn(f"{flat} of the {self.dim} PCA components have (close to) zero variance on these {n} masks: "
                          "their codes carry no information; fit on more masks or lower dim", stacklevel=3)
        trace = max(float(np.trace(cov)), 1e-300)
        # a zero-variance component (K above the data's rank) whitens with scale 1, never 0
        safe_variance = np.where(variance > 0, variance, 1.0)
        return {
            "components": components.astype(np.float32),
            "mean": mean.astype(np.float32),
            "explained_variance": safe_variance.astype(np.float32),
            "ratio": (variance / trace).astype(np.float32),
        }

    def _build_module(self) -> PCAModule:
        s = self._state
        return PCAModule(s["components"], s["mean"], s["explained_variance"], mask_size=self.mask_size,
                         whiten=self.whiten, sigmoid=self.sigmoid)

    # ---- AdelaiDet's .npz layout: components_c (1, K, S*S), mean_c (1, S*S), ratio_c (1, K),
    # ---- explained_variance_c (1, K), float32. maskrep's own file is exactly that plus a header.

    def _arrays_for_file(self) -> dict[str, np.ndarray]:
        s = self._state
        return {
            "components_c": s["components"][None].astype(np.float32),
            "mean_c": s["mean"][None].astype(np.float32),
            "ratio_c": s["ratio"][None].astype(np.float32),
            "explained_variance_c": s["explained_variance"][None].astype(np.float32),
        }

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        if "components_c" in state:
            state = {"components": state["components_c"][0], "mean": state["mean_c"][0],
                     "ratio": state["ratio_c"][0], "explained_variance": state["explained_variance_c"][0]}
        k, d = self.dim, self.mask_size ** 2
        for key, shape in (("components", (k, d)), ("mean", (d,)), ("explained_variance", (k,)), ("ratio", (k,))):
            if key not in state:
                raise ValueError(f"the PCA state has no {key!r} array")
            if np.shape(state[key]) != shape:
                raise ValueError(f"{key} has shape {np.shape(state[key])}, expected {shape}")
        if not (np.asarray(state["explained_variance"]) > 0).all():
            raise ValueError("explained_variance must be positive (it whitens the codes)")
        super().load_state_dict({key: np.asarray(v, dtype=np.float32) for key, v in state.items()})

    @property
    def capabilities(self) -> frozenset:
        """"jitter" in logit space (``sigmoid=True``): :meth:`encode_jittered` and the module's
        ``jittered_targets``."""
        return frozenset({"jitter"}) if self.sigmoid else frozenset()

    def encode_jittered(self, masks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(N, S, S) bool -> (N, K) codes of freshly jittered logits, as MEInst's own evaluation
        (and its training targets) encode them; :meth:`encode` uses the mean jittered logit instead."""
        if not self.sigmoid:
            raise ValueError("the jitter is part of the sigmoid target; this codec has sigmoid=False")
        self._check_masks(masks)
        u = torch.from_numpy(jitter_logits(np.asarray(masks).reshape(len(masks), -1), rng))  # (N, S*S)
        module = self.module().to("cpu")
        with torch.no_grad():
            return (module.project(u)).numpy()

    def save_adelaidet(self, path: str) -> None:
        """Write AdelaiDet's four-array ``.npz`` (no maskrep header), as ``np.savez`` does there."""
        np.savez(path, **self._arrays_for_file())

    @classmethod
    def load_adelaidet(cls, path: str | os.PathLike, *, whiten: bool | None = None,
                       sigmoid: bool | None = None) -> PCACodec:
        """Read an AdelaiDet matrix file (MEInst's ``components_c``, ``mean_c``,
        ``explained_variance_c`` and ``ratio_c``, no maskrep header).

        S and K come from the arrays' shapes. The file stores no flags: AdelaiDet's file name says
        them (``..._whitenTrue_sigmoidTrue_60.npz``), and whitening is applied by the model, not
        baked into the arrays. ``whiten`` / ``sigmoid`` given here win; otherwise they are read
        from the name; a flag the name does not state takes MEInst's default (True) with a
        warning. The loaded codec records ``jitter=None, seed=None``: how the matrix was fitted
        is unknown (AdelaiDet used scikit-learn's IncrementalPCA on jittered logits).
        """
        path = os.fspath(path)
        _, arrays = read_npz(path)
        missing = {"components_c", "mean_c", "explained_variance_c"} - set(arrays)
        if missing:
            raise ValueError(f"{path}: not an AdelaiDet PCA file, missing {sorted(missing)}")
        shape = arrays["components_c"].shape
        if len(shape) != 3 or shape[0] != 1:
            raise ValueError(f"{path}: components_c must be (1, K, S*S), got {shape}")
        _, k, d = shape
        side = round(d ** 0.5)
        if side * side != d:
            raise ValueError(f"{path}: components have {d} columns, not a square mask")
        name = os.path.basename(path)
        flags = {}
        for flag, given in (("whiten", whiten), ("sigmoid", sigmoid)):
            stated = re.search(rf"{flag}(True|False)", name)
            if given is not None:
                flags[flag] = bool(given)
            elif stated:
                flags[flag] = stated.group(1) == "True"
            else:
                flags[flag] = True
                warnings.warn(f"{path}: the file name does not state {flag}True/False; using MEInst's default "
                              f"{flag}=True (pass {flag}= to say otherwise)", stacklevel=2)
        arrays.setdefault("ratio_c", np.zeros((1, k), np.float32))
        codec = cls(mask_size=side, dim=k, jitter=None, seed=None, **flags)
        try:
            codec.load_state_dict(arrays)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None
        return codec
