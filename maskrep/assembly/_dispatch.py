"""When an assembly call may take a numba kernel: CPU inputs, numba available, no gradient wanted."""

from __future__ import annotations

import numpy as np
import torch

from .._array import like_dtype
from .._kernels import choose_backend


def use_numba(backend: str, *tensors) -> bool:
    if choose_backend(backend) != "numba":
        return False
    ts = [t for t in tensors if t is not None]
    if any(t.device.type != "cpu" for t in ts):
        return False  # CUDA tensors stay on the GPU with the torch path
    return not (torch.is_grad_enabled() and any(t.requires_grad for t in ts))


def image_groups(im_inds: torch.Tensor | None, n: int):
    """Yield (image index, instance indices) for the images that have instances."""
    if im_inds is None:
        yield 0, torch.arange(n)
        return
    for b in torch.unique(im_inds).tolist():
        yield b, torch.nonzero(im_inds == b).squeeze(1)


def from_kernel(out: np.ndarray, template: torch.Tensor, was_numpy: bool):
    """A float64 kernel's output in the caller's kind and dtype (``template`` is the input as a tensor)."""
    res = like_dtype(out, template)
    return res.numpy() if was_numpy else res
