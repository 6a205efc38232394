"""RefineMask (Zhang et al., arXiv:2104.08569) as a second stage on FCOS's boxes: multi-stage mask
refinement with semantic fusion and boundary-aware training and merging (docs/methods.md §7)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ...ops.boundary import boundary_band
from ...ops.masks import binarize
from ...ops.roi import multilevel_roi_align, roi_align
from ...structures import crop_batch
from ..fcos import FCOSOutput, Positives
from .base import MaskHead, MaskMaps, gt_masks_of

__all__ = ["RefineMaskHead", "merge_stages"]


def _conv(cin: int, cout: int, k: int = 3, dilation: int = 1) -> nn.Conv2d:
    conv = nn.Conv2d(cin, cout, k, 1, dilation * (k // 2), dilation=dilation)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    nn.init.zeros_(conv.bias)
    return conv


def _paired_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of a[i] with b[i]: (N, 4) x (N, 4) xyxy -> (N,)."""
    w = (torch.minimum(a[:, 2], b[:, 2]) - torch.maximum(a[:, 0], b[:, 0])).clamp(min=0)
    h = (torch.minimum(a[:, 3], b[:, 3]) - torch.maximum(a[:, 1], b[:, 1])).clamp(min=0)
    inter = w * h
    area = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]) + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / (area - inter).clamp(min=1e-9)


def _up(x: torch.Tensor, size: int) -> torch.Tensor:
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=True)


def merge_stages(stage_logits: list[torch.Tensor], width: int = 1) -> torch.Tensor:
    """RefineMask's boundary-aware merge (docs/methods.md §7): start from the second stage's logits;
    at each finer stage keep the up-sampled coarser logits except in the band of width ``width``
    (1) around the current mask's contour, where the finer stage's logits replace them.

    stage_logits : list of (N, S_k, S_k) logits, each stage twice the side of the one before.
    Returns (N, S_last, S_last) merged logits. The band is up-sampled bilinearly
    (align_corners=True) and kept where >= 0.5, the one rule training and inference share here.
    """
    merged = stage_logits[0]
    for finer in stage_logits[1:]:
        size = finer.shape[-1]
        band = binarize(_up(boundary_band(binarize(merged.sigmoid()), width)[:, None].float(), size)[:, 0])
        merged = torch.where(band, finer, _up(merged[:, None], size)[:, 0])
    return merged


class _Stage(nn.Module):
    """One semantic fusion stage: F_k (C_k @ s) -> F_{k+1} (C_{k+1} @ 2s), and the stage logits."""

    def __init__(self, channels: int, out_channels: int, semantic_channels: int, num_classes: int, dilations):
        super().__init__()
        self.logits = _conv(channels, num_classes, 1)
        self.sem_in = _conv(semantic_channels, channels, 1)
        self.sem_out = _conv(channels, channels, 1)
        self.fuse_in = _conv(2 * channels + 2, channels, 1)
        self.branches = nn.ModuleList(_conv(channels, channels, 3, d) for d in dilations)
        self.merge = _conv(channels, channels, 1)
        self.fuse_out = _conv(channels, out_channels - 2, 1)

    def forward(self, feats, semantic_feats, semantic_probs, rois, labels, size: int, stride: int):
        """-> (F_{k+1}, stage logits (N, s, s) at the RoIs' classes)."""
        logits = self.logits(feats)  # (N, classes, s, s)
        logits = logits[torch.arange(len(logits)), labels] if logits.shape[1] > 1 else logits[:, 0]
        probs = logits.sigmoid()[:, None]  # (N, 1, s, s)
        sem_feat = roi_align(F.relu(self.sem_in(semantic_feats)), rois, size, spatial_scale=1.0 / stride,
                             sampling_ratio=0, aligned=True)
        sem_feat = F.relu(self.sem_out(sem_feat))
        sem_mask = roi_align(semantic_probs, rois, size, spatial_scale=1.0 / stride, sampling_ratio=0, aligned=True)
        x = F.relu(self.fuse_in(torch.cat([feats, sem_feat, probs, sem_mask], 1)))
        x = F.relu(self.merge(sum(F.relu(b(x)) for b in self.branches)))
        x = F.relu(self.fuse_out(x))
        x = F.relu(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False))
        return torch.cat([x, _up(probs, 2 * size), _up(sem_mask, 2 * size)], 1), logits


