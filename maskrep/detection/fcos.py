"""FCOS as AdelaiDet has it (arXiv:1904.01355; docs/methods.md §1): head, target assignment, losses and inference.

Mask heads plug in without touching this file: :meth:`FCOS.forward` returns the typed record
:class:`FCOSOutput` (per-level predictions, the box-tower features heads build their per-location
codes on, locations and strides), :meth:`FCOS.losses` the positive-sample record
:class:`Positives`, and :meth:`FCOS.inference` detections that say where each came from (level,
location, stride).

Legend: B = images, L = levels, R = locations over all levels, P = positives, G = GT instances.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ..distributed import reduce_mean
from ..ops.nms import batched_nms
from .backbone import conv_tower
from .losses import centerness_target, iou_giou_ltrb, sigmoid_focal_loss

__all__ = ["FCOS", "FCOSHead", "FCOSOutput", "Positives", "compute_locations", "gather_levels"]

INF = 1e8


class Scale(nn.Module):
    """A learnable per-level multiplier, a 1-element parameter as in AdelaiDet (so its weights load)."""

    def __init__(self, value: float = 1.0):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor([float(value)]))

    def forward(self, x):
        return x * self.scale


class FCOSHead(nn.Module):
    """Shared cls and bbox towers (4 x conv3x3 + GN + ReLU), per-level Scale, centerness on the bbox tower.

    The tower convolutions carry a bias even before GroupNorm, as AdelaiDet's do: GN normalises
    groups of channels, so a per-channel bias is not cancelled.

    Mask heads read the box-tower features (``FCOSOutput.bbox_towers``) and own whatever they
    compute from them.
    """

    def __init__(self, in_channels: int, num_classes: int, num_levels: int, *, num_convs: int = 4,
                 norm: str = "GN", use_scale: bool = True, prior_prob: float = 0.01):
        super().__init__()
        self.cls_tower = conv_tower(in_channels, num_convs, norm)
        self.bbox_tower = conv_tower(in_channels, num_convs, norm)
        self.cls_logits = nn.Conv2d(in_channels, num_classes, 3, 1, 1)
        self.bbox_pred = nn.Conv2d(in_channels, 4, 3, 1, 1)
        self.ctrness = nn.Conv2d(in_channels, 1, 3, 1, 1)
        self.scales = nn.ModuleList(Scale(1.0) for _ in range(num_levels)) if use_scale else None
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        nn.init.constant_(self.cls_logits.bias, -math.log((1 - prior_prob) / prior_prob))

    def forward(self, features: list[torch.Tensor]) -> tuple[list, list, list, list]:
        """Per level (B, C, H, W) features -> per level logits, box distances, quality logits, box towers."""
        logits, bbox_reg, ctrness, towers = [], [], [], []
        for lvl, x in enumerate(features):
            cls_t = self.cls_tower(x)
            box_t = self.bbox_tower(x)
            logits.append(self.cls_logits(cls_t))
            reg = self.bbox_pred(box_t)
            if self.scales is not None:
                reg = self.scales[lvl](reg)
            bbox_reg.append(F.relu(reg))
            ctrness.append(self.ctrness(box_t))
            towers.append(box_t)
        return logits, bbox_reg, ctrness, towers


def compute_locations(sizes: list[tuple[int, int]], strides: list[int], device=None) -> list[torch.Tensor]:
    """Per level, (H*W, 2) points (x, y) = (j*s + s//2, i*s + s//2), row-major."""
    locs = []
    for (h, w), s in zip(sizes, strides):
        ys = torch.arange(h, device=device, dtype=torch.float32) * s + s // 2
        xs = torch.arange(w, device=device, dtype=torch.float32) * s + s // 2
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")
        locs.append(torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1))
    return locs


@dataclass
class FCOSOutput:
    """What :meth:`FCOS.forward` computes for a batch, per level l (finest first).

    logits (B, C, H_l, W_l); bbox_reg (B, 4, H_l, W_l) stride-normalised ltrb after ReLU; ctrness
    (B, 1, H_l, W_l) quality logits (centerness, or IoU with ``box_quality="iou"``); bbox_towers
    (B, C_fpn, H_l, W_l), the box tower's output mask heads compute per-location codes on;
    locations (H_l W_l, 2) image points (x, y); strides; padded_size (H, W) of the input batch.
    """

    logits: list[torch.Tensor]
    bbox_reg: list[torch.Tensor]
    ctrness: list[torch.Tensor]
    bbox_towers: list[torch.Tensor]
    locations: list[torch.Tensor]
    strides: tuple[int, ...]
    padded_size: tuple[int, int]

    def stride_of(self, x: torch.Tensor) -> int:
        """Input pixels per cell of a (..., H', W') map over the padded input."""
        return self.padded_size[0] // x.shape[-2]


