"""Weights trained with AdelaiDet / detectron2 FCOS, renamed for maskrep's detector.

detectron2 names a ResNet-FPN-FCOS ``backbone.bottom_up.res2.0.conv1.norm.weight``,
``backbone.fpn_lateral3.weight``, ``backbone.top_block.p6.weight`` and
``proposal_generator.fcos_head.cls_tower.0.weight``; maskrep names the same tensors
``backbone.layer1.0.bn1.weight``, ``fpn.lateral.0.weight``, ``fpn.top.0.weight`` and
``fcos.head.cls_tower.0.weight``. :func:`adelaidet_fcos_to_maskrep` maps one onto the other and
refuses what it cannot place.

Such weights also expect what detectron2 feeds them: BGR images normalised by the MSRA mean with
unit std, and bottlenecks with the stride on their first 1x1 conv. Build the detector with
``build_fcos(..., stride_in_1x1=True, **ADELAIDET_INPUT)`` (the config
``experiments/fcos/fcos_R_50_1x_adelaidet.py`` does), then load the converted file::

    maskrep convert adelaidet-fcos FCOS_R_50_1x.pth fcos_R_50_1x_maskrep.pth
    maskrep eval --config experiments/fcos/fcos_R_50_1x_adelaidet.py --checkpoint fcos_R_50_1x_maskrep.pth
"""

from __future__ import annotations

import os
import re

import torch

from .._io import atomic_write, read_torch_file

__all__ = ["ADELAIDET_INPUT", "adelaidet_fcos_to_maskrep", "convert_checkpoint"]

#: What detectron2-trained weights expect of the input (``build_fcos`` keywords).
ADELAIDET_INPUT = {"input_format": "BGR", "pixel_mean": (103.53, 116.28, 123.675), "pixel_std": (1.0, 1.0, 1.0)}

_NORM_FIELDS = ("weight", "bias", "running_mean", "running_var")


def _rename(key: str, levels: list[int]) -> str | None:
    """One detectron2 / AdelaiDet key -> its maskrep name, or None when it has none."""
    m = re.fullmatch(r"backbone\.bottom_up\.stem\.conv1\.(norm\.)?(\w+)", key)
    if m:
        return f"backbone.{'bn1' if m.group(1) else 'conv1'}.{m.group(2)}"
    m = re.fullmatch(r"backbone\.bottom_up\.res([2-5])\.(\d+)\.(conv[123]|shortcut)\.(norm\.)?(\w+)", key)
    if m:
        stage, block, conv, norm, field = m.groups()
        prefix = f"backbone.layer{int(stage) - 1}.{block}"
        if conv == "shortcut":
            return f"{prefix}.downsample.{1 if norm else 0}.{field}"
        return f"{prefix}.{'bn' + conv[-1] if norm else conv}.{field}"
    m = re.fullmatch(r"backbone\.fpn_(lateral|output)(\d)\.(norm\.)?(\w+)", key)
    if m:
        kind, level, norm, field = m.groups()
        if int(level) not in levels:
            return None
        index = levels.index(int(level))
        return f"fpn.{kind}{'_norm' if norm else ''}.{index}.{field}"
    m = re.fullmatch(r"backbone\.top_block\.p([67])\.(\w+)", key)
    if m:
        return f"fpn.top.{int(m.group(1)) - 6}.{m.group(2)}"
    m = re.fullmatch(r"proposal_generator\.fcos_head\.((?:cls_tower|bbox_tower)\.\d+|cls_logits|bbox_pred|ctrness"
                     r"|scales\.\d+)\.(\w+)", key)
    if m:
        return f"fcos.head.{m.group(1)}.{m.group(2)}"
    return None


def adelaidet_fcos_to_maskrep(state_dict: dict) -> dict:
    """Rename an AdelaiDet / detectron2 FCOS state dict for :func:`maskrep.detection.build_fcos`.

    Parameters
    ----------
    state_dict : dict of str to Tensor
        ``checkpoint["model"]`` of a detectron2 checkpoint (a ``{"model": ...}`` dict is unwrapped).

    Returns
    -------
    dict of str to Tensor, maskrep names. ``num_batches_tracked`` and the non-persistent
    ``pixel_mean`` / ``pixel_std`` buffers are dropped; a P2 level (``fpn_lateral2``) maps to
    ``use_p2=True``'s first level; ``fcos.moving_num_fg`` (not in AdelaiDet's files) is set to
    its initial 100.

    Raises
    ------
    ValueError
        Naming the keys that have no place in maskrep's FCOS (a shared tower, deformable
        convolutions, a mask head), so nothing is silently left out.
    """
    if "model" in state_dict and isinstance(state_dict["model"], dict):
        state_dict = state_dict["model"]
    levels = sorted({int(m.group(1)) for k in state_dict if (m := re.match(r"backbone\.fpn_lateral(\d)\.", k))})
    out, unplaced = {}, []
    for key, value in state_dict.items():
        if key.endswith("num_batches_tracked") or key in ("pixel_mean", "pixel_std"):
            continue
        new = _rename(key, levels)
        if new is None:
            unplaced.append(key)
        else:
            out[new] = torch.as_tensor(value)
    if unplaced:
        raise ValueError(f"{len(unplaced)} keys have no place in maskrep's FCOS, e.g. {unplaced[:5]}")
    # maskrep keeps the "moving_fg" class-loss normaliser in a buffer; AdelaiDet starts it at 100
    # and does not save it
    out["fcos.moving_num_fg"] = torch.tensor(100.0)
    return out


def convert_checkpoint(src: str | os.PathLike, dst: str | os.PathLike) -> int:
    """Read a detectron2 / AdelaiDet FCOS checkpoint (``.pth``), write ``{"model": renamed}`` for
    ``maskrep eval --checkpoint``; returns the number of tensors written."""
    src = os.fspath(src)
    state = read_torch_file(src, advice="convert takes an AdelaiDet / detectron2 FCOS checkpoint (.pth)")
    if not isinstance(state, dict):
        raise ValueError(f"{src}: expected a state dict or {{'model': state dict}}, got {type(state).__name__}")  # noqa: TRY004
    weights = state["model"] if isinstance(state.get("model"), dict) else state
    if any(str(k).startswith(("fcos.", "fpn.")) for k in weights):  # maskrep names, not detectron2 ones
        raise ValueError(f"{src} is a maskrep checkpoint already: use it as it is (maskrep eval --checkpoint)")
    if not any(k.startswith(("proposal_generator.", "backbone.")) for k in weights):
        raise ValueError(f"{src}: no FCOS weights in it (no 'backbone.*' or 'proposal_generator.*' keys among "
                         f"{len(weights)}); convert takes an AdelaiDet / detectron2 FCOS checkpoint")
    try:
        renamed = adelaidet_fcos_to_maskrep(state)
    except ValueError as e:
        raise ValueError(f"{src}: {e}") from None
    atomic_write(dst, lambda f: torch.save({"model": renamed}, f))
    return len(renamed)
