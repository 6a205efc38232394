"""Codec files: ``codec.save(path)`` writes them, :func:`load` reads them (and AdelaiDet's PCA files)."""

from __future__ import annotations

import os

from .base import MaskCodec, get_codec, read_npz
from .pca import PCACodec

__all__ = ["load"]


def load(path: str | os.PathLike) -> MaskCodec:
    """Load a codec saved with ``codec.save(path)``, or an AdelaiDet PCA matrix file (MEInst's
    four arrays, no maskrep header: see :meth:`maskrep.codecs.PCACodec.load_adelaidet`).

    Raises ValueError naming the file and what is wrong with it: not an ``.npz``, a header that is
    not a codec description, missing or non-finite arrays.
    """
    path = os.fspath(path)
    header, arrays = read_npz(path)
    if header is None:
        if {"components_c", "mean_c", "explained_variance_c"} <= set(arrays):
            return PCACodec.load_adelaidet(path)
        raise ValueError(f"{path}: neither a maskrep codec (no 'maskrep_codec' header) nor an AdelaiDet PCA "
                         f"file (arrays {sorted(arrays)})")
    try:
        name, params = header["name"], dict(header["params"])
    except (KeyError, TypeError):
        raise ValueError(f"{path}: the maskrep_codec header must hold 'name' and 'params', got {header!r}") from None
    try:
        codec = get_codec(name, **params)
        codec.load_state_dict(arrays)
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: {e}") from None
    return codec