@dataclass
class Positives:
    """One row per positive location, level-first order (docs/methods.md §1.5)."""

    pos_inds: torch.Tensor  # (P,) into the flattened (L, B, H, W) locations
    gt_inds: torch.Tensor  # (P,) batch-global GT index
    im_inds: torch.Tensor  # (P,)
    fpn_levels: torch.Tensor  # (P,)
    loc_inds: torch.Tensor  # (P,) index into its level's H*W (row-major)
    locations: torch.Tensor  # (P, 2) image points (x, y)
    strides: torch.Tensor  # (P,) float, the level's stride
    labels: torch.Tensor  # (P,) the GT class
    gt_boxes: torch.Tensor  # (P, 4) xyxy, the assigned GT box
    pred_boxes: torch.Tensor  # (P, 4) xyxy, the positive's predicted box (detached)
    reg_targets: torch.Tensor  # (P, 4) stride-normalised ltrb
    reg_pred: torch.Tensor  # (P, 4)
    gt_ctrs: torch.Tensor  # (P,) centerness targets
    loss_denorm: torch.Tensor  # scalar, the centerness sum averaged over processes (>= 1e-6)
    num_pos_avg: torch.Tensor  # scalar, the positives averaged over processes (>= 1)

    def __len__(self) -> int:
        return len(self.pos_inds)


def gather_levels(per_level: list[torch.Tensor], levels: torch.Tensor, images: torch.Tensor,
                  loc_inds: torch.Tensor) -> torch.Tensor:
    """Per-location vectors of dense per-level maps: (N, C) from [(B, C, H_l, W_l)] at the given
    (level, image, row-major location) triples, without flattening every level."""
    c = per_level[0].shape[1]
    out = per_level[0].new_zeros((len(levels), c))
    for lvl, maps in enumerate(per_level):
        sel = torch.nonzero(levels == lvl).squeeze(1)
        if len(sel):
            flat = maps.flatten(2)  # (B, C, H W)
            out[sel] = flat[images[sel], :, loc_inds[sel]]  # (n, C)
    return out