class RefineMaskHead(MaskHead):
    """RefineMask's head on FCOS boxes.

    Parameters
    ----------
    in_channels : FPN channels.
    num_classes : classes of the data (class-specific stage logits); see ``class_agnostic``.
    class_agnostic : one mask channel per stage instead of one per class.
    channels : 256, halved at each stage (256 -> 128 -> 64 -> 32).
    mask_size : 14, the instance features' RoIAlign size (stages at 14, 28, 56 and 112).
    instance_convs, semantic_convs : 2 and 4 convs (3x3, ReLU, no norm).
    dilations : the fusion branches' dilations (1, 3, 5).
    stage_weights : (0.25, 0.5, 0.75, 1.0), the stages' loss weights.
    semantic_weight : 1.0.
    train_band, merge_band : the boundary band's width for the training region (2) and for the
        merge at inference (1).
    rois_per_image : the most RoIs per image trained on (sampled from a seeded generator).
    min_iou : a positive's predicted box trains the head when its IoU with its GT is at least this.
    output_stage : None (default) pastes the merged 112 x 112 masks; k pastes stage k alone
        (1: the 28 x 28 stage), for comparisons.

    Notes
    -----
    FCOS has no proposals, so the RoIs in training are maskrep's choice: every GT box of the batch,
    plus the detached predicted boxes of the FCOS positives whose IoU with their GT is at least
    ``min_iou``, all labelled with their GT (class and mask), then sampled down to
    ``rois_per_image``. Predicted boxes because inference runs on them (a head trained on GT boxes
    alone never sees the offsets detections have); GT boxes because early in training few predicted
    boxes are good, and they keep every instance in the sample. The instance features come from
    P2-P5 by mmdetection's scale rule (:func:`maskrep.ops.roi_levels`, finest scale 56) with adaptive
    sampling, as RefineMask's extractor; the semantic branch runs on P2 (stride 4), so the head
    needs ``use_p2``. Targets: the GT masks cropped to the RoIs at 14, 28, 56, 112
    (:meth:`maskrep.structures.InstanceMasks.crop_in_boxes`); the semantic target is the union of
    the image's masks, bilinearly down-sampled to stride 4 and >= 0.5. Losses (the BAR loss):
    BCE averaged over the RoIs' pixels at 14 and 28; at 56 and 112 only in the band of width 2
    around the previous stage's merged prediction or target, up-sampled, summed over the batch's
    band pixels and divided by their count; weights 0.25, 0.5, 0.75, 1.0; plus the semantic BCE.
    The band, up-sampled bilinearly, is kept where >= 0.5 in training and at inference alike (the
    original keeps the non-band >= 0.5 at inference, a rule that differs at exactly 0.5).

    Deliberate differences from RefineMask's code (mmdetection, on Mask R-CNN):

    - the RoIs: FCOS's GT and good predicted boxes in training, its detections at inference (the
      original: the RPN's proposals and the box head's detections);
    - one band rule in training and inference (above);
    - batches of any size, the RoIs grouped by image; the multi-level RoIAlign in plain torch;
    - the merge written with ``torch.where`` (no data-dependent indexing); the boundary kernel's
      zero padding kept, so RoI-border foreground counts as boundary, as the original does.
    """

    in_features = ("p2", "p3", "p4", "p5")

    def __init__(self, *, in_channels: int = 256, num_classes: int | None = None, class_agnostic: bool = False,
                 channels: int = 256, mask_size: int = 14, instance_convs: int = 2, semantic_convs: int = 4,
                 dilations=(1, 3, 5), stage_weights=(0.25, 0.5, 0.75, 1.0), semantic_weight: float = 1.0,
                 train_band: int = 2, merge_band: int = 1, rois_per_image: int = 64, min_iou: float = 0.5,
                 output_stage: int | None = None, seed: int = 0):
        super().__init__()
        if not class_agnostic and not num_classes:
            raise ValueError("class-specific stages need num_classes (or class_agnostic=True)")
        if channels % 8 or channels < 24:
            raise ValueError(f"channels must be a multiple of 8 and at least 24 (the last stage has channels / 8, two "
                             f"of them the stage's masks), got {channels}")
        if len(stage_weights) != 4:
            raise ValueError(f"stage_weights must have 4 entries (14, 28, 56, 112), got {stage_weights}")
        classes = 1 if class_agnostic else num_classes
        self.mask_size, self.stage_weights, self.semantic_weight = mask_size, tuple(stage_weights), semantic_weight
        self.train_band, self.merge_band = train_band, merge_band
        self.rois_per_image, self.min_iou, self.output_stage, self.seed = rois_per_image, min_iou, output_stage, seed
        self.register_buffer("draw_step", torch.zeros((), dtype=torch.long))
        self.instance = nn.Sequential(*[m for k in range(instance_convs)
                                        for m in (_conv(in_channels if k == 0 else channels, channels), nn.ReLU())])
        self.semantic = nn.Sequential(*[m for k in range(semantic_convs)
                                        for m in (_conv(in_channels if k == 0 else channels, channels), nn.ReLU())])
        self.semantic_logit = _conv(channels, 1, 1)
        widths = [channels // 2**k for k in range(4)]  # 256, 128, 64, 32
        self.stages = nn.ModuleList(_Stage(widths[k], widths[k + 1], channels, classes, dilations) for k in range(3))
        self.final_logits = _conv(widths[3], classes, 1)

    def forward(self, features: dict[str, torch.Tensor], fcos_out: FCOSOutput) -> dict:
        sem = self.semantic(features["p2"])  # (B, C, H/4, W/4)
        return {"pyramid": [features[k] for k in self.in_features], "semantic": sem,
                "semantic_logit": self.semantic_logit(sem)}

    def _stage_logits(self, head_out: dict, stride: int, rois: torch.Tensor, labels: torch.Tensor) -> list[torch.Tensor]:
        """(K, 5) rois -> the four stages' logits, (K, 14, 14) ... (K, 112, 112), at ``labels``; ``stride``:
        that of the finest level (P2)."""
        s = stride
        strides = [s * 2**k for k in range(len(head_out["pyramid"]))]
        x = self.instance(multilevel_roi_align(head_out["pyramid"], rois, self.mask_size, strides=strides))
        sem_probs = head_out["semantic_logit"].sigmoid()
        out, size = [], self.mask_size
        for stage in self.stages:
            x, logits = stage(x, head_out["semantic"], sem_probs, rois, labels, size, s)
            out.append(logits)
            size *= 2
        final = self.final_logits(x)
        out.append(final[torch.arange(len(final)), labels] if final.shape[1] > 1 else final[:, 0])
        return out

    def _training_rois(self, positives: Positives, targets: list[dict]):
        """(K, 5) rois, (K,) GT indices: every GT box, and the good predicted boxes of the positives."""
        gt_boxes = torch.cat([t["boxes"] for t in targets]).to(positives.gt_boxes.device, torch.float32)
        gt_images = torch.cat([torch.full((len(t["boxes"]),), i, dtype=torch.long) for i, t in enumerate(targets)])
        gt_images = gt_images.to(gt_boxes.device)
        iou = _paired_iou(positives.pred_boxes, positives.gt_boxes)
        good = torch.nonzero(iou >= self.min_iou).squeeze(1)
        boxes = torch.cat([gt_boxes, positives.pred_boxes[good]])
        images = torch.cat([gt_images, positives.im_inds[good]])
        gt_inds = torch.cat([torch.arange(len(gt_boxes), device=gt_boxes.device), positives.gt_inds[good]])
        g = self.step_generator()
        keep = []
        for i in range(len(targets)):
            sel = torch.nonzero(images == i).squeeze(1)
            if len(sel) > self.rois_per_image:
                sel = sel[torch.randperm(len(sel), generator=g)[: self.rois_per_image].to(sel.device)]
            keep.append(sel)
        keep = torch.cat(keep) if keep else gt_inds[:0]
        boxes, images = boxes[keep], images[keep]
        if all("size" in t for t in targets):  # clipped to the image, as RefineMask clips its proposals
            hw = torch.tensor([t["size"] for t in targets], dtype=boxes.dtype, device=boxes.device)[images]  # (K, 2)
            boxes = torch.stack([boxes[:, 0].clamp(min=0).minimum(hw[:, 1]), boxes[:, 1].clamp(min=0).minimum(hw[:, 0]),
                                 boxes[:, 2].clamp(min=0).minimum(hw[:, 1]), boxes[:, 3].clamp(min=0).minimum(hw[:, 0])],
                                1)
        return torch.cat([images[:, None].to(boxes.dtype), boxes], 1), gt_inds[keep]

    def losses(self, head_out: dict, fcos_out: FCOSOutput, positives: Positives,
               targets: list[dict]) -> dict[str, torch.Tensor]:
        masks = gt_masks_of(targets, "RefineMaskHead")
        labels_all = torch.cat([t["labels"] for t in targets]).to(head_out["semantic"].device)
        rois, gt_inds = self._training_rois(positives, targets)
        losses = {}
        if len(rois) == 0:
            losses["loss_mask"] = self.zero_loss(head_out)
        else:
            stages = self._stage_logits(head_out, fcos_out.stride_of(head_out["semantic"]), rois, labels_all[gt_inds])
            sizes = [z.shape[-1] for z in stages]
            targets_k = [crop_batch(masks, gt_inds, rois[:, 1:], s).float() for s in sizes]
            w = self.stage_weights
            loss = w[0] * F.binary_cross_entropy_with_logits(stages[0], targets_k[0])
            loss = loss + w[1] * F.binary_cross_entropy_with_logits(stages[1], targets_k[1])
            with torch.no_grad():
                prev = binarize(stages[1].sigmoid())
            for k in (2, 3):
                with torch.no_grad():
                    region = boundary_band(prev, self.train_band) | boundary_band(binarize(targets_k[k - 1]), self.train_band)
                    region = binarize(_up(region[:, None].float(), sizes[k])[:, 0])
                bce = F.binary_cross_entropy_with_logits(stages[k], targets_k[k], reduction="none")
                loss = loss + w[k] * (bce * region).sum() / region.sum().clamp(min=1)
                with torch.no_grad():  # the next region follows the merged prediction, as inference merges
                    prev = binarize(merge_stages([stages[k - 1], stages[k]], self.merge_band).sigmoid())
            losses["loss_mask"] = loss
        logit = head_out["semantic_logit"]  # (B, 1, H/4, W/4)
        sem_target = torch.zeros_like(logit)
        for i, m in enumerate(masks):
            if len(m):
                full = torch.from_numpy(m.to_bitmap(1, fcos_out.padded_size).any(0)).float()[None, None]
                sem_target[i] = binarize(F.interpolate(full, size=logit.shape[-2:], mode="bilinear",
                                                       align_corners=False)[0].to(logit.device))
        losses["loss_semantic"] = self.semantic_weight * F.binary_cross_entropy_with_logits(logit, sem_target)
        return losses

    @torch.no_grad()
    def predict(self, head_out: dict, fcos_out: FCOSOutput, detections: list[dict], chunk: int = 100) -> None:
        stride = fcos_out.stride_of(head_out["semantic"])
        for i, det in enumerate(detections):
            boxes = det["boxes"].float()
            rois = torch.cat([boxes.new_full((len(boxes), 1), float(i)), boxes], 1)
            maps = []
            for s in range(0, len(rois), chunk):
                stages = self._stage_logits(head_out, stride, rois[s : s + chunk], det["labels"][s : s + chunk])
                if self.output_stage is None:
                    maps.append(merge_stages(stages[1:], self.merge_band).sigmoid())
                else:
                    maps.append(stages[self.output_stage].sigmoid())
            size = self.mask_size * 2 ** (3 if self.output_stage is None else self.output_stage)
            det["mask"] = MaskMaps(torch.cat(maps) if maps else boxes.new_zeros((0, size, size)), "box")
