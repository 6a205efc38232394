"""Mask heads for FCOS, one file per method, and the explicit table of them.

    >>> from maskrep.detection.heads import get_head, list_heads
    >>> list_heads()
    ['blendmask', 'centermask', 'crmask', 'embedmask', 'meinst', 'refinemask']
    >>> get_head("crmask", in_channels=64).in_features
    ()
"""

from ..._plugins import Registry
from .base import MaskHead, MaskMaps, gt_masks_of
from .blendmask import BlendMaskHead
from .centermask import CenterMaskHead
from .crmask import CRMaskHead
from .embedmask import EmbedMaskHead
from .meinst import MEInstHead
from .refinemask import RefineMaskHead

#: the head table: every built-in head written out once, plugins found through the ``maskrep.heads``
#: entry-point group
REGISTRY = Registry("mask head", "maskrep.heads")
for _name, _cls in {"blendmask": BlendMaskHead, "centermask": CenterMaskHead, "crmask": CRMaskHead,
                    "embedmask": EmbedMaskHead, "meinst": MEInstHead, "refinemask": RefineMaskHead}.items():
    REGISTRY.register(_name, _cls)
#: name -> head class (the registry's table; plugins appear once a name has been looked up)
HEADS = REGISTRY.table


def register_head(name: str, cls: type | None = None):
    """Add a head class under ``name``; without ``cls``, a decorator: ``@register_head("mine")``."""
    return REGISTRY.register(name, cls)


def list_heads() -> list[str]:
    """Every head name: maskrep's and the installed plugins'."""
    return REGISTRY.names()


def head_class(name: str) -> type:
    """The class registered under ``name``; an unknown name lists the valid ones."""
    return REGISTRY.get(name)


def get_head(name: str, **params) -> MaskHead:
    """A new head by name; an unknown name lists the valid ones."""
    return head_class(name)(**params)


__all__ = ["HEADS", "BlendMaskHead", "CRMaskHead", "CenterMaskHead", "EmbedMaskHead", "MEInstHead", "MaskHead", "MaskMaps",
           "RefineMaskHead", "get_head", "gt_masks_of", "head_class", "list_heads", "register_head"]
