"""Private fast paths. numba is imported on first use, never at ``import maskrep``."""

from __future__ import annotations

import functools


@functools.cache
def has_numba() -> bool:
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def choose_backend(backend: str) -> str:
    """Resolve "auto" to "numba" when numba imports, else "reference"; validate the name."""
    from .. import _config

    if backend == "auto":
        backend = _config.DEFAULT_BACKEND
    if backend == "auto":
        return "numba" if has_numba() else "reference"
    if backend not in ("reference", "numba"):
        raise ValueError(f"backend must be 'auto', 'reference' or 'numba', got {backend!r}")
    if backend == "numba" and not has_numba():
        raise RuntimeError("backend='numba' asked for, but numba is not installed")
    return backend
