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

from .base import CodecModule, MaskCodec, check_int, read_npz

__all__ = ["MEAN_JITTER_LOGIT", "PCACodec", "PCAModule", "jitter_logits"]


def jitter_logits(masks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """MEInst's sigmoid target with its jitter: (N, S*S) float32 logits of (1 - eps) / eps.

    eps = max(0.05 * U[0, 1), 0.01) per element: a 20% point mass at 0.01, else U[0.01, 0.05).
    """
    eps = np.maximum(0.05 * rng.random(masks.shape, dtype=np.float32), np.float32(0.01))
    x = np.where(masks, 1 - eps, eps)
    return np.log(x / (1 - x)).astype(np.float32)


def _mean_jitter_logit() -> float:
    """E[logit(1 - eps)] under the jitter: the deterministic encoder's foreground logit."""
    grid = np.linspace(0.01, 0.05, 200001)
    uniform_part = np.trapezoid(np.log((1 - grid) / grid), grid) / 0.04
    return float(0.2 * np.log(0.99 / 0.01) + 0.8 * uniform_part)


#: Foreground logit used by the deterministic encoder (background is its negative); about 3.70.
MEAN_JITTER_LOGIT = _mean_jitter_logit()


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
    jitter : bool or None
        Draw MEInst's random eps for each element while fitting (``sigmoid`` only). None: unknown
        (a matrix fitted elsewhere, e.g. AdelaiDet's); such a codec cannot be refitted.
    seed : int or None
        Seed of the jitter generator: the same masks give the same matrix (None: unknown).

    Notes
    -----
    Fitting accumulates sum(u) and sum(u u^T) in float64 over chunks, then takes the top-K
    eigenvectors of the sample covariance (divisor n - 1, scikit-learn's convention). Each
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
                 jitter: bool | None = True, seed: int | None = 0):
        mask_size = check_int("mask_size", mask_size, 1)
        dim = check_int("dim", dim, 1, mask_size * mask_size)
        jitter = None if jitter is None else bool(jitter)
        seed = None if seed is None else int(seed)
        super().__init__(mask_size=mask_size, dim=int(dim), whiten=bool(whiten), sigmoid=bool(sigmoid),
                         jitter=jitter, seed=seed)
        self.dim, self.whiten, self.sigmoid = int(dim), bool(whiten), bool(sigmoid)
        self.jitter, self.seed = jitter, seed

    @property
    def code_length(self) -> int:
        return self.dim

    def _vectors(self, chunk: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        flat = chunk.reshape(chunk.shape[0], -1)  # (n, S*S) bool
        if not self.sigmoid:
            return flat.astype(np.float32)
        if self.jitter:
            return jitter_logits(flat, rng)
        return np.where(flat, np.float32(MEAN_JITTER_LOGIT), np.float32(-MEAN_JITTER_LOGIT))

    def _fit(self, chunks: Iterable[np.ndarray], progress: Callable | None) -> dict[str, np.ndarray]:
        if self.jitter is None or self.seed is None:
            raise ValueError("this PCA codec's fitting settings are unknown (jitter/seed None, a matrix fitted "
                             "elsewhere); build PCACodec(jitter=..., seed=...) to fit one")
        rng = np.random.default_rng(self.seed)
        d = self.mask_size * self.mask_size
        total = np.zeros(d, dtype=np.float64)
        outer = np.zeros((d, d), dtype=np.float64)
        n = 0
        for chunk in chunks:
            u = self._vectors(chunk, rng).astype(np.float64)  # (n_i, S*S)
            total += u.sum(0)
            outer += u.T @ u
            n += u.shape[0]
            if progress is not None:
                progress(u.shape[0])
        if n <= self.dim:
            raise ValueError(f"a PCA with dim={self.dim} needs more than {self.dim} masks to fit (the centred data of "
                             f"n masks has rank at most n - 1), got {n}")
        mean = total / n
        cov = (outer - n * np.outer(mean, mean)) / (n - 1)  # (S*S, S*S)
        eigvals, eigvecs = np.linalg.eigh(cov)  # ascending
        order = np.argsort(eigvals)[::-1][: self.dim]
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