class FCOS(nn.Module):
    """FCOS on a list of FPN levels.

    Parameters follow AdelaiDet's ``MODEL.FCOS``; defaults are its defaults. Besides those:

    box_quality : {"ctrness", "iou"}
        What the third branch predicts. "ctrness": centerness, trained by BCE against the
        centerness target, and the box loss weighted by it (FCOS). "iou": the IoU of the predicted
        box with its target (BCE against the detached smoothed IoU, ``loss_fcos_quality``), and an
        unweighted box loss over the positives (AdelaiDet's ``BOX_QUALITY="iou"``: 38.7 -> 39.4
        box AP at R-50 1x).
    loss_normalizer_cls : {"fg", "moving_fg", "all"}
        The focal loss is divided by the positives averaged over processes ("fg"), by their
        exponential moving average (momentum 0.9, from 100; kept in a buffer, so checkpoints resume
        it, which AdelaiDet does not), or by all locations ("all").
    post_nms_topk : int
        Detections kept per image after NMS; 0 or less keeps all.
    """

    def __init__(self, in_channels: int, num_classes: int, *, strides=(8, 16, 32, 64, 128),
                 sizes_of_interest=(64, 128, 256, 512), center_sample: bool = True, pos_radius: float = 1.5,
                 focal_alpha: float = 0.25, focal_gamma: float = 2.0, prior_prob: float = 0.01,
                 num_convs: int = 4, norm: str = "GN", use_scale: bool = True, thresh_with_ctr: bool = False,
                 score_thresh: float = 0.05, pre_nms_topk: int = 1000, nms_thresh: float = 0.6,
                 post_nms_topk: int = 100, box_quality: str = "ctrness", loss_normalizer_cls: str = "fg",
                 in_features=("p3", "p4", "p5", "p6", "p7")):
        super().__init__()
        if len(in_features) != len(strides):
            raise ValueError(f"in_features {tuple(in_features)} and strides {tuple(strides)} differ in length")
        if len(sizes_of_interest) != len(strides) - 1:
            raise ValueError(f"{len(strides)} levels need {len(strides) - 1} sizes_of_interest, got {sizes_of_interest}")
        if box_quality not in ("ctrness", "iou"):
            raise ValueError(f"box_quality must be 'ctrness' or 'iou', got {box_quality!r}")
        if loss_normalizer_cls not in ("fg", "moving_fg", "all"):
            raise ValueError(f"loss_normalizer_cls must be 'fg', 'moving_fg' or 'all', got {loss_normalizer_cls!r}")
        self.box_quality, self.loss_normalizer_cls = box_quality, loss_normalizer_cls
        self.register_buffer("moving_num_fg", torch.tensor(100.0))
        self.num_classes = num_classes
        self.in_features = tuple(in_features)
        self.strides = tuple(strides)
        bounds = [-1.0, *sizes_of_interest, INF]
        self.size_ranges = [(bounds[i], bounds[i + 1]) for i in range(len(strides))]
        self.center_sample, self.pos_radius = center_sample, pos_radius
        self.focal_alpha, self.focal_gamma = focal_alpha, focal_gamma
        self.thresh_with_ctr, self.score_thresh = thresh_with_ctr, score_thresh
        self.pre_nms_topk, self.nms_thresh, self.post_nms_topk = pre_nms_topk, nms_thresh, post_nms_topk
        self.head = FCOSHead(in_channels, num_classes, len(strides), num_convs=num_convs, norm=norm,
                             use_scale=use_scale, prior_prob=prior_prob)

    def forward(self, features: dict[str, torch.Tensor], padded_size: tuple[int, int] | None = None) -> FCOSOutput:
        """``features``: FPN levels by name (at least ``in_features``); ``padded_size`` (H, W) of the
        input batch (default: the finest level times its stride)."""
        missing = [k for k in self.in_features if k not in features]
        if missing:
            raise ValueError(f"FCOS needs FPN levels {self.in_features}; missing {missing}")
        feats = [features[k] for k in self.in_features]
        logits, bbox_reg, ctrness, towers = self.head(feats)
        locations = compute_locations([f.shape[-2:] for f in feats], self.strides, feats[0].device)
        if padded_size is None:
            padded_size = (feats[0].shape[-2] * self.strides[0], feats[0].shape[-1] * self.strides[0])
        return FCOSOutput(logits, bbox_reg, ctrness, towers, locations, self.strides, tuple(padded_size))

    # ---- targets -------------------------------------------------------------------------------

    @torch.no_grad()
    def targets_for_image(self, locations: list[torch.Tensor], boxes: torch.Tensor, labels: torch.Tensor,
                          centers: torch.Tensor | None = None):
        """Assign every location of one image (docs/methods.md §1.2).

        locations: per level (HW_l, 2); boxes: (G, 4) xyxy; labels: (G,); centers: optional (G, 2)
        sampling centres (mask centroids), else box centres.
        Returns labels (M,) with background = num_classes, reg_targets (M, 4) divided by the
        level stride, and gt index (M,) (meaningless for background), M = sum of HW_l.
        """
        locs = torch.cat(locations)
        m = len(locs)
        strides = torch.cat([locs.new_full((len(loc),), float(s)) for loc, s in zip(locations, self.strides)])
        lo = torch.cat([locs.new_full((len(loc),), r[0]) for loc, r in zip(locations, self.size_ranges)])
        hi = torch.cat([locs.new_full((len(loc),), r[1]) for loc, r in zip(locations, self.size_ranges)])
        if len(boxes) == 0:
            return (torch.full((m,), self.num_classes, dtype=torch.long, device=locs.device),
                    locs.new_zeros((m, 4)), torch.zeros(m, dtype=torch.long, device=locs.device))
        boxes = boxes.to(locs.dtype)
        xs, ys = locs[:, 0:1], locs[:, 1:2]  # (M, 1)
        ltrb = torch.stack([xs - boxes[:, 0], ys - boxes[:, 1], boxes[:, 2] - xs, boxes[:, 3] - ys], dim=2)  # (M,G,4)
        if self.center_sample:
            c = centers.to(locs.dtype) if centers is not None else (boxes[:, :2] + boxes[:, 2:]) / 2
            r = strides[:, None] * self.pos_radius  # (M, 1)
            x0 = torch.maximum(c[:, 0] - r, boxes[:, 0])
            y0 = torch.maximum(c[:, 1] - r, boxes[:, 1])
            x1 = torch.minimum(c[:, 0] + r, boxes[:, 2])
            y1 = torch.minimum(c[:, 1] + r, boxes[:, 3])
            inside = torch.stack([xs - x0, ys - y0, x1 - xs, y1 - ys], dim=2).min(dim=2).values > 0
        else:
            inside = ltrb.min(dim=2).values > 0
        max_reg = ltrb.max(dim=2).values
        cared = (max_reg >= lo[:, None]) & (max_reg <= hi[:, None])
        area = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))[None, :].expand(m, -1).clone()
        area[~(inside & cared)] = INF
        gt_ind = torch.argmin(area, dim=1)  # the first (smallest-index) GT on ties
        min_area = area.gather(1, gt_ind[:, None]).squeeze(1)
        out_labels = labels[gt_ind].clone()
        out_labels[min_area == INF] = self.num_classes
        reg = ltrb[torch.arange(m, device=locs.device), gt_ind] / strides[:, None]
        return out_labels, reg, gt_ind

    # ---- losses --------------------------------------------------------------------------------

    @staticmethod
    def _level_first(per_level: list[torch.Tensor], channels: int) -> torch.Tensor:
        """[(B, C, H, W)] -> (L*B*H*W, C), level slowest then image then pixel."""
        return torch.cat([x.permute(0, 2, 3, 1).reshape(-1, channels) for x in per_level])

    def losses(self, out: FCOSOutput, targets: list[dict]) -> tuple[dict, Positives]:
        """FCOS losses with AdelaiDet's normalisation, and the positive-sample record.

        targets: per image a dict with ``boxes`` (G, 4) xyxy and ``labels`` (G,); optional
        ``centers`` (G, 2) for mask-centroid centre sampling.
        """
        locations = out.locations
        per_image = [self.targets_for_image(locations, t["boxes"], t["labels"], t.get("centers")) for t in targets]
        sizes = [len(loc) for loc in locations]
        device = locations[0].device
        gt_offsets = torch.tensor([0] + [len(t["boxes"]) for t in targets], device=device).cumsum(0)
        labels, reg_t, gt_inds, im_inds, levels, locs, loc_inds = [], [], [], [], [], [], []
        for lvl, loc in enumerate(locations):  # reorder to level-first
            start = sum(sizes[:lvl])
            for i, (lab, reg, gti) in enumerate(per_image):
                sl = slice(start, start + sizes[lvl])
                labels.append(lab[sl])
                reg_t.append(reg[sl])
                gt_inds.append(gti[sl] + gt_offsets[i])
                im_inds.append(torch.full((sizes[lvl],), i, dtype=torch.long, device=device))
                levels.append(torch.full((sizes[lvl],), lvl, dtype=torch.long, device=device))
                locs.append(loc)
                loc_inds.append(torch.arange(sizes[lvl], device=device))
        labels, reg_t, gt_inds = torch.cat(labels), torch.cat(reg_t), torch.cat(gt_inds)
        im_inds, levels, locs, loc_inds = torch.cat(im_inds), torch.cat(levels), torch.cat(locs), torch.cat(loc_inds)

        logits = self._level_first(out.logits, self.num_classes)
        reg_pred = self._level_first(out.bbox_reg, 4)
        ctr_pred = self._level_first(out.ctrness, 1).squeeze(1)
        pos = torch.nonzero(labels != self.num_classes).squeeze(1)
        num_pos_avg = reduce_mean(torch.tensor(float(len(pos)), device=logits.device)).clamp(min=1.0)

        cls_target = torch.zeros_like(logits)
        cls_target[pos, labels[pos]] = 1.0
        loss_cls = sigmoid_focal_loss(logits.float(), cls_target, self.focal_alpha, self.focal_gamma)
        if self.loss_normalizer_cls == "fg":
            loss_cls = loss_cls / num_pos_avg
        elif self.loss_normalizer_cls == "moving_fg":
            if self.training:
                self.moving_num_fg.mul_(0.9).add_(0.1 * num_pos_avg)
            loss_cls = loss_cls / self.moving_num_fg
        else:
            loss_cls = loss_cls / reduce_mean(torch.tensor(float(len(labels)), device=logits.device)).clamp(min=1.0)

        ctr_t = centerness_target(reg_t[pos])
        loss_denorm = reduce_mean(ctr_t.sum()).clamp(min=1e-6)
        quality_key = "loss_fcos_ctr" if self.box_quality == "ctrness" else "loss_fcos_quality"
        if len(pos):
            iou, giou = iou_giou_ltrb(reg_pred[pos].float(), reg_t[pos])
            if self.box_quality == "ctrness":
                loss_loc = ((1 - giou) * ctr_t).sum() / loss_denorm
                quality_t = ctr_t
            else:
                loss_loc = (1 - giou).sum() / num_pos_avg
                quality_t = iou.detach()
            loss_quality = F.binary_cross_entropy_with_logits(ctr_pred[pos].float(), quality_t,
                                                              reduction="sum") / num_pos_avg
        else:  # zero, but tied to the graph
            loss_loc = reg_pred.sum() * 0
            loss_quality = ctr_pred.sum() * 0
        strides = torch.tensor(self.strides, dtype=torch.float32, device=device)[levels[pos]]
        gt_boxes = torch.cat([t["boxes"] for t in targets]).to(device=device, dtype=torch.float32) if targets else None
        positives = Positives(
            pos_inds=pos, gt_inds=gt_inds[pos], im_inds=im_inds[pos], fpn_levels=levels[pos], loc_inds=loc_inds[pos],
            locations=locs[pos], strides=strides, labels=labels[pos],
            gt_boxes=gt_boxes[gt_inds[pos]] if len(pos) else reg_t.new_zeros((0, 4)),
            pred_boxes=_ltrb_to_boxes(locs[pos], reg_pred[pos].detach().float() * strides[:, None]),
            reg_targets=reg_t[pos], reg_pred=reg_pred[pos], gt_ctrs=ctr_t, loss_denorm=loss_denorm,
            num_pos_avg=num_pos_avg)
        return {"loss_fcos_cls": loss_cls, "loss_fcos_loc": loss_loc, quality_key: loss_quality}, positives

    # ---- inference -----------------------------------------------------------------------------

    @torch.no_grad()
    def inference(self, out: FCOSOutput, image_sizes: list[tuple[int, int]]) -> list[dict]:
        """Detections per image, in the (resized, unpadded) input frame.

        Per level: candidates above ``score_thresh``, top ``pre_nms_topk`` by cls * ctr; then
        class-aware NMS over the levels, the ``post_nms_topk`` best, clipping, empty boxes dropped.
        Each dict: boxes (n, 4) clipped to ``image_sizes``, scores (n,) = sqrt(cls * ctr), labels (n,),
        and where each came from: locations (n, 2), fpn_levels (n,), loc_inds (n,) (row-major in
        its level), strides (n,). At most ``post_nms_topk`` per image (exactly that cap, highest
        scores, ties by order; none when it is 0 or less). With ``box_quality="iou"`` the third
        branch is the predicted IoU and takes centerness's place in the score.
        """
        results = []
        for i, (h, w) in enumerate(image_sizes):
            cand = {k: [] for k in ("boxes", "scores", "labels", "locations", "fpn_levels", "loc_inds", "strides")}
            for lvl, loc in enumerate(out.locations):
                s = self.strides[lvl]
                cls = out.logits[lvl][i].flatten(1).t().sigmoid().float()  # (HW, C)
                ctr = out.ctrness[lvl][i].flatten(1).t().sigmoid().float()  # (HW, 1)
                reg = out.bbox_reg[lvl][i].flatten(1).t().float()  # (HW, 4)
                score = cls * ctr
                keep = (score if self.thresh_with_ctr else cls) > self.score_thresh
                flat = score[keep]
                idx = torch.nonzero(keep)
                if len(flat) > self.pre_nms_topk:
                    flat, top = flat.topk(self.pre_nms_topk, sorted=False)
                    idx = idx[top]
                li, ci = idx[:, 0], idx[:, 1]
                cand["boxes"].append(_ltrb_to_boxes(loc[li], reg[li] * s))
                cand["scores"].append(torch.sqrt(flat))
                cand["labels"].append(ci)
                cand["locations"].append(loc[li])
                cand["fpn_levels"].append(torch.full_like(li, lvl))
                cand["loc_inds"].append(li)
                cand["strides"].append(torch.full((len(li),), float(s), device=li.device))
            cand = {k: torch.cat(v) for k, v in cand.items()}
            boxes = cand["boxes"]
            keep = batched_nms(boxes, cand["scores"], cand["labels"], self.nms_thresh)
            if self.post_nms_topk > 0:
                keep = keep[: self.post_nms_topk]
            # then detectron2's post-processing: clip to the image, drop empty boxes
            cand["boxes"] = torch.stack([boxes[:, 0].clamp(0, w), boxes[:, 1].clamp(0, h),
                                         boxes[:, 2].clamp(0, w), boxes[:, 3].clamp(0, h)], dim=1)
            boxes = cand["boxes"]
            keep = keep[(boxes[keep, 2] > boxes[keep, 0]) & (boxes[keep, 3] > boxes[keep, 1])]
            results.append({k: v[keep] for k, v in cand.items()})
        return results


def _ltrb_to_boxes(points: torch.Tensor, ltrb: torch.Tensor) -> torch.Tensor:
    """(N, 2) points and (N, 4) distances in pixels -> (N, 4) xyxy."""
    return torch.stack([points[:, 0] - ltrb[:, 0], points[:, 1] - ltrb[:, 1],
                        points[:, 0] + ltrb[:, 2], points[:, 1] + ltrb[:, 3]], dim=1)
