"""A pure-PyTorch FCOS detector (ResNet, FPN, FCOS head) and the mask heads that plug into it."""

from .backbone import FPN, FrozenBatchNorm2d, ResNet, load_backbone_weights
from .detector import Detector, build_fcos
from .fcos import FCOS, FCOSHead, FCOSOutput, Positives, compute_locations
from .heads import MaskHead, MaskMaps, get_head, list_heads

__all__ = [
    "FCOS",
    "FPN",
    "Detector",
    "FCOSHead",
    "FCOSOutput",
    "FrozenBatchNorm2d",
    "MaskHead",
    "MaskMaps",
    "Positives",
    "ResNet",
    "build_fcos",
    "compute_locations",
    "get_head",
    "list_heads",
    "load_backbone_weights",
]
