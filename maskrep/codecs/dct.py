"""DCT-Mask: the first D zig-zag coefficients of the orthonormal 2-D DCT-II of the S x S crop
(Shen et al., arXiv:2011.09876)."""

from __future__ import annotations

import numpy as np
import torch

from .base import CodecModule, MaskCodec, check_int

__all__ = ["DCTCodec", "DCTModule", "dct_matrix", "zigzag_indices"]


def dct_matrix(size: int) -> np.ndarray:
    """(S, S) orthonormal DCT-II matrix: coefficients = A @ x, and x = A.T @ coefficients."""
    k = np.arange(size)[:, None]
    n = np.arange(size)[None, :]
    a = np.cos(np.pi * (2 * n + 1) * k / (2 * size)) * np.sqrt(2.0 / size)
    a[0] /= np.sqrt(2.0)
    return a


def zigzag_indices(size: int) -> np.ndarray:
    """(S*S, 2) (row, col) in JPEG zig-zag order: by anti-diagonal, alternating direction."""
    order = sorted(((r, c) for r in range(size) for c in range(size)),
                   key=lambda rc: (rc[0] + rc[1], rc[1] if (rc[0] + rc[1]) % 2 == 0 else rc[0]))
    return np.array(order, dtype=np.int64)


class DCTModule(CodecModule):
    """Torch form of :class:`DCTCodec`: buffers ``basis`` (S, S) and ``index`` (D,) (flat positions)."""

    def __init__(self, *, mask_size: int, dim: int):
        super().__init__()
        self.mask_size = mask_size
        zz = zigzag_indices(mask_size)[:dim]
        self.register_buffer("basis", torch.as_tensor(dct_matrix(mask_size), dtype=torch.float64))
        self.register_buffer("index", torch.as_tensor(zz[:, 0] * mask_size + zz[:, 1]))

    def encode(self, masks: torch.Tensor) -> torch.Tensor:
        x = masks.to(self.basis.dtype)
        coeffs = self.basis @ x @ self.basis.T  # (N, S, S)
        return coeffs.reshape(x.shape[0], self.mask_size ** 2)[:, self.index].to(torch.float32)  # (N, D)

    def decode_logits(self, codes: torch.Tensor) -> torch.Tensor:
        n, s = codes.shape[0], self.mask_size
        full = codes.new_zeros(n, s * s).to(self.basis.dtype)
        full[:, self.index] = codes.to(self.basis.dtype)
        x = self.basis.T @ full.reshape(n, s, s) @ self.basis  # (N, S, S)
        return x.to(codes.dtype)


class DCTCodec(MaskCodec):
    """DCT-Mask's representation. Decoded values are clamped to [0, 1] (threshold at 0.5).

    Parameters
    ----------
    mask_size : int
        S (DCT-Mask: 128).
    dim : int
        D, the number of zig-zag coefficients kept (DCT-Mask: 300).

    Examples
    --------
    >>> import numpy as np
    >>> DCTCodec(mask_size=16, dim=20).encode(np.ones((3, 16, 16), bool)).shape
    (3, 20)
    """

    name = "dct"

    def __init__(self, *, mask_size: int = 128, dim: int = 300):
        mask_size = check_int("mask_size", mask_size, 1)
        dim = check_int("dim", dim, 1, mask_size * mask_size)
        super().__init__(mask_size=mask_size, dim=int(dim))
        self.dim = int(dim)

    @property
    def code_length(self) -> int:
        return self.dim

    def _build_module(self) -> DCTModule:
        return DCTModule(mask_size=self.mask_size, dim=self.dim)
