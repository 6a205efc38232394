"""The mask-head contract every method plugs into FCOS with (docs/heads.md).

A head is an ``nn.Module`` with three methods, called by :class:`maskrep.detection.Detector`:

- ``forward(features, fcos_out) -> head_out``: from the FPN levels (by name; the head lists the
  ones it needs in ``in_features``) and FCOS's outputs (:class:`maskrep.detection.FCOSOutput`:
  box-tower features, locations, strides), everything the head predicts for the batch: dense
  per-location codes, shared maps;
- ``losses(head_out, fcos_out, positives, targets) -> {name: scalar}``: from FCOS's positives
  (:class:`maskrep.detection.Positives`: GT index, GT and predicted boxes, strides, centerness
  targets, normalisers) and the targets (``masks``: :class:`maskrep.structures.InstanceMasks`);
  ``fcos_out`` gives the padded input size and the strides;
- ``predict(head_out, fcos_out, detections) -> None``: gives each image's detections a ``mask``, a
  :class:`MaskMaps` (box-frame S x S maps, or image-frame maps at a stride), which
  :mod:`maskrep.detection.postprocess` turns into full-image masks and COCO RLE.

Which of the two the detector calls is decided by ``self.training``, never by whether targets
were passed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ...distributed import get_rank
from ...ops.masks import MASK_THRESHOLD
from ...structures import InstanceMasks
from ..fcos import FCOSOutput, Positives, gather_levels

__all__ = ["MaskHead", "MaskMaps", "gt_masks_of", "thing_regions"]


@dataclass
class MaskMaps:
    """One image's n detection masks before pasting.

    maps : Tensor of shape (n, S, S) when ``frame == "box"`` (each map stretched over its
        detection's box), (n, H', W') when ``frame == "image"`` (over the padded input, one cell
        per ``stride`` pixels), or (n, D) codes when ``frame == "codes"``: ``codec`` pastes them
        into the boxes itself (:meth:`maskrep.codecs.MaskCodec.paste_rle`; a contour codec fills its
        polygon in the image), so the head's masks are exactly what the codec decodes.
    frame : "box", "image" or "codes"
    stride : input pixels per map cell ("image" frame).
    threshold : a pixel is foreground where the resampled map is >= threshold.
    codec : the codec of the "codes" frame.
    """

    maps: torch.Tensor
    frame: str = "box"
    stride: int = 1
    threshold: float = MASK_THRESHOLD
    codec: object = None

    def select(self, keep) -> MaskMaps:
        """The maps of the detections ``keep`` picks (indices or a bool mask)."""
        return MaskMaps(self.maps[keep], self.frame, self.stride, self.threshold, self.codec)

    def __post_init__(self):
        if self.frame not in ("box", "image", "codes"):
            raise ValueError(f"frame must be 'box', 'image' or 'codes', got {self.frame!r}")
        if self.frame == "codes":
            if self.codec is None or self.maps.dim() != 2:
                raise ValueError("the 'codes' frame needs (n, D) codes and the codec that pastes them, got shape "
                                 f"{tuple(self.maps.shape)} and codec {self.codec!r}")
        elif self.maps.dim() != 3:
            raise ValueError(f"maps must be (n, S, S) or (n, H', W'), got shape {tuple(self.maps.shape)}")


def gt_masks_of(targets: list[dict], who: str) -> list[InstanceMasks]:
    """The targets' ``masks`` containers, with a message that says how to get them when absent."""
    masks = [t.get("masks") for t in targets]
    if any(not isinstance(m, InstanceMasks) for m in masks):
        raise ValueError(f"{who} trains on instance masks, but the targets carry no 'masks' container: build the "
                         "dataset with with_masks=True (config data.with_masks=True)")
    for t, m in zip(targets, masks):
        if len(m) != len(t["boxes"]):
            raise ValueError(f"{who}: an image has {len(t['boxes'])} boxes but {len(m)} masks")
    return masks


