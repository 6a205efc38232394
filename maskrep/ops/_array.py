"""The one numpy/torch boundary for ops: convert once on the way in, back once on the way out."""

from __future__ import annotations

import numpy as np

try:  # torch is a hard dependency, but keep ops importable for numpy-only use
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


def like(result: np.ndarray, template):
    """Return ``result`` as the same kind as ``template``: a tensor on its device, or numpy."""
    if is_tensor(template):
        return torch.from_numpy(np.ascontiguousarray(result)).to(template.device)
    return result
