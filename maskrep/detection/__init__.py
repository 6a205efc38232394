"""A pure-PyTorch FCOS detector (ResNet, FPN, FCOS head) that mask representations plug into."""

from .backbone import FPN, FrozenBatchNorm2d, ResNet, load_backbone_weights
from .detector import Detector, build_fcos
from .fcos import FCOS, FCOSHead, Positives, compute_locations

__all__ = [
    "FCOS",
    "FPN",
    "Detector",
    "FCOSHead",
    "FrozenBatchNorm2d",
    "Positives",
    "ResNet",
    "build_fcos",
    "compute_locations",
    "load_backbone_weights",
]
