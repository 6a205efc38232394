"""BlendMask: K shared bases blended by per-instance attentions (arXiv:2001.00309; docs/methods.md §4),
with CRMask's rank-k attentions as an option (docs/methods.md §3.3)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ...assembly import blend, blend_pooled, unit_attentions
from ...ops.roi import roi_align
from ...structures import crop_batch
from ..fcos import FCOSOutput, Positives
from ..layers import BasisModule
from .base import MaskHead, MaskMaps, gt_masks_of, thing_regions

__all__ = ["BlendMaskHead"]


class BlendMaskHead(MaskHead):
    """BlendMask's head: bases from the bottom module, K x M x M attentions per location from one conv
    on FCOS's box tower, blended at R x R in each box.

    Parameters
    ----------
    in_channels : FPN (box-tower) channels.
    num_classes : classes of the data (the semantic head predicts them plus background); None
        switches the auxiliary semantic loss off.
    num_bases, attn_size, mask_size : K = 4, M = 14, R = 56 (BlendMask's code defaults).
    attention : "blendmask": one 3x3 conv to K M² channels (784); "crmask": CRMask's rank-k units per
        basis (U and V: K M k channels each, s: K k; 348 at rank 3), each attention
        Û diag(exp s) V̂ᵀ (:func:`maskrep.assembly.unit_attentions`).
    rank : k of the "crmask" attentions.
    basis_channels, basis_convs, norm : the bottom module (128 channels, 3 convs). BlendMask
        normalises with SyncBN, which needs several processes; GroupNorm is the default here, and
        "BN" is BlendMask's choice on one process.
    semantic_norm : the semantic head's norm, "BN" as BlendMask's (whatever ``norm`` is); "GN"
        or None on request.
    mask_weight : weight of ``loss_mask`` (BlendMask's ``INSTANCE_LOSS_WEIGHT``, 1.0).
    semantic_weight : weight of ``loss_semantic`` (0.3, ``BASIS_MODULE.LOSS_WEIGHT``).

    Notes
    -----
    Training: every FCOS positive uses its GT box; the bases are RoIAligned (aligned, one sample per
    bin, scale 1/4) once per GT box and indexed by the positives' GTs; ``loss_mask`` = Σ_i c_i
    mean_p BCE(m_ip, y_ip) / loss_denorm against the GT crop at R x R. The semantic target is the
    thing class map (0 = background, class + 1 where an instance or a crowd region covers the
    pixel, later annotations over earlier ones in the file's order), sampled every 8 pixels as
    BlendMask's nearest-neighbour down-sampling does; ``loss_semantic`` is its cross-entropy. Inference: the detections' boxes,
    sigmoid of the blended logits, pasted into the boxes. BlendMask's configurations set FCOS to
    threshold on cls x ctr and drop the per-level scales.

    Deliberate differences from BlendMask's code:

    - the bottom module normalises with GroupNorm by default (BlendMask: SyncBN, which a single
      process cannot run; ``norm="BN"`` is its one-process equivalent); the semantic head keeps
      BlendMask's BatchNorm;
    - the thing semantic map is painted from the batch's instance and crowd masks in the resized,
      flipped frame (BlendMask rasterises the map once at the original size with a separate script
      and resizes it with the image), in the same order;
    - a detection-free image gives empty float maps (BlendMask's empty path reshapes the integer
      class tensor).
    """

    in_features = ("p3", "p4", "p5")

    def __init__(self, *, in_channels: int = 256, num_classes: int | None = None, num_bases: int = 4,
                 attn_size: int = 14, mask_size: int = 56, attention: str = "blendmask", rank: int = 3,
                 basis_channels: int = 128, basis_convs: int = 3, norm: str | None = "GN",
                 semantic_norm: str | None = "BN", mask_weight: float = 1.0, semantic_weight: float = 0.3):
        super().__init__()
        if attention not in ("blendmask", "crmask"):
            raise ValueError(f"attention must be 'blendmask' or 'crmask', got {attention!r}")
        self.num_bases, self.attn_size, self.mask_size = num_bases, attn_size, mask_size
        self.attention, self.rank = attention, rank
        self.mask_weight, self.semantic_weight = float(mask_weight), float(semantic_weight)
        self.basis = BasisModule(in_channels, num_bases=num_bases, channels=basis_channels, num_convs=basis_convs,
                                 norm=norm, num_classes=num_classes if semantic_weight > 0 else None,
                                 semantic_norm=semantic_norm)
        k, m = num_bases, attn_size
        channels = k * m * m if attention == "blendmask" else k * (2 * m * rank + rank)
        self.top_layer = nn.Conv2d(in_channels, channels, 3, 1, 1)
        nn.init.normal_(self.top_layer.weight, std=0.01)
        nn.init.zeros_(self.top_layer.bias)

    def forward(self, features: dict[str, torch.Tensor], fcos_out: FCOSOutput) -> dict:
        bases, sem = self.basis([features[k] for k in self.in_features])
        return {"bases": bases, "semantic": sem, "attns": [self.top_layer(t) for t in fcos_out.bbox_towers]}

    def _attentions(self, flat: torch.Tensor) -> torch.Tensor:
        """(N, channels) per-location outputs -> (N, K, M, M) attention logits."""
        k, m = self.num_bases, self.attn_size
        if self.attention == "blendmask":
            return flat.reshape(-1, k, m, m)
        return unit_attentions(flat, k, m, self.rank)

    def losses(self, head_out: dict, fcos_out: FCOSOutput, positives: Positives,
               targets: list[dict]) -> dict[str, torch.Tensor]:
        bases = head_out["bases"]
        attns = self._attentions(self.at_positives(head_out["attns"], positives))  # (P, K, M, M)
        losses = {}
        masks = gt_masks_of(targets, "BlendMaskHead")
        if len(positives) == 0:
            losses["loss_mask"] = self.zero_loss(head_out)
        else:
            gt_boxes = torch.cat([t["boxes"] for t in targets]).to(bases.device, torch.float32)  # (G, 4)
            gt_images = torch.cat([torch.full((len(t["boxes"]),), float(i)) for i, t in enumerate(targets)])
            rois = torch.cat([gt_images[:, None].to(bases.device), gt_boxes], 1)  # (G, 5)
            pooled = roi_align(bases, rois, self.mask_size, spatial_scale=0.25, sampling_ratio=1, aligned=True)
            logits = blend_pooled(pooled[positives.gt_inds], attns)  # (P, R, R)
            gt_crops = crop_batch(masks, torch.arange(len(gt_boxes)), gt_boxes, self.mask_size)  # (G, R, R)
            target = gt_crops[positives.gt_inds].float()
            per = F.binary_cross_entropy_with_logits(logits, target, reduction="none").mean((1, 2))
            losses["loss_mask"] = self.weighted_mean(per, positives, self.mask_weight)
        if head_out["semantic"] is not None:
            sem = head_out["semantic"]  # (B, C + 1, H/8, W/8)
            target = self.semantic_target(targets, masks, fcos_out.padded_size, tuple(sem.shape[-2:]))
            losses["loss_semantic"] = self.semantic_weight * F.cross_entropy(sem, target.to(sem.device))
        return losses

    @staticmethod
    def semantic_target(targets: list[dict], masks: list, padded_size: tuple[int, int],
                        shape: tuple[int, int]) -> torch.Tensor:
        """(B, H', W') int64 thing class map of the batch: 0 = background, label + 1 where an instance
        or a crowd region covers the pixel (later annotations over earlier ones, the file's order),
        sampled every ``Hp / H'`` pixels from the top-left pixel (nearest-neighbour down-sampling)."""
        target = torch.zeros(len(targets), *shape, dtype=torch.long)
        stride = padded_size[0] // shape[0]
        for i, (t, m) in enumerate(zip(targets, masks)):
            regions, labels = thing_regions(t, m)
            bitmaps = torch.from_numpy(regions.to_bitmap(stride, padded_size, offset=0))
            for mask, label in zip(bitmaps, labels):
                target[i][mask] = int(label) + 1
        return target

    @torch.no_grad()
    def predict(self, head_out: dict, fcos_out: FCOSOutput, detections: list[dict]) -> None:
        bases = head_out["bases"]
        for i, det in enumerate(detections):
            attns = self._attentions(self.at_detections(head_out["attns"], det, i).float())
            logits = blend(bases[i : i + 1].float(), attns, det["boxes"].float(), mask_size=self.mask_size)
            det["mask"] = MaskMaps(torch.sigmoid(logits), "box")
