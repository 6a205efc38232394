"""The one-stage detector: ResNet -> FPN -> FCOS, with an optional mask head.

A mask head is any ``nn.Module`` with

- ``top_module`` (an ``nn.Module`` or None): handed to the FCOS head at construction, run on the
  bbox tower of every level; its per-location output arrives as ``Positives.top_feats`` and each
  detection's ``top_feats``;
- ``losses(features, head_out, positives, targets) -> dict`` of named losses;
- ``inference(features, head_out, detections, image_sizes) -> None``, adding ``mask_probs``
  ((n, S, S) probabilities in each detection's box) or ``masks`` ((n, h, w) bool) to each
  detection dict.

``features`` are all FPN levels, finest first (P2 first when the FPN has it).
"""

from __future__ import annotations

import torch
from torch import nn

from .backbone import FPN, ResNet, load_backbone_weights
from .fcos import FCOS

__all__ = ["PIXEL_MEAN", "PIXEL_STD", "Detector", "build_fcos"]

#: torchvision's ImageNet statistics for RGB in [0, 255] (what torchvision-named weights expect).
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)


class Detector(nn.Module):
    """images: (B, 3, H, W) RGB in [0, 255] (uint8 or float), padded to ``size_divisibility``.

    ``input_format``: the channel order the weights expect; "BGR" reverses the RGB images before
    normalising (MSRA / detectron2 weights, with ``pixel_mean`` (103.53, 116.28, 123.675) and
    ``pixel_std`` (1, 1, 1): see :data:`maskrep.detection.convert.ADELAIDET_INPUT`).

    Training (``targets`` given): returns a dict of scalar losses.
    Inference: returns one dict per image (see :meth:`FCOS.inference`), in the resized frame.
    """

    def __init__(self, backbone: ResNet, fpn: FPN, fcos: FCOS, *, mask_head: nn.Module | None = None,
                 size_divisibility: int = 32, pixel_mean=PIXEL_MEAN, pixel_std=PIXEL_STD, input_format: str = "RGB"):
        super().__init__()
        if input_format not in ("RGB", "BGR"):
            raise ValueError(f"input_format must be 'RGB' or 'BGR', got {input_format!r}")
        self.input_format = input_format
        self.backbone, self.fpn, self.fcos, self.mask_head = backbone, fpn, fcos, mask_head
        self.size_divisibility = size_divisibility
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(1, 3, 1, 1), persistent=False)

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = images.to(self.pixel_mean.dtype)
        if self.input_format == "BGR":
            x = x.flip(1)
        x = (x - self.pixel_mean) / self.pixel_std
        return self.fpn(self.backbone(x))

    def forward(self, images: torch.Tensor, targets: list[dict] | None = None,
                image_sizes: list[tuple[int, int]] | None = None):
        h, w = images.shape[-2:]
        if h % self.size_divisibility or w % self.size_divisibility:
            raise ValueError(f"images must be padded to a multiple of {self.size_divisibility}, got {h}x{w}")
        feats = self.features(images)
        head_out, locations = self.fcos(feats[-len(self.fcos.strides):])
        if targets is not None:
            losses, positives = self.fcos.losses(head_out, locations, targets)
            if self.mask_head is not None:
                losses.update(self.mask_head.losses(feats, head_out, positives, targets))
            return losses
        sizes = image_sizes or [(h, w)] * len(images)
        dets = self.fcos.inference(head_out, locations, sizes)
        if self.mask_head is not None:
            self.mask_head.inference(feats, head_out, dets, sizes)
        return dets


def build_fcos(num_classes: int, *, depth: int = 50, norm: str = "FrozenBN", freeze_at: int = 2, width: int = 64,
               fpn_channels: int = 256, fpn_norm: str | None = None, use_p2: bool = False,
               backbone_weights: str | None = None, mask_head: nn.Module | None = None,
               fcos: dict | None = None, stride_in_1x1: bool = False, input_format: str = "RGB",
               pixel_mean=PIXEL_MEAN, pixel_std=PIXEL_STD) -> Detector:
    """ResNet-``depth`` + FPN (P3-P7, plus P2 when ``use_p2``) + FCOS; ``fcos`` holds :class:`FCOS` keywords.

    ``backbone_weights``: a torchvision-named ResNet state dict file, loaded before freezing matters
    (frozen parameters keep the loaded values). ``stride_in_1x1``, ``input_format``, ``pixel_mean``
    and ``pixel_std`` say what the weights expect (torchvision's by default; AdelaiDet's:
    :data:`maskrep.detection.convert.ADELAIDET_INPUT` with ``stride_in_1x1=True``).
    """
    backbone = ResNet(depth, norm=norm, freeze_at=freeze_at, width=width, stride_in_1x1=stride_in_1x1)
    if backbone_weights:
        missing = load_backbone_weights(backbone, backbone_weights)
        if missing:
            raise ValueError(f"{backbone_weights}: missing ResNet-{depth} keys, e.g. {missing[:5]}")
    fpn = FPN(backbone.out_channels, fpn_channels, use_p2=use_p2, norm=fpn_norm)
    top = getattr(mask_head, "top_module", None)
    head = FCOS(fpn_channels, num_classes, top_module=top, **(fcos or {}))
    return Detector(backbone, fpn, head, mask_head=mask_head, input_format=input_format, pixel_mean=pixel_mean,
                    pixel_std=pixel_std)
