"""The plain bitmap: the crop resampled to R x R (Mask R-CNN's representation), the baseline."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import CodecModule, MaskCodec, check_int

__all__ = ["BitmapCodec", "BitmapModule"]


class BitmapModule(CodecModule):
    def __init__(self, *, mask_size: int, resolution: int):
        super().__init__()
        self.mask_size, self.resolution = mask_size, resolution

    def encode(self, masks: torch.Tensor) -> torch.Tensor:
        x = masks.to(torch.float32)[:, None]  # (N, 1, S, S)
        if self.resolution != self.mask_size:
            x = F.interpolate(x, size=(self.resolution, self.resolution), mode="area")
        return x.reshape(x.shape[0], self.resolution ** 2)  # (N, R*R)

    def decode_logits(self, codes: torch.Tensor) -> torch.Tensor:
        r = self.resolution
        x = codes.reshape(-1, 1, r, r)  # (N, 1, R, R)
        if r != self.mask_size:
            x = F.interpolate(x, size=(self.mask_size, self.mask_size), mode="bilinear", align_corners=False)
        return x[:, 0]  # (N, S, S)


class BitmapCodec(MaskCodec):
    """Code = the crop averaged down to R x R; decode = bilinear back to S x S.

    With ``resolution`` equal to ``mask_size`` (the default) the codec is the identity.

    Parameters
    ----------
    mask_size : S, the side of the box crops it takes (28, Mask R-CNN's).
    resolution : R, the side of the code's grid (None: S, the identity).

    Examples
    --------
    >>> import numpy as np
    >>> BitmapCodec(mask_size=28, resolution=14).encode(np.zeros((2, 28, 28), bool)).shape
    (2, 196)
    """

    name = "bitmap"

    def __init__(self, *, mask_size: int = 28, resolution: int | None = None):
        mask_size = check_int("mask_size", mask_size, 1)
        resolution = check_int("resolution", mask_size if resolution is None else resolution, 1, mask_size)
        super().__init__(mask_size=mask_size, resolution=resolution)
        self.resolution = resolution

    @property
    def code_length(self) -> int:
        return self.resolution * self.resolution

    def _build_module(self) -> BitmapModule:
        return BitmapModule(mask_size=self.mask_size, resolution=self.resolution)
