"""The one numpy/torch boundary: convert once on the way in, back once on the way out.

Functions that accept both kinds return the kind they were given, on the same device and, where
they compute in another precision (a float64 kernel), in the dtype they were given.
"""

from __future__ import annotations

import numpy as np

try:  # torch is a hard dependency, but keep the ops importable for numpy-only use
    import torch
except ImportError:  # pragma: no cover
    torch = None


def is_tensor(x) -> bool:
    return torch is not None and isinstance(x, torch.Tensor)


def to_numpy(x, dtype=None) -> np.ndarray:
    """A numpy view/copy of an ndarray, tensor (any device) or sequence."""
    if is_tensor(x):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def as_tensor(x):
    """A tensor view of an ndarray (no copy); tensors pass through."""
    return x if is_tensor(x) else torch.from_numpy(np.asarray(x))


def np64(t) -> np.ndarray:
    """A C-contiguous float64 numpy copy of a tensor, for the float64 kernels."""
    return np.ascontiguousarray(t.detach().cpu().numpy(), dtype=np.float64)


def like(result: np.ndarray, template):
    """``result`` as the same kind as ``template``: a tensor on its device, or numpy (kind only)."""
    if is_tensor(template):
        return torch.from_numpy(np.ascontiguousarray(result)).to(template.device)
    return result


def like_dtype(result: np.ndarray, template):
    """``result`` as the same kind, device and floating dtype as ``template``."""
    if is_tensor(template):
        return torch.from_numpy(np.ascontiguousarray(result)).to(device=template.device, dtype=template.dtype)
    return result.astype(np.asarray(template).dtype, copy=False)
