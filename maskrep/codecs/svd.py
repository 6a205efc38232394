"""CRMask: the three-unit compressed representation U (S, k), s (k,), V (S, k).

The non-parametric decoder unit-normalises the columns of U and V and forms U diag(s) V^T; the
'cls' mode reads that as logits (sigmoid), the 'reg' mode as mask values. A code is the flat
concatenation [U row-major over (S, k), s, V row-major over (S, k)], k (2 S + 1) numbers (87 for
S = 14, k = 3). CRMask's rank-k attentions inside BlendMask (one triple per basis, CRMask's
348-channel layout) are :func:`maskrep.assembly.unit_attentions`.
"""

from __future__ import annotations

import torch

from .base import CodecModule, MaskCodec, check_int

__all__ = ["SVDCodec", "SVDModule", "compose_units", "split_units"]


def split_units(codes: torch.Tensor, mask_size: int, rank: int):
    """(N, k (2S + 1)) -> U (N, S, k), s (N, k), V (N, S, k)."""
    n = codes.shape[0]
    sk = mask_size * rank
    u = codes[:, :sk].reshape(n, mask_size, rank)  # (N, S, k)
    s = codes[:, sk : sk + rank]  # (N, k)
    v = codes[:, sk + rank :].reshape(n, mask_size, rank)  # (N, S, k)
    return u, s, v


def compose_units(u: torch.Tensor, s: torch.Tensor, v: torch.Tensor, *, eps: float = 1e-6) -> torch.Tensor:
    """CRMask's decoder: Û diag(s) V̂^T with unit-norm columns (``eps`` inside the sqrt).

    Parameters
    ----------
    u, v : Tensor of shape (..., S, k)
    s : Tensor of shape (..., k)

    Returns
    -------
    Tensor of shape (..., S, S). A zero column gives zeros, never NaN. Differentiable.
    """
    u_hat = u / torch.sqrt((u * u).sum(-2, keepdim=True) + eps)  # (..., S, k)
    v_hat = v / torch.sqrt((v * v).sum(-2, keepdim=True) + eps)
    return torch.einsum("...ik,...k,...jk->...ij", u_hat, s, v_hat)  # (..., S, S)


class SVDModule(CodecModule):
    """Torch form of :class:`SVDCodec` (no fitted arrays).

    ``s_activation`` maps the s part of a code to singular values: "none" (the codec's own codes
    hold s), "exp" (CRMask's 'cls' head predicts log s) or "relu_square" (its 'reg' head predicts
    sqrt(s) through a ReLU: s = relu(x)^2).
    """

    S_ACTIVATIONS = ("none", "exp", "relu_square")

    def __init__(self, *, mask_size: int, rank: int, mode: str, logit_scale: float, s_activation: str = "none"):
        super().__init__()
        if s_activation not in self.S_ACTIVATIONS:
            raise ValueError(f"s_activation must be one of {self.S_ACTIVATIONS}, got {s_activation!r}")
        self.mask_size, self.rank, self.mode = mask_size, rank, mode
        self.logit_scale, self.s_activation = logit_scale, s_activation

    def encode(self, masks: torch.Tensor) -> torch.Tensor:
        m = masks.to(torch.float64)
        target = (2 * m - 1) * self.logit_scale if self.mode == "cls" else m  # (N, S, S)
        u, s, vh = torch.linalg.svd(target)  # u (N, S, S), s (N, S), vh (N, S, S): rows of vh are v^T
        k = self.rank
        u, s, v = u[..., :k], s[..., :k], vh[..., :k, :].transpose(-1, -2)  # (N, S, k), (N, k), (N, S, k)
        # deterministic signs: each pair (u_l, v_l) is flipped so that sum(u_l) > 0 (ties: the
        # largest-|.| entry of u_l is positive); the product u_l v_l^T is unchanged
        total = u.sum(-2)  # (N, k)
        lead = torch.gather(u, -2, u.abs().argmax(-2, keepdim=True)).squeeze(-2)  # (N, k)
        sign = torch.where(total.abs() > 1e-9, torch.sign(total), torch.sign(lead))
        sign = torch.where(sign == 0, torch.ones_like(sign), sign)
        u, v = u * sign[..., None, :], v * sign[..., None, :]
        n = masks.shape[0]
        sk = self.mask_size * k
        code = torch.cat([u.reshape(n, sk), s, v.reshape(n, sk)], 1)  # (N, k (2S + 1))
        return code.to(torch.float32)

    @property
    def logit_space(self) -> bool:
        return self.mode == "cls"

    def singular_values(self, s: torch.Tensor) -> torch.Tensor:
        if self.s_activation == "exp":
            return torch.exp(s)
        if self.s_activation == "relu_square":
            return torch.relu(s) ** 2
        return s

    def decode_logits(self, codes: torch.Tensor) -> torch.Tensor:
        u, s, v = split_units(codes, self.mask_size, self.rank)
        return compose_units(u, self.singular_values(s), v)  # (N, S, S)

    def activate(self, values: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(values) if self.mode == "cls" else values.clamp(0.0, 1.0)

    def paste_maps(self, codes: torch.Tensor) -> torch.Tensor:
        """'reg' pastes the unclamped values (CRMask pastes values outside [0, 1]); 'cls' the
        probabilities."""
        return self.decode_logits(codes) if self.mode == "reg" else self(codes)


class SVDCodec(MaskCodec):
    """CRMask's three representation units, encoded by truncated SVD.

    Parameters
    ----------
    mask_size : int
        S (CRMask: 14).
    rank : int
        k (CRMask: 3).
    mode : {"cls", "reg"}
        "cls": the units factor ``logit_scale * (2 m - 1)`` and decode through a sigmoid (the
        decision boundary is U diag(s) V^T = 0); "reg": they factor the 0/1 mask; ``decode``
        clamps the values to [0, 1], and pasting (``paste_maps``) uses them unclamped, as
        CRMask does.
    logit_scale : float
        Magnitude of the 'cls' target logits.

    Notes
    -----
    Encoding is the rank-k truncated SVD with a deterministic sign per (u_l, v_l) pair. Codes from
    the encoder have unit-norm columns, so the decoder's normalisation leaves them unchanged; a
    network's raw outputs are normalised there. Nothing is fitted.

    Examples
    --------
    >>> import numpy as np
    >>> codec = SVDCodec()
    >>> codec.code_length
    87
    >>> codec.encode(np.ones((2, 14, 14), bool)).shape
    (2, 87)
    """

    name = "svd"

    def __init__(self, *, mask_size: int = 14, rank: int = 3, mode: str = "cls", logit_scale: float = 4.0):
        if mode not in ("cls", "reg"):
            raise ValueError(f"mode must be 'cls' or 'reg', got {mode!r}")
        mask_size = check_int("mask_size", mask_size, 1)
        rank = check_int("rank", rank, 1, mask_size)
        if isinstance(logit_scale, bool) or not isinstance(logit_scale, (int, float)) or not logit_scale > 0:
            raise ValueError(f"logit_scale must be a number > 0, got {logit_scale!r}")
        super().__init__(mask_size=mask_size, rank=int(rank), mode=mode, logit_scale=float(logit_scale))
        self.rank, self.mode, self.logit_scale = int(rank), mode, float(logit_scale)

    @property
    def code_length(self) -> int:
        return self.rank * (2 * self.mask_size + 1)

    def _build_module(self) -> SVDModule:
        return SVDModule(mask_size=self.mask_size, rank=self.rank, mode=self.mode, logit_scale=self.logit_scale)


