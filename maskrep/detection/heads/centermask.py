"""CenterMask (Wang et al., arXiv:2004.04446): a local shape per location times a global saliency map,
ported to FCOS points (docs/methods.md §6)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ...assembly import shape_saliency
from ...assembly.embedding import box_cells
from ..fcos import FCOSOutput, Positives
from ..layers import BasisModule
from .base import MaskHead, MaskMaps, gt_masks_of

__all__ = ["CenterMaskHead"]


class CenterMaskHead(MaskHead):
    """CenterMask's local shape x global saliency on FCOS.

    Parameters
    ----------
    in_channels : FPN (box-tower) channels.
    num_classes : classes of the data; the class-specific saliency has one channel per class.
    mask_size : S = 32, the side of the local shape (S² = 1024 channels per location).
    saliency : "class" (one map per class, read at the instance's class) or "agnostic" (one map).
    saliency_channels, saliency_convs, norm : the saliency branch, BlendMask's bottom module on
        P3-P5 (refine, sum, convs, x2 up-sampling to stride 4) with 1 or C outputs.
    max_proposals : positives per step that train the mask, drawn at random from a seeded
        generator when there are more (500), to bound the (P, H/4, W/4) maps.
    mask_weight : weight of ``loss_mask``.
    threshold : the mask threshold at inference (0.4).
    seed : the proposal draw's seed.

    Notes
    -----
    The paper's network is CenterNet on Hourglass/DLA and its code was never released; what the
    paper states is the representation: M = σ(local shape resized to the box) ⊙ σ(saliency cropped
    to the box). Everything else here is maskrep's port to FCOS, after the paper's remark that it
    works on FCOS, with the most likely readings of what it leaves open:

    - the shape is a 3x3 conv on FCOS's box tower to S² channels at every location (S = 32, the
      size both unofficial ports default to);
    - the saliency is class-specific by default (the paper reportedly preferred it; one unofficial
      port has C channels, the other 1), from a P3-P5 fusion up-sampled to stride 4;
    - training uses each positive's GT box (a port that used the predicted size is wrong there)
      and the GT mask point-sampled at stride 4; the loss is the binary cross-entropy of the
      product (a probability, clamped to [1e-6, 1 - 1e-6]) over the box's cells, weighted by
      centerness and normalised like FCOS's box loss: Σ_i c_i mean_box BCE / loss_denorm (when
      more than ``max_proposals`` positives are sampled, scaled by P / P' so its size does not
      depend on the sample);
    - inference: the detection's box and class, the product on the stride-4 grid (zero outside the
      box, all detections at once), resampled to the image and thresholded at 0.4, the value both
      unofficial ports use.

    Deliberate differences from the two unofficial ports (CenterNet on DLA / ResNet):

    - FCOS locations and boxes instead of CenterNet peaks, offsets and sizes;
    - the GT box places and sizes each shape in training (one port resizes with the predicted size);
    - the shape is sampled at the centres of the pixels the stride-4 cells stand for
      (i s + s // 2 + 0.5, where the ground truth is sampled), and the maps are up-sampled to the
      image as the detectron2 ports of CondInst and EmbedMask do (cell i on pixel i s + s // 2);
    - at most ``max_proposals`` positives per step train the mask, drawn from a seeded generator.
    """

    in_features = ("p3", "p4", "p5")

    def __init__(self, *, in_channels: int = 256, num_classes: int | None = None, mask_size: int = 32,
                 saliency: str = "class", saliency_channels: int = 128, saliency_convs: int = 3, norm: str | None = "GN",
                 max_proposals: int = 500, mask_weight: float = 1.0, threshold: float = 0.4, seed: int = 0):
        super().__init__()
        if saliency not in ("class", "agnostic"):
            raise ValueError(f"saliency must be 'class' or 'agnostic', got {saliency!r}")
        if saliency == "class" and not num_classes:
            raise ValueError("a class-specific saliency needs num_classes (or saliency='agnostic')")
        self.mask_size, self.saliency = mask_size, saliency
        self.max_proposals, self.mask_weight, self.threshold, self.seed = max_proposals, mask_weight, threshold, seed
        self.register_buffer("draw_step", torch.zeros((), dtype=torch.long))
        self.shape_pred = nn.Conv2d(in_channels, mask_size * mask_size, 3, 1, 1)
        nn.init.normal_(self.shape_pred.weight, std=0.01)
        nn.init.zeros_(self.shape_pred.bias)
        self.saliency_branch = BasisModule(in_channels, num_bases=num_classes if saliency == "class" else 1,
                                           channels=saliency_channels, num_convs=saliency_convs, norm=norm)

    def forward(self, features: dict[str, torch.Tensor], fcos_out: FCOSOutput) -> dict:
        saliency, _ = self.saliency_branch([features[k] for k in self.in_features])  # (B, C or 1, H/4, W/4)
        return {"shapes": [self.shape_pred(t) for t in fcos_out.bbox_towers], "saliency": saliency}

    def _assemble(self, saliency: torch.Tensor, shapes: torch.Tensor, boxes: torch.Tensor, images: torch.Tensor,
                  labels: torch.Tensor, stride: int) -> torch.Tensor:
        """(N, H/4, W/4) probabilities: each instance's shape and its image's (class's) saliency."""
        b, c = saliency.shape[:2]
        maps = saliency.reshape(b * c, 1, *saliency.shape[-2:])  # one map per (image, class)
        which = images * c + (labels if c > 1 else torch.zeros_like(labels))
        s = self.mask_size
        return shape_saliency(shapes.reshape(-1, s, s), maps, boxes, which, stride=stride)

    def losses(self, head_out: dict, fcos_out: FCOSOutput, positives: Positives,
               targets: list[dict]) -> dict[str, torch.Tensor]:
        saliency = head_out["saliency"]
        masks = gt_masks_of(targets, "CenterMaskHead")
        keep = self.sample_positives(len(positives), self.max_proposals, saliency.device)
        shapes = self.at_positives(head_out["shapes"], positives)[keep]
        if len(keep) == 0:
            return {"loss_mask": self.zero_loss(head_out)}
        boxes = positives.gt_boxes[keep]
        stride = fcos_out.stride_of(saliency)
        probs = self._assemble(saliency, shapes, boxes, positives.im_inds[keep], positives.labels[keep],
                               stride)  # (P', H/4, W/4)
        gt = torch.cat([torch.from_numpy(m.to_bitmap(stride, fcos_out.padded_size)) for m in masks])
        target = gt.to(probs.device)[positives.gt_inds[keep]].float()
        inside = box_cells(boxes.to(probs.dtype), *probs.shape[-2:], stride).to(probs.dtype)
        bce = F.binary_cross_entropy(probs.clamp(1e-6, 1 - 1e-6), target, reduction="none")
        per = (bce * inside).sum((1, 2)) / inside.sum((1, 2)).clamp(min=1.0)
        c = positives.gt_ctrs[keep]
        scale = len(positives) / len(keep)  # the sampled positives stand for all of them
        return {"loss_mask": self.mask_weight * scale * (c * per).sum() / positives.loss_denorm}

    @torch.no_grad()
    def predict(self, head_out: dict, fcos_out: FCOSOutput, detections: list[dict]) -> None:
        saliency = head_out["saliency"]
        stride = fcos_out.stride_of(saliency)
        for i, det in enumerate(detections):
            shapes = self.at_detections(head_out["shapes"], det, i).float()
            images = torch.zeros_like(det["labels"])
            probs = self._assemble(saliency[i : i + 1].float(), shapes, det["boxes"].float(), images, det["labels"],
                                   stride)
            det["mask"] = MaskMaps(probs, "image", stride=stride, threshold=self.threshold)
