"""The one-stage detector: ResNet -> FPN -> FCOS, with an optional mask head.

The forward pass is a template: features by level name, FCOS's outputs, the mask head's outputs;
then, by ``self.training``, the losses (FCOS's and the head's, from the positives FCOS assigns)
or the detections (FCOS's, each given its mask by the head). A mask head is a
:class:`maskrep.detection.heads.MaskHead`: it declares the FPN levels it needs by name, and the
detector refuses at construction an FPN that lacks one.
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

    Training mode (``model.train()``): ``model(images, targets)`` returns a dict of scalar losses.
    ``targets``: per image a dict with ``boxes`` (G, 4) xyxy float32 and ``labels`` (G,) int64,
    plus ``masks`` (:class:`maskrep.structures.InstanceMasks`) when there is a mask head.
    Evaluation mode: ``model(images, image_sizes=...)`` returns one dict per image (see
    :meth:`FCOS.inference`; a mask head adds ``mask``, a :class:`maskrep.detection.heads.MaskMaps`)
    in the resized input frame.

    ``input_format``: the channel order the weights expect; "BGR" reverses the RGB images before
    normalising (MSRA / detectron2 weights, with ``pixel_mean`` (103.53, 116.28, 123.675) and
    ``pixel_std`` (1, 1, 1): see :data:`maskrep.detection.convert.ADELAIDET_INPUT`).
    """

    def __init__(self, backbone: ResNet, fpn: FPN, fcos: FCOS, *, mask_head: nn.Module | None = None,
                 size_divisibility: int = 32, pixel_mean=PIXEL_MEAN, pixel_std=PIXEL_STD, input_format: str = "RGB"):
        super().__init__()
        if input_format not in ("RGB", "BGR"):
            raise ValueError(f"input_format must be 'RGB' or 'BGR', got {input_format!r}")
        levels = fpn.level_names
        for who, needs in (("FCOS", fcos.in_features), (type(mask_head).__name__, getattr(mask_head, "in_features", ()))):
            missing = [k for k in needs if k not in levels]
            if missing:
                hint = " (build the FPN with use_p2=True: config model.use_p2=True)" if "p2" in missing else ""
                raise ValueError(f"{who} needs FPN levels {tuple(needs)}, but the FPN gives {levels}: "
                                 f"{', '.join(missing)} missing{hint}")
        self.input_format = input_format
        self.backbone, self.fpn, self.fcos, self.mask_head = backbone, fpn, fcos, mask_head
        self.size_divisibility = size_divisibility
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(1, 3, 1, 1), persistent=False)

    def features(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """FPN levels by name ("p3" ... "p7", and "p2" with ``use_p2``)."""
        x = images.to(self.pixel_mean.dtype)
        if self.input_format == "BGR":
            x = x.flip(1)
        x = (x - self.pixel_mean) / self.pixel_std
        return dict(zip(self.fpn.level_names, self.fpn(self.backbone(x))))

    def forward(self, images: torch.Tensor, targets: list[dict] | None = None,
                image_sizes: list[tuple[int, int]] | None = None):
        h, w = images.shape[-2:]
        if h % self.size_divisibility or w % self.size_divisibility:
            raise ValueError(f"images must be padded to a multiple of {self.size_divisibility}, got {h}x{w}")
        feats = self.features(images)
        fcos_out = self.fcos(feats, padded_size=(h, w))
        head_out = self.mask_head(feats, fcos_out) if self.mask_head is not None else None
        if self.training:
            if targets is None:
                raise ValueError("the model is in training mode and needs targets; call model.eval() for detections")
            losses, positives = self.fcos.losses(fcos_out, targets)
            if self.mask_head is not None:
                losses.update(self.mask_head.losses(head_out, fcos_out, positives, targets))
            return losses
        dets = self.fcos.inference(fcos_out, image_sizes or [(h, w)] * len(images))
        if self.mask_head is not None:
            self.mask_head.predict(head_out, fcos_out, dets)
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
    ``mask_head``: a :class:`maskrep.detection.heads.MaskHead` built for ``fpn_channels``.
    """
    backbone = ResNet(depth, norm=norm, freeze_at=freeze_at, width=width, stride_in_1x1=stride_in_1x1)
    if backbone_weights:
        missing = load_backbone_weights(backbone, backbone_weights)
        if missing:
            raise ValueError(f"{backbone_weights}: missing ResNet-{depth} keys, e.g. {missing[:5]}")
    fpn = FPN(backbone.out_channels, fpn_channels, use_p2=use_p2, norm=fpn_norm)
    head = FCOS(fpn_channels, num_classes, **(fcos or {}))
    return Detector(backbone, fpn, head, mask_head=mask_head, input_format=input_format, pixel_mean=pixel_mean,
                    pixel_std=pixel_std)