def thing_regions(target: dict, masks: InstanceMasks) -> tuple[InstanceMasks, torch.Tensor]:
    """One image's instances and crowd regions (``target["crowd"]``, when the dataset gives it) in
    the order of the annotation file, with their labels (G + C,): what a "thing" semantic map is
    painted from, later regions over earlier ones."""
    labels = target["labels"].cpu()
    crowd = target.get("crowd")
    if not crowd or not len(crowd["masks"]):
        return masks, labels
    after = crowd["after"].tolist()
    # instance j sorts at (j, 1), crowd c at (after[c], 0): just before the instance it precedes in the file
    order = sorted(range(len(masks) + len(after)),
                   key=lambda k: (k, 1) if k < len(masks) else (after[k - len(masks)], 0))
    joined = InstanceMasks.cat([masks, crowd["masks"]])
    all_labels = torch.cat([labels, crowd["labels"].cpu()])
    return joined[order], all_labels[order]


class MaskHead(nn.Module):
    """Base of the mask heads. Subclasses set ``in_features`` and implement the three methods.

    Helpers: :meth:`at_positives` and :meth:`at_detections` read per-location codes out of dense
    per-level maps; :meth:`weighted_mean` is the centerness-weighted normalisation the FCOS-based
    methods share; :meth:`step_generator` and :meth:`sample_positives` draw seeded, resumable
    randomness; :meth:`zero_loss` is the loss of a batch without positives.
    """

    #: FPN levels the head reads from ``features``, by name ("p2" ... "p7").
    in_features: tuple[str, ...] = ()
    #: seeds :meth:`step_generator` (heads that draw set it from their ``seed`` parameter)
    seed: int = 0

    def forward(self, features: dict[str, torch.Tensor], fcos_out: FCOSOutput) -> dict:
        raise NotImplementedError

    def losses(self, head_out: dict, fcos_out: FCOSOutput, positives: Positives,
               targets: list[dict]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def predict(self, head_out: dict, fcos_out: FCOSOutput, detections: list[dict]) -> None:
        raise NotImplementedError

    # ---- shared pieces ------------------------------------------------------------------------------

    @staticmethod
    def at_positives(per_level: list[torch.Tensor], positives: Positives) -> torch.Tensor:
        """(P, C) codes of the positives from per-level (B, C, H_l, W_l) maps."""
        return gather_levels(per_level, positives.fpn_levels, positives.im_inds, positives.loc_inds)

    @staticmethod
    def at_detections(per_level: list[torch.Tensor], det: dict, image: int) -> torch.Tensor:
        """(n, C) codes of one image's detections."""
        images = torch.full_like(det["fpn_levels"], image)
        return gather_levels(per_level, det["fpn_levels"], images, det["loc_inds"])

    @staticmethod
    def weighted_mean(per_instance: torch.Tensor, positives: Positives, scale: float = 1.0) -> torch.Tensor:
        """sum_i c_i l_i / loss_denorm (centerness targets c, their sum averaged over processes)."""
        return scale * (per_instance * positives.gt_ctrs).sum() / positives.loss_denorm

    def step_generator(self, counter: str = "draw_step", device=None) -> torch.Generator:
        """The generator of this training step, seeded by (``seed``, step, process rank), so that a
        resumed run draws what an uninterrupted one would; the step counter (a buffer named
        ``counter``, saved in checkpoints) advances in training."""
        step = getattr(self, counter)
        g = torch.Generator(device=device if device is not None else "cpu")
        g.manual_seed(int(self.seed) * 1_000_003 + int(step) * 7919 + get_rank())
        if self.training:
            step.add_(1)  # the buffer itself
        return g

    def sample_positives(self, count: int, limit: int, device) -> torch.Tensor:
        """(P',) indices of at most ``limit`` of ``count`` positives (all when ``limit`` <= 0), drawn
        from :meth:`step_generator` when there are more."""
        keep = torch.arange(count, device=device)
        g = self.step_generator()
        if 0 < limit < count:
            keep = keep[torch.randperm(count, generator=g)[:limit].to(device)]
        return keep

    def zero_loss(self, head_out: dict) -> torch.Tensor:
        """0, tied to every parameter and every output of the head, so that a batch without
        positives still gives each parameter a (zero) gradient, as DDP requires."""
        tensors = [p for p in self.parameters()]
        for value in head_out.values():
            items = value if isinstance(value, (list, tuple)) else [value]
            tensors += [t for t in items if torch.is_tensor(t) and t.is_floating_point()]
        return sum(t.sum() * 0 for t in tensors)
