"""A codec inside any detector: a mask predictor that outputs codes, the targets, and the loss each
codec was designed with (docs/integrations.md).

    >>> import torch
    >>> from maskrep.codecs import get_codec
    >>> codec = get_codec("dct", mask_size=28, dim=60)
    >>> predictor = CodecMaskPredictor(codec, in_channels=8)
    >>> predictor(torch.zeros(3, 8, 14, 14)).shape, predictor.decode(predictor(torch.zeros(3, 8))).shape
    (torch.Size([3, 60]), torch.Size([3, 28, 28]))
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["CodecMaskPredictor", "codec_loss", "codec_targets", "loss_kind", "torchvision_codec_maskrcnn"]


class CodecMaskPredictor(nn.Module):
    """Features -> the codec's codes -> mask maps, for any detector's mask branch.

    Parameters
    ----------
    codec : a fitted (or fit-free) :class:`maskrep.codecs.MaskCodec`; its torch module becomes a
        frozen part of the predictor (buffers: it moves with ``.to(device)`` and is saved with it).
    in_channels : C of the features.
    roi_size : R of RoI features (N, C, R, R) (14, Mask R-CNN's).
    num_convs, hidden : for RoI features: ``num_convs`` 3x3 convs of ``hidden`` channels and ReLU,
        then a linear layer from the flattened map to the codes; for per-location features (N, C):
        one hidden linear layer of ``hidden`` units.
    code_init : "ellipse" (default): the output bias starts at the code of the ellipse inscribed in
        the box, a shape for codecs whose zero code is none; "zero".

    ``forward(features) -> (N, D)`` codes; ``decode(codes) -> (N, S, S)`` the codec's decoded
    values (logits for codecs in logit space, probabilities otherwise), differentiable;
    ``probabilities(codes)``, the maps to paste (:func:`maskrep.ops.paste_masks_to_rle`).
    """

    def __init__(self, codec, in_channels: int, *, roi_size: int = 14, num_convs: int = 2, hidden: int = 256,
                 code_init: str = "ellipse"):
        super().__init__()
        self.codec = codec
        self.decoder = copy.deepcopy(codec.module()).float().requires_grad_(False)
        d = codec.code_length
        self.convs = nn.Sequential(*[m for k in range(num_convs) for m in (
            nn.Conv2d(in_channels if k == 0 else hidden, hidden, 3, 1, 1), nn.ReLU())])
        self.roi_size = roi_size
        self.to_codes = nn.Linear((hidden if num_convs else in_channels) * roi_size**2, d)
        self.mlp = nn.Sequential(nn.Linear(in_channels, hidden), nn.ReLU(), nn.Linear(hidden, d))
        if code_init not in ("ellipse", "zero"):
            raise ValueError(f"code_init must be 'ellipse' or 'zero', got {code_init!r}")
        s = codec.mask_size
        yy, xx = torch.meshgrid(torch.arange(s) + 0.5, torch.arange(s) + 0.5, indexing="ij")
        ellipse = ((yy / s - 0.5) ** 2 + (xx / s - 0.5) ** 2 < 0.25)[None]
        bias = self.decoder.encode(ellipse)[0].float() if code_init == "ellipse" else torch.zeros(d)
        self.register_buffer("code_bias", bias)
        for layer in (self.to_codes, self.mlp[-1]):
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if features.dim() == 4:
            if features.shape[-2:] != (self.roi_size, self.roi_size):
                raise ValueError(f"RoI features must be (N, C, {self.roi_size}, {self.roi_size}), got "
                                 f"{tuple(features.shape)} (roi_size sets R)")
            return self.to_codes(self.convs(features).flatten(1)) + self.code_bias
        if features.dim() == 2:
            return self.mlp(features) + self.code_bias
        raise ValueError(f"features must be RoI maps (N, C, R, R) or per-location vectors (N, C), got {tuple(features.shape)}")

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return self.decoder.decode_logits(codes.float())

    def probabilities(self, codes: torch.Tensor) -> torch.Tensor:
        return self.decoder.paste_maps(codes.float())


def _crops(gt_masks, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """(N, S, S) bool crops of the GT masks in ``boxes``, on the boxes' device."""
    from .ops.polygons import as_polygon
    from .structures import InstanceMasks

    b = boxes.detach().float().cpu()
    if isinstance(gt_masks, InstanceMasks):
        masks = gt_masks
    elif torch.is_tensor(gt_masks) or isinstance(gt_masks, np.ndarray):
        m = gt_masks.detach().cpu().numpy() if torch.is_tensor(gt_masks) else np.asarray(gt_masks)
        masks = InstanceMasks.from_bitmaps(m.astype(bool))
    else:  # a list: per instance polygons, or a COCO RLE dict
        items = list(gt_masks)
        size_hw = next((tuple(i["size"]) for i in items if isinstance(i, dict)), None)
        masks = InstanceMasks([i if isinstance(i, dict) else [as_polygon(p) for p in i] for i in items], size_hw)
    if len(masks) != len(b):
        raise ValueError(f"gt_masks hold {len(masks)} instances for {len(b)} boxes")
    return torch.from_numpy(np.asarray(masks.crop_in_boxes(b.numpy(), size))).to(boxes.device)


def codec_targets(codec, gt_masks, boxes: torch.Tensor, *, jitter: torch.Generator | None = None) -> dict:
    """The training targets of N instances, each GT mask cropped to its box (pycocotools' rule for
    polygons, RoIAlign for bitmaps).

    Parameters
    ----------
    gt_masks : (N, H, W) bool bitmaps (array or tensor), a list of N instances' polygons (each a
        list of flat [x0, y0, ...] or (P, 2)) or COCO RLE dicts, or an InstanceMasks.
    boxes : (N, 4) xyxy the masks are cropped in (GT or proposal boxes).
    jitter : a generator: MEInst's freshly jittered logit targets, for codecs with the "jitter"
        capability; others ignore it.

    Returns {"crops": (N, S, S) float 0/1, "codes": (N, D)} on the boxes' device.
    """
    crops = _crops(gt_masks, boxes, codec.mask_size)
    module = copy.deepcopy(codec.module()).float().to(boxes.device)
    with torch.no_grad():
        if jitter is not None and "jitter" in codec.capabilities:
            codes = module.jittered_targets(crops, jitter)
        else:
            codes = module.encode(crops)
    return {"crops": crops.float(), "codes": codes.float()}


def loss_kind(codec) -> str:
    """The loss a codec was designed with: "codes" (MSE on the codes: PCA, DCT, bitmap, as MEInst
    trains PCA and DCT-Mask its coefficients) or "mask" (BCE of the decoded map against the crop:
    the contour, polar and learned codecs, and CRMask's SVD units in their 'cls' form)."""
    from .codecs import BitmapCodec, DCTCodec, PCACodec

    return "codes" if isinstance(codec, (PCACodec, DCTCodec, BitmapCodec)) else "mask"


def codec_loss(predictor: CodecMaskPredictor, codes: torch.Tensor, targets: dict) -> torch.Tensor:
    """The mean per-instance loss of predicted ``codes`` (N, D) against :func:`codec_targets`: MSE
    summed over the code for "codes" codecs, pixel-mean BCE through the decoder for "mask" ones
    (:func:`loss_kind`); 0 tied to the graph for N = 0."""
    if len(codes) == 0:
        return codes.sum() * 0
    if loss_kind(predictor.codec) == "codes":
        return ((codes.float() - targets["codes"]) ** 2).sum(1).mean()
    values = predictor.decode(codes)
    if predictor.decoder.logit_space:
        return F.binary_cross_entropy_with_logits(values, targets["crops"], reduction="none").mean((1, 2)).mean()
    return F.binary_cross_entropy(values.clamp(1e-6, 1 - 1e-6), targets["crops"], reduction="none").mean((1, 2)).mean()


class _TorchvisionMaskPredictor(nn.Module):
    """torchvision's ``roi_heads.mask_predictor`` slot: RoI features (N, 256, 14, 14) -> (N, K, S, S)
    mask logits, the codec's decoded map (class-agnostic, the same for every class)."""

    def __init__(self, codec, in_channels: int, num_classes: int):
        super().__init__()
        self.predictor = CodecMaskPredictor(codec, in_channels, roi_size=14)
        self.num_classes = num_classes

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        values = self.predictor.decode(self.predictor(features))
        if not self.predictor.decoder.logit_space:  # a clamp-decoded map: its logit, for the BCE
            values = torch.logit(values.clamp(1e-4, 1 - 1e-4))
        return values[:, None].expand(-1, self.num_classes, -1, -1)


def torchvision_codec_maskrcnn(codec, num_classes: int, **kwargs):
    """torchvision's ``maskrcnn_resnet50_fpn`` (no weights unless ``kwargs`` ask) whose mask branch
    predicts the codec's codes: ``roi_heads.mask_predictor`` is swapped for a
    :class:`CodecMaskPredictor` on its (N, 256, 14, 14) RoI features, decoding to S x S maps that
    torchvision's own mask loss (BCE against the GT cropped to S x S) trains through the decoder,
    and that its post-processing pastes. torchvision's ``mask_head`` convs stay in front."""
    from torchvision.models.detection import maskrcnn_resnet50_fpn

    model = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=num_classes, **kwargs)
    model.roi_heads.mask_predictor = _TorchvisionMaskPredictor(codec, 256, num_classes)
    return model
