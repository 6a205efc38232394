"""Mask heads for FCOS, one file per method, and the explicit table of them.

    >>> from maskrep.detection.heads import get_head, list_heads
    >>> list_heads()
    ['blendmask', 'centermask', 'crmask', 'embedmask', 'meinst', 'refinemask']
    >>> get_head("crmask", in_channels=64).in_features
    ()
"""

from .base import MaskHead, MaskMaps, gt_masks_of
from .blendmask import BlendMaskHead
from .centermask import CenterMaskHead
from .crmask import CRMaskHead
from .embedmask import EmbedMaskHead
from .meinst import MEInstHead
from .refinemask import RefineMaskHead

#: name -> head class. Every built-in head, written out once.
HEADS = {
    "blendmask": BlendMaskHead,
    "centermask": CenterMaskHead,
    "crmask": CRMaskHead,
    "embedmask": EmbedMaskHead,
    "meinst": MEInstHead,
    "refinemask": RefineMaskHead,
}


def list_heads() -> list[str]:
    return sorted(HEADS)


def get_head(name: str, **params) -> MaskHead:
    """A new head by name; an unknown name lists the valid ones."""
    try:
        cls = HEADS[name]
    except KeyError:
        raise KeyError(f"unknown mask head {name!r}; valid names: {', '.join(list_heads())}") from None
    return cls(**params)


__all__ = ["HEADS", "BlendMaskHead", "CRMaskHead", "CenterMaskHead", "EmbedMaskHead", "MEInstHead", "MaskHead", "MaskMaps", "RefineMaskHead", "get_head", "gt_masks_of", "list_heads"]
