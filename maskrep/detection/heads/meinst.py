"""MEInst: per-location mask codes, decoded by a fixed codec (arXiv:2003.11712; docs/methods.md §2.3)."""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn import functional as F

from ...codecs import MaskCodec
from ...structures import crop_batch
from ..backbone import conv_tower
from ..fcos import FCOSOutput, Positives
from .base import MaskHead, MaskMaps, gt_masks_of

__all__ = ["MEInstHead"]


class MEInstHead(MaskHead):
    """MEInst's head: a mask tower on every FPN level and a conv to D code coefficients per location.

    Parameters
    ----------
    codec : MaskCodec
        A fitted codec; its torch module (buffers: MEInst's PCA matrices) becomes part of the head,
        so checkpoints carry it. MEInst uses ``maskrep fit pca`` (28 x 28, D = 60, whitened, logit
        space); any registered codec works (a codec-agnostic coefficient head).
    in_channels : FPN channels.
    num_convs, norm : the mask tower (MEInst: 4 x [3x3 conv, GN, ReLU], shared over levels).
    loss : "mse" (MEInst's default: Σ_i c_i ||v̂_i - v_i||² / max(D Σc, 1)) or "mask" (its
        ``LOSS_ON_MASK``: decode v̂ to logits and take the pixel BCE against the binary crop,
        Σ_i c_i Σ_p BCE / max(S² Σc, 1); codecs that decode to logits only).
    jitter : redraw MEInst's sigmoid jitter for the code targets at every step (PCA codecs in
        logit space); otherwise the codec's deterministic encoding is the target.
    seed : seeds the jitter; the step counter is a buffer, so a resumed run draws the same noise.
    code_init : "zero" (MEInst: the code predictor's bias starts at 0, PCA's mean shape) or
        "ellipse" (it starts at the code of the ellipse inscribed in the box: a shape to start
        from for codecs whose zero code is none, such as the contour codecs' polygon at one corner).

    Notes
    -----
    Targets are the codes of each positive's GT mask cropped to its GT box (MEInst crops to the
    "positive box", location ∓ target distances, which is the GT box). MEInst picks the GT by an
    IoU matcher between GT and positive boxes; FCOS's ``gt_inds`` is that same GT except when two
    GTs share a box exactly (docs/methods.md §2.3). Inference decodes each detection's code and
    pastes it into the detection's box; a codec with the "paste" capability (the contour codecs)
    pastes its codes itself (it fills its polygon at image resolution), so the head's masks are the
    ones ``maskrep reconstruct`` measures.

    Deliberate differences from MEInst's code: the GT of a positive (above); the jitter is drawn
    from a generator seeded by (seed, step, rank), not the global RNG, and can be switched off;
    the matrix is loaded at construction (MEInst loads it at the first training forward) and
    travels in checkpoints; codecs other than PCA are maskrep's extension.
    """

    in_features = ("p3", "p4", "p5", "p6", "p7")

    def __init__(self, *, codec: MaskCodec, in_channels: int = 256, num_convs: int = 4, norm: str = "GN",
                 loss: str = "mse", jitter: bool = True, seed: int = 0, code_init: str = "zero"):
        super().__init__()
        if loss not in ("mse", "mask"):
            raise ValueError(f"loss must be 'mse' or 'mask', got {loss!r}")
        self.codec = codec
        self.codec_module = copy.deepcopy(codec.module()).float()
        if loss == "mask" and not self.codec_module.logit_space:
            raise ValueError(f"loss='mask' needs a codec that decodes to logits; {codec!r} does not")
        self.loss_type = loss
        self.jitter = jitter and "jitter" in codec.capabilities
        self.seed = int(seed)
        self.register_buffer("jitter_step", torch.zeros((), dtype=torch.long))
        self.mask_tower = conv_tower(in_channels, num_convs, norm)
        self.mask_pred = nn.Conv2d(in_channels, codec.code_length, 3, 1, 1)
        nn.init.normal_(self.mask_pred.weight, std=0.01)
        if code_init == "zero":
            nn.init.zeros_(self.mask_pred.bias)
        elif code_init == "ellipse":
            s = codec.mask_size
            yy, xx = torch.meshgrid(torch.arange(s) + 0.5, torch.arange(s) + 0.5, indexing="ij")
            ellipse = ((yy / s - 0.5) ** 2 + (xx / s - 0.5) ** 2 < 0.25)[None]  # (1, S, S)
            with torch.no_grad():
                self.mask_pred.bias.copy_(self.codec_module.encode(ellipse)[0])
        else:
            raise ValueError(f"code_init must be 'zero' or 'ellipse', got {code_init!r}")

    def forward(self, features: dict[str, torch.Tensor], fcos_out: FCOSOutput) -> dict:
        return {"codes": [self.mask_pred(self.mask_tower(features[k])) for k in self.in_features]}  # (B, D, H, W)

    def _targets(self, masks: torch.Tensor) -> torch.Tensor:
        if not self.jitter:
            return self.codec_module.encode(masks)
        return self.codec_module.jittered_targets(masks, self.step_generator("jitter_step", masks.device))

    def losses(self, head_out: dict, fcos_out: FCOSOutput, positives: Positives,
               targets: list[dict]) -> dict[str, torch.Tensor]:
        pred = self.at_positives(head_out["codes"], positives)  # (P, D)
        if len(positives) == 0:
            return {"loss_mask": self.zero_loss(head_out)}
        crops = crop_batch(gt_masks_of(targets, "MEInstHead"), positives.gt_inds, positives.gt_boxes,
                           self.codec.mask_size)  # (P, S, S) bool
        c = positives.gt_ctrs
        if self.loss_type == "mse":
            with torch.no_grad():
                target = self._targets(crops)  # (P, D)
            per = ((pred.float() - target) ** 2).sum(1)  # (P,)
            denom = (positives.loss_denorm * pred.shape[1]).clamp(min=1.0)
        else:
            logits = self.codec_module.decode_logits(pred.float()).flatten(1)  # (P, S*S)
            per = F.binary_cross_entropy_with_logits(logits, crops.flatten(1).float(), reduction="none").sum(1)
            denom = (positives.loss_denorm * logits.shape[1]).clamp(min=1.0)
        return {"loss_mask": (c * per).sum() / denom}

    @torch.no_grad()
    def predict(self, head_out: dict, fcos_out: FCOSOutput, detections: list[dict]) -> None:
        for i, det in enumerate(detections):
            codes = self.at_detections(head_out["codes"], det, i).float()  # (n, D)
            if "paste" in self.codec.capabilities:  # the codec draws its shape in the image (contour codecs)
                det["mask"] = MaskMaps(codes, "codes", codec=self.codec)
            else:
                det["mask"] = MaskMaps(self.codec_module.paste_maps(codes), "box")
