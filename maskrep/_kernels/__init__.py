"""Private fast paths. numba is imported on first use, never at ``import maskrep``."""

from __future__ import annotations

import functools
import os


@functools.cache
def has_numba() -> bool:
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def choose_backend(backend: str, device: str = "cpu") -> str:
    """Resolve a backend name for inputs on ``device`` ("cpu" or "cuda").

    "auto" follows the input: numba's CUDA kernels for CUDA tensors, numba's CPU kernels for numpy
    arrays and CPU tensors, the plain reference when numba is missing.
    """
    from .. import _config

    if backend == "auto":
        backend = _config.DEFAULT_BACKEND
    if backend == "auto":
        # without numba, or with its JIT switched off (kernels then run as slow Python), the
        # reference is the fast choice; tests that pin backend="numba" still run the kernels
        if not has_numba() or os.environ.get("NUMBA_DISABLE_JIT", "0") not in ("", "0"):
            return "reference"
        return "cuda" if device == "cuda" else "numba"
    if backend not in ("reference", "numba", "cuda"):
        raise ValueError(f"backend must be 'auto', 'reference', 'numba' or 'cuda', got {backend!r}")
    if backend in ("numba", "cuda") and not has_numba():
        raise RuntimeError(f"backend={backend!r} asked for, but numba is not installed")
    return backend


def device_of(*xs) -> str:
    """"cuda" when any input is a CUDA tensor, else "cpu"."""
    for x in xs:
        dev = getattr(x, "device", None)
        if dev is not None and getattr(dev, "type", "cpu") == "cuda":
            return "cuda"
    return "cpu"
