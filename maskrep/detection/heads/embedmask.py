"""EmbedMask: pixel embeddings coupled with per-instance embeddings and margins (arXiv:1912.01954;
docs/methods.md §5)."""

from __future__ import annotations

import math

import torch
from torch import nn

from ...assembly import embedding_coupling, margin_bias
from ...assembly.embedding import box_cells
from ...ops.resample import aligned_bilinear
from ..fcos import FCOSOutput, Positives, compute_locations
from ..layers import conv_norm_relu
from ..losses import lovasz_hinge, sigmoid_focal_loss
from .base import MaskHead, MaskMaps, gt_masks_of

__all__ = ["EmbedMaskHead"]


def _conv(cin: int, cout: int, k: int = 3, bias: float = 0.0) -> nn.Conv2d:
    conv = nn.Conv2d(cin, cout, k, 1, k // 2)
    nn.init.normal_(conv.weight, std=0.01)
    nn.init.constant_(conv.bias, bias)
    return conv


class _Embed(nn.Module):
    """2 spatial channels (plus the cells' image coordinates / 100) and D - 2 free channels."""

    def __init__(self, cin: int, dim: int):
        super().__init__()
        self.spatial, self.free = _conv(cin, 2), _conv(cin, dim - 2)

    def forward(self, x: torch.Tensor, stride: int) -> torch.Tensor:
        h, w = x.shape[-2:]
        loc = compute_locations([(h, w)], [stride], x.device)[0].t().reshape(1, 2, h, w)  # (1, 2, H, W) x, y
        return torch.cat([self.spatial(x) + loc / 100.0, self.free(x)], 1)


class EmbedMaskHead(MaskHead):
    """EmbedMask's head, as its authors' detectron2 port has it.

    Parameters
    ----------
    in_channels : FPN (box-tower) channels.
    num_classes : classes of the data, for the auxiliary semantic head; None switches it off.
    embed_dim : D = 16 (2 spatial + 14 free dimensions).
    prior_margin : δ = 2: the margins start at ln 2 / δ², so a pixel at embedding distance δ gets 0.5.
    branch_channels, branch_convs, norm : the pixel branch on P3-P5 (128 channels, 4 convs; the
        port normalises with BN, GroupNorm is the default here for small batches).
    max_proposals : positives per step that train the mask, drawn at random from a seeded
        generator when there are more (500).
    mask_weight, semantic_weight : 1.0 and 1.0.
    restrict_to_box : at inference, keep each mask inside its predicted box enlarged by
        ``box_margin`` cells of the stride-4 map (the 2021 version's inference crop, 2 cells);
        False: no restriction (the port).
    seed : the proposal draw's seed.

    Notes
    -----
    The version: EmbedMask exists in versions that differ in D, margins, positives, loss and
    thresholds (docs/methods.md §5.2). This head follows the authors' detectron2 port (D = 16,
    per-dimension margins, the "Conv1_Conv3" proposal head, every positive up to 500, the Lovász
    hinge on logit(P), the focal semantic loss, threshold 0.5), plus the 2021 version's box
    restriction at inference, on by default. Pixel embeddings come at stride 8; P is computed there
    and up-sampled (aligned bilinear) to stride 4, where the GT is point-sampled (offset 2).
    ``loss_mask`` is the mean over the sampled positives of their Lovász hinge. Full-image masks:
    the stride-4 maps up-sampled to the input as the port does (cell i on pixel 4i + 2, where the
    GT was sampled), then resized to the image (:func:`maskrep.detection.postprocess.masks_in_image`).

    Deliberate differences from the port:

    - ``restrict_to_box=True`` (the default) keeps each mask inside its box enlarged by two cells,
      the 2021 version's inference crop; ``restrict_to_box=False`` is the port's unrestricted mask;
    - the threshold: >= 0.5 (the port: > 0.5; the two differ only at exactly 0.5);
    - GroupNorm in the pixel branch and the semantic head by default (the port: BatchNorm, a
      ``norm="BN"`` away);
    - the 500 positives are drawn from a generator seeded by (seed, step, rank), not the global
      RNG; the coupling never builds the (n, D, h, w) difference (the expanded square, clamped).
    """

    in_features = ("p3", "p4", "p5")

    def __init__(self, *, in_channels: int = 256, num_classes: int | None = None, embed_dim: int = 16,
                 prior_margin: float = 2.0, branch_channels: int = 128, branch_convs: int = 4,
                 norm: str | None = "GN", max_proposals: int = 500, mask_weight: float = 1.0,
                 semantic_weight: float = 1.0, restrict_to_box: bool = True, box_margin: int = 2,
                 margin_reduce: float = 32.0, num_levels: int = 5, seed: int = 0):
        super().__init__()
        if embed_dim < 3:
            raise ValueError(f"embed_dim must be at least 3 (2 spatial + free dimensions), got {embed_dim}")
        self.embed_dim, self.max_proposals = embed_dim, max_proposals
        self.mask_weight, self.semantic_weight = float(mask_weight), float(semantic_weight)
        self.restrict_to_box, self.box_margin = restrict_to_box, box_margin
        self.margin_reduce, self.seed = margin_reduce, seed
        self.register_buffer("draw_step", torch.zeros((), dtype=torch.long))
        # pixel branch: P3-P5 refined, P4/P5 up-sampled to P3 and summed, a tower, the embedding
        self.refine = nn.ModuleList(conv_norm_relu(in_channels, branch_channels, norm) for _ in range(3))
        self.tower = nn.Sequential(*[conv_norm_relu(branch_channels, branch_channels, norm)
                                     for _ in range(branch_convs)],
                                   nn.Conv2d(branch_channels, branch_channels, 3, 1, 1))
        self.pixel_embed = _Embed(branch_channels, embed_dim)
        # proposal head ("Conv1_Conv3") on the box tower of every level
        bias = margin_bias(prior_margin)
        self.margin_conv = _conv(in_channels, 128, k=1)
        self.spatial_margin, self.free_margin = _conv(128, 2, bias=bias), _conv(128, embed_dim - 2, bias=bias)
        self.margin_scales = nn.Parameter(torch.ones(num_levels))
        self.embed_conv = _conv(in_channels, 128, k=1)
        self.proposal_embed = _Embed(128, embed_dim)
        self.seg_head = None
        if num_classes is not None and semantic_weight > 0:
            self.seg_head = nn.Sequential(conv_norm_relu(in_channels, branch_channels, norm),
                                          conv_norm_relu(branch_channels, branch_channels, norm),
                                          _conv(branch_channels, num_classes, k=1, bias=-math.log((1 - 0.01) / 0.01)))

    def forward(self, features: dict[str, torch.Tensor], fcos_out: FCOSOutput) -> dict:
        p3 = features["p3"]
        x = self.refine[0](p3)
        for refine, key in zip(self.refine[1:], ("p4", "p5")):
            y = refine(features[key])
            x = x + aligned_bilinear(y, x.shape[-2] // y.shape[-2])
        pixel = self.pixel_embed(self.tower(x), fcos_out.stride_of(p3))  # (B, D, H/8, W/8)
        codes = []
        for lvl, (t, s) in enumerate(zip(fcos_out.bbox_towers, fcos_out.strides)):
            m = self.margin_conv(t / self.margin_reduce)
            margins = torch.cat([torch.exp(self.spatial_margin(m) * self.margin_scales[lvl]),
                                 torch.exp(self.free_margin(m))], 1)
            codes.append(torch.cat([self.proposal_embed(self.embed_conv(t), s), margins], 1))  # (B, 2D, H, W)
        sem = self.seg_head(p3) if (self.seg_head is not None and self.training) else None
        return {"pixel": pixel, "codes": codes, "semantic": sem}

    def _probs(self, pixel: torch.Tensor, codes: torch.Tensor, im_inds: torch.Tensor) -> torch.Tensor:
        """(N, H/4, W/4) probabilities: the coupling at the pixel map's stride, up-sampled x2."""
        d = self.embed_dim
        probs = embedding_coupling(pixel, codes[:, :d], codes[:, d:], im_inds)
        return aligned_bilinear(probs, 2)

    def losses(self, head_out: dict, fcos_out: FCOSOutput, positives: Positives,
               targets: list[dict]) -> dict[str, torch.Tensor]:
        pixel, codes_per_level = head_out["pixel"], head_out["codes"]
        masks = gt_masks_of(targets, "EmbedMaskHead")
        losses = {}
        keep = self.sample_positives(len(positives), self.max_proposals, pixel.device)
        codes = self.at_positives(codes_per_level, positives)[keep]  # (P', 2D)
        if len(keep) == 0:
            losses["loss_mask"] = self.zero_loss(head_out)
        else:
            probs = self._probs(pixel, codes, positives.im_inds[keep])  # (P', H/4, W/4)
            stride = fcos_out.stride_of(probs)
            gt = torch.cat([torch.from_numpy(m.to_bitmap(stride, fcos_out.padded_size)) for m in masks])
            target = gt.to(probs.device)[positives.gt_inds[keep]].flatten(1)
            p = probs.flatten(1).clamp(1e-6, 1 - 1e-6)
            losses["loss_mask"] = self.mask_weight * lovasz_hinge(torch.log(p) - torch.log(1 - p), target).mean()
        if head_out["semantic"] is not None:
            losses["loss_semantic"] = self.semantic_weight * self._semantic_loss(head_out["semantic"], fcos_out,
                                                                                 targets, masks)
        return losses

    def _semantic_loss(self, sem: torch.Tensor, fcos_out: FCOSOutput, targets: list[dict], masks) -> torch.Tensor:
        """Focal loss of the class map: each pixel takes the class of the smallest instance (by mask
        area) covering it, sampled at the map's stride (offset stride // 2), / the positive entries."""
        onehot = torch.zeros_like(sem)  # (B, C, H/8, W/8)
        stride = fcos_out.stride_of(sem)
        for i, (t, m) in enumerate(zip(targets, masks)):
            if not len(m):
                continue
            full = torch.from_numpy(m.to_bitmap(1, fcos_out.padded_size))  # (G, Hp, Wp) bool
            area = full.flatten(1).sum(1).float()  # (G,) mask areas at full resolution
            sampled = full[:, stride // 2 :: stride, stride // 2 :: stride][:, : sem.shape[-2], : sem.shape[-1]]
            big = torch.where(sampled, area[:, None, None], torch.tensor(float("inf")))  # (G, H/8, W/8)
            smallest, which = big.min(0)  # (H/8, W/8)
            labels = t["labels"].cpu()[which]
            covered = torch.isfinite(smallest)
            onehot[i, labels[covered], covered.nonzero()[:, 0], covered.nonzero()[:, 1]] = 1.0
        return sigmoid_focal_loss(sem.float(), onehot) / onehot.sum().clamp(min=1.0)

    @torch.no_grad()
    def predict(self, head_out: dict, fcos_out: FCOSOutput, detections: list[dict]) -> None:
        pixel = head_out["pixel"]
        for i, det in enumerate(detections):
            codes = self.at_detections(head_out["codes"], det, i).float()
            probs = self._probs(pixel[i : i + 1].float(), codes, None)  # (n, H/4, W/4)
            stride = fcos_out.stride_of(probs)
            if self.restrict_to_box and len(codes):
                pad = self.box_margin * stride
                boxes = det["boxes"].float() + torch.tensor([-pad, -pad, pad, pad], device=probs.device)
                probs = probs * box_cells(boxes, *probs.shape[-2:], stride)
            det["mask"] = MaskMaps(probs, "image", stride=stride)
