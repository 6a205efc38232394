"""When an assembly call may take a numba kernel: CPU inputs, numba available, no gradient wanted."""

from __future__ import annotations

import numpy as np
import torch

from .._kernels import choose_backend


def as_tensor(x) -> torch.Tensor:
    return torch.from_numpy(np.asarray(x)) if not torch.is_tensor(x) else x


def use_numba(backend: str, *tensors) -> bool:
    if choose_backend(backend) != "numba":
        return False
    ts = [t for t in tensors if t is not None]
    if any(t.device.type != "cpu" for t in ts):
        return False  # CUDA tensors stay on the GPU with the torch path
    return not (torch.is_grad_enabled() and any(t.requires_grad for t in ts))


def np64(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().cpu().numpy(), dtype=np.float64)


def back(arr: np.ndarray, like: torch.Tensor, was_numpy: bool):
    """Kernel output -> the caller's kind: numpy float64 for numpy input, else a tensor of ``like``'s dtype."""
    return arr if was_numpy else torch.from_numpy(arr).to(like.dtype)


def image_groups(im_inds: torch.Tensor | None, n: int):
    """Yield (image index, instance indices) for the images that have instances."""
    if im_inds is None:
        yield 0, torch.arange(n)
        return
    for b in torch.unique(im_inds).tolist():
        yield b, torch.nonzero(im_inds == b).squeeze(1)
