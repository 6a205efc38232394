"""CRMask: the three-unit compressed representation U (S, k), s (k,), V (S, k).

The non-parametric decoder unit-normalises the columns of U and V and forms U diag(s) V^T; the
'cls' mode reads that as logits (sigmoid), the 'reg' mode as mask values. A code is the flat
concatenation [U row-major over (S, k), s, V row-major over (S, k)], k (2 S + 1) numbers (87 for
S = 14, k = 3); with ``num_groups = G`` (CRMask inside BlendMask) G such triples follow each other.
"""

from __future__ import annotations

import torch

from .base import CodecModule, MaskCodec

__all__ = ["SVDCodec", "SVDModule", "compose_units", "split_units"]


def split_units(codes: torch.Tensor, mask_size: int, rank: int, num_groups: int = 1):
    """(N, G * k (2S + 1)) -> U (N, G, S, k), s (N, G, k), V (N, G, S, k)."""
    n = codes.shape[0]
    per = rank * (2 * mask_size + 1)
    c = codes.reshape(n, num_groups, per)  # (N, G, k (2S + 1))
    sk = mask_size * rank
    u = c[..., :sk].reshape(n, num_groups, mask_size, rank)  # (N, G, S, k)
    s = c[..., sk : sk + rank]  # (N, G, k)
    v = c[..., sk + rank :].reshape(n, num_groups, mask_size, rank)  # (N, G, S, k)
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
    """Torch form of :class:`SVDCodec` (no fitted arrays). ``s_activation`` maps raw head outputs
    to singular values: "none" (codes hold s), "exp" (CRMask 'cls' head), "square" ('reg' head)."""

    def __init__(self, *, mask_size: int, rank: int, mode: str, logit_scale: float, num_groups: int = 1,
                 s_activation: str = "none"):
        super().__init__()
        self.mask_size, self.rank, self.mode = mask_size, rank, mode
        self.logit_scale, self.num_groups, self.s_activation = logit_scale, num_groups, s_activation

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

    def decode_logits(self, codes: torch.Tensor) -> torch.Tensor:
        u, s, v = split_units(codes, self.mask_size, self.rank, self.num_groups)
        if self.s_activation == "exp":
            s = torch.exp(s)
        elif self.s_activation == "square":
            s = s * s
        out = compose_units(u, s, v)  # (N, G, S, S)
        return out[:, 0] if self.num_groups == 1 else out

    def activate(self, values: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(values) if self.mode == "cls" else values.clamp(0.0, 1.0)

    def attention(self, codes: torch.Tensor) -> torch.Tensor:
        """CRMask-in-BlendMask: (N, G k (2S + 1)) -> (N, G, S, S) rank-k attention logits."""
        u, s, v = split_units(codes, self.mask_size, self.rank, self.num_groups)
        if self.s_activation == "exp":
            s = torch.exp(s)
        return compose_units(u, s, v)


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
        decision boundary is U diag(s) V^T = 0); "reg": they factor the 0/1 mask and decode to
        values clamped to [0, 1].
    logit_scale : float
        Magnitude of the 'cls' target logits.

    Notes
    -----
    Encoding is the rank-k truncated SVD with a deterministic sign per (u_l, v_l) pair. Codes from
    the encoder have unit-norm columns, so the decoder's normalisation leaves them unchanged; a
    network's raw outputs are normalised there. Nothing is fitted.

    Examples
    --------
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
        if not 1 <= rank <= mask_size:
            raise ValueError(f"rank must be in [1, {mask_size}], got {rank}")
        super().__init__(mask_size=mask_size, rank=int(rank), mode=mode, logit_scale=float(logit_scale))
        self.rank, self.mode, self.logit_scale = int(rank), mode, float(logit_scale)

    @property
    def code_length(self) -> int:
        return self.rank * (2 * self.mask_size + 1)

    def _build_module(self) -> SVDModule:
        return SVDModule(mask_size=self.mask_size, rank=self.rank, mode=self.mode, logit_scale=self.logit_scale)


