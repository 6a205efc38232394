"""The codec contract and its registry.

A codec turns (N, S, S) bool box-frame masks into (N, D) float32 codes and back into (N, S, S)
probabilities in [0, 1] (thresholding, at :data:`maskrep.ops.MASK_THRESHOLD`, is the caller's step). Each codec's arithmetic lives in
one torch ``nn.Module`` (``codec.module()``): fitted arrays are buffers and decoding is
differentiable, so a detector head imports the same module; the numpy-facing ``encode``/``decode``
call it under ``no_grad`` and return the kind they were given (numpy, or a tensor on its device).
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Callable, Iterable

import numpy as np
import torch
from torch import nn

from .._array import is_tensor
from .._io import atomic_write
from .._plugins import Registry
from ..ops.masks import MASK_THRESHOLD

__all__ = ["CAPABILITIES", "CODECS", "CodecModule", "MaskCodec", "codec_class", "get_codec", "list_codecs", "read_npz",
           "register_codec"]

#: masks a fit handles at once when given one array (memory stays O(FIT_CHUNK * S * S)).
FIT_CHUNK = 65536

#: What a codec may declare in ``capabilities`` beyond the contract:
#: "jitter": ``encode_jittered(masks, rng)`` and its module's ``jittered_targets(masks, generator)``
#: (MEInst's noisy logit targets); "resume": ``fit(..., checkpoint=path)`` keeps a training state
#: there and resumes from it; "paste": ``paste_rle`` draws the decoded shape in the image itself
#: (a contour codec fills its polygon) instead of pasting an S x S map, so a head should hand it the
#: codes (:class:`maskrep.detection.heads.MaskMaps` frame "codes").
CAPABILITIES = ("jitter", "paste", "resume")

#: the codec table: built-in codecs registered in ``maskrep/codecs/__init__.py``, plugins found
#: through the ``maskrep.codecs`` entry-point group
REGISTRY = Registry("codec", "maskrep.codecs")
#: name -> codec class (the registry's table; plugins appear once a name has been looked up)
CODECS: dict[str, type] = REGISTRY.table


def register_codec(name: str, cls: type | None = None):
    """Add a codec class under ``name`` (a taken name is refused); without ``cls``, a decorator:
    ``@register_codec("mine")``."""
    return REGISTRY.register(name, cls)


def list_codecs() -> list[str]:
    """Every codec name: maskrep's and the installed plugins'."""
    return REGISTRY.names()


def codec_class(name: str) -> type:
    """The class registered under ``name``; an unknown name lists the valid ones."""
    return REGISTRY.get(name)


def get_codec(name: str, **params) -> MaskCodec:
    """A new, unfitted codec by name; an unknown name lists the valid ones, an unknown parameter
    the codec's parameters. The codec carries the name it was built by (a plugin subclass of a
    built-in codec saves and loads under its own name)."""
    cls = codec_class(name)
    accepted = [p for p in inspect.signature(cls).parameters if p != "self"]
    unknown = [k for k in params if k not in accepted]
    if unknown:
        raise ValueError(f"codec {name!r} has no parameter {unknown[0]!r}; its parameters: {', '.join(accepted)}")
    codec = cls(**params)
    if codec.name != name:
        codec.name = name
    return codec


def check_int(name: str, value, low: int, high: int | None = None) -> int:
    """``value`` as an int in [low, high], or a ValueError naming the parameter and the range."""
    allowed = f"[{low}, {high}]" if high is not None else f">= {low}"
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not (
            low <= value and (high is None or value <= high)):
        raise ValueError(f"{name} must be an integer {allowed}, got {value!r}")
    return int(value)


def read_npz(path: str) -> tuple[dict | None, dict[str, np.ndarray]]:
    """(maskrep header or None, the other arrays) of an ``.npz``, every array checked finite."""
    try:
        with np.load(path, allow_pickle=False) as f:
            if not hasattr(f, "files"):
                raise ValueError("it holds a single array, not named arrays")
            arrays = {k: f[k] for k in f.files}
    except FileNotFoundError:
        raise FileNotFoundError(f"codec file not found: {path}") from None
    except (ValueError, OSError, EOFError) as e:  # not a zip, truncated, or object arrays
        raise ValueError(f"{path}: not a codec file (an .npz of plain arrays): {str(e).split('.')[0]}") from None
    header = None
    if "maskrep_codec" in arrays:
        try:
            header = json.loads(str(arrays.pop("maskrep_codec")))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: the maskrep_codec header is not JSON ({e})") from None
    for key, value in arrays.items():
        if value.dtype.kind not in "biuf":
            raise ValueError(f"{path}: array {key!r} has dtype {value.dtype}, expected numbers")
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            raise ValueError(f"{path}: array {key!r} holds {int((~np.isfinite(value)).sum())} non-finite values")
    return header, arrays


class CodecModule(nn.Module):
    """Base of the torch forms. ``forward(codes)`` decodes to probabilities (N, S, S).

    ``logit_space``: whether ``decode_logits`` gives logits (a sigmoid follows), so that a head may
    train the decoded map with binary cross-entropy.
    """

    logit_space: bool = False

    def encode(self, masks: torch.Tensor) -> torch.Tensor:  # (N, S, S) -> (N, D)
        raise NotImplementedError

    def decode_logits(self, codes: torch.Tensor) -> torch.Tensor:
        """(N, D) -> (N, S, S) pre-activation values (logits for sigmoid codecs)."""
        raise NotImplementedError

    def activate(self, values: torch.Tensor) -> torch.Tensor:
        return values.clamp(0.0, 1.0)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return self.activate(self.decode_logits(codes))

    def paste_maps(self, codes: torch.Tensor) -> torch.Tensor:
        """(N, D) -> (N, S, S) the maps a detector pastes into the image and thresholds:
        the probabilities, unless the method pastes other values (CRMask 'reg')."""
        return self(codes)


class MaskCodec:
    """Base class: subclasses set ``name``, implement ``_build_module`` and, when they learn, ``_fit``.

    Parameters common to all codecs are keyword-only; ``params`` holds them for saving.
    """

    name: str = ""
    needs_fit: bool = False
    #: the optional abilities this codec has (a subset of :data:`CAPABILITIES`)
    capabilities: frozenset = frozenset()

    def __init__(self, *, mask_size: int, **params):
        self.mask_size = check_int("mask_size", mask_size, 1)
        self.params = {"mask_size": self.mask_size, **params}
        self._state: dict[str, np.ndarray] = {}
        self._module: CodecModule | None = None

    # ---- what subclasses provide ------------------------------------------------------------------

    @property
    def code_length(self) -> int:
        raise NotImplementedError

    def _build_module(self) -> CodecModule:
        raise NotImplementedError

    def _fit(self, chunks: Iterable[np.ndarray], progress: Callable | None) -> dict[str, np.ndarray]:
        return {}

    # ---- the contract -----------------------------------------------------------------------------

    @property
    def is_fitted(self) -> bool:
        return not self.needs_fit or bool(self._state)

    def fit(self, masks, *, progress: Callable | None = None, checkpoint: str | None = None) -> MaskCodec:
        """Learn the codec's arrays from (N, S, S) bool masks, or an iterable of such chunks.

        ``progress(n)`` is called with the count of masks of each chunk consumed. ``checkpoint``: a
        file for the training state of a codec with the "resume" capability (written as it trains,
        resumed from when present, removed when the fit completes).
        """
        extra = {}
        if checkpoint is not None:
            if "resume" not in self.capabilities:
                raise ValueError(f"codec {self.name!r} fits in one pass and keeps no training state (checkpoint)")
            extra["checkpoint"] = os.fspath(checkpoint)
        if isinstance(masks, np.ndarray) or is_tensor(masks):  # one big array: streamed in slices
            chunks: Iterable = (masks[i : i + FIT_CHUNK] for i in range(0, max(len(masks), 1), FIT_CHUNK))
        else:
            chunks = masks
        checked = (self._check_masks(np.asarray(c.cpu() if is_tensor(c) else c)) for c in chunks)
        self._state = {k: np.ascontiguousarray(v) for k, v in self._fit(checked, progress, **extra).items()}
        self._module = None
        return self

    def module(self) -> CodecModule:
        """The torch form (float32 buffers on the CPU); move it with ``.to(device)``."""
        if not self.is_fitted:
            raise RuntimeError(f"codec {self.name!r} must be fitted (or loaded) before use")
        if self._module is None:
            self._module = self._build_module()
        return self._module

    def encode(self, masks):
        """(N, S, S) bool -> (N, D) float32 codes, the same kind as ``masks``."""
        return self._run(masks, "encode")

    def decode(self, codes):
        """(N, D) codes -> (N, S, S) float32 probabilities in [0, 1], the same kind as ``codes``."""
        return self._run(codes, "decode")

    def paste_maps(self, codes):
        """(N, D) codes -> (N, S, S) float32 maps to paste and threshold (see
        :meth:`CodecModule.paste_maps`), the same kind as ``codes``."""
        return self._run(codes, "paste")

    def paste_rle(self, codes, boxes, image_size: tuple[int, int], *, threshold: float = MASK_THRESHOLD) -> list[dict]:
        """(N, D) codes decoded into their (N, 4) boxes at image resolution, as N COCO RLEs.

        By default the S x S maps of :meth:`paste_maps` pasted bilinearly and thresholded
        (:func:`maskrep.ops.paste_masks_to_rle`); codecs that decode to a shape (the contour codecs)
        fill it in the image directly.
        """
        from ..ops.rle import paste_masks_to_rle

        return paste_masks_to_rle(self.paste_maps(codes), boxes, image_size, threshold=threshold)

    def _run(self, x, what: str):
        module = self.module()
        if what == "encode":
            self._check_masks(x)
        t = x if is_tensor(x) else torch.from_numpy(np.ascontiguousarray(x))
        if what != "encode" and (t.ndim != 2 or t.shape[1] != self.code_length):
            raise ValueError(f"codes must be (N, {self.code_length}), got shape {tuple(t.shape)}")
        if what != "encode" and t.is_floating_point() and not torch.isfinite(t).all():
            rows = torch.nonzero(~torch.isfinite(t).all(1)).flatten().tolist()
            raise ValueError(f"codes hold non-finite values (NaN or inf) in {len(rows)} of {len(t)} rows, e.g. row "
                             f"{rows[0]}: codec {self.name!r} decodes finite codes only")
        module = module.to(t.device)  # the input's device (the CPU for numpy); a no-op when already there
        self._module = module
        with torch.no_grad():
            if what == "encode":
                out = module.encode(t)
            else:
                out = module(t.float()) if what == "decode" else module.paste_maps(t.float())
        out = out.float()
        return out if is_tensor(x) else out.numpy()

    def _check_masks(self, masks):
        shape = tuple(masks.shape)
        s = self.mask_size
        if len(shape) != 3 or shape[1:] != (s, s):
            raise ValueError(f"codec {self.name!r} takes (N, {s}, {s}) masks, got shape {shape}")
        if masks.dtype not in (np.bool_, torch.bool):
            raise TypeError(f"masks must be bool, got {str(masks.dtype).replace('torch.', '')}")
        return masks

    # ---- persistence ------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, np.ndarray]:
        return dict(self._state)

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self._state = {k: np.asarray(v) for k, v in state.items()}
        self._module = None

    def save(self, path: str | os.PathLike) -> None:
        """Write params and fitted arrays to an ``.npz`` (atomically: write, then rename)."""
        if not self.is_fitted:
            raise RuntimeError(f"codec {self.name!r} is not fitted; nothing to save")
        path = os.fspath(path)
        header = json.dumps({"name": self.name, "params": self.params})
        arrays = self._arrays_for_file()
        atomic_write(path, lambda f: np.savez(f, maskrep_codec=np.array(header), **arrays))

    def _arrays_for_file(self) -> dict[str, np.ndarray]:
        """The arrays ``save`` writes; ``load_state_dict`` must accept them back."""
        return self._state

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}({args})"
